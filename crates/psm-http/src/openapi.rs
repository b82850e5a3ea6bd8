//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa), and the shared
//! problem responses the annotations list.

use std::collections::BTreeMap;

use utoipa::{
    IntoResponses, Modify, OpenApi,
    openapi::{
        ContentBuilder, Header, HeaderBuilder, ObjectBuilder, RefOr, Response, ResponseBuilder,
        Type,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    dto,
    problem::{PROBLEM_JSON, ProblemBody},
    routes,
};

fn header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn problem(status: u16, description: &str) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description);
    if matches!(status, 429 | 503) {
        response = response.header("Retry-After", header("seconds to wait before retrying"));
    }
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            header("a Bearer challenge, on routes that take a bearer token"),
        );
    }
    response
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build(),
        )
        .build()
        .into()
}

macro_rules! problems {
    ($(#[$doc:meta])* $name:ident: $($status:literal => $text:literal),+ $(,)?) => {
        $(#[$doc])*
        pub(crate) struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_string(), problem($status, $text))),+])
            }
        }
    };
}

problems!(
    /// What any route can answer besides its own outcomes: a bad parameter, an unavailable store, a
    /// timeout, a failure.
    Common:
    400 => "a parameter is invalid",
    500 => "the server failed",
    503 => "a store is unavailable, or the request timed out (see Retry-After)",
);
problems!(
    /// The answers of a route that reads a JSON body.
    Body:
    413 => "the body is larger than this server accepts",
    415 => "the body is not application/json",
);
problems!(
    /// The answers of a route that needs a bearer token.
    Authn:
    401 => "no valid bearer token, or its session has ended",
);
problems!(
    /// The answers of a route that needs a permission.
    Authz:
    401 => "no valid bearer token, or its session has ended",
    403 => "the session lacks the required permission",
);
problems!(
    /// 404.
    NotFound:
    404 => "no such session or user",
);
problems!(
    /// 409.
    Conflict:
    409 => "the resource exists already, or a limit is reached",
);
problems!(
    /// 429.
    Limited:
    429 => "too many attempts; see Retry-After",
);

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "an access token from /v1/auth/login or /v1/auth/refresh",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "psm",
        description = "Sessions, permissions and tokens: the psm HTTP API. Errors are RFC 9457 problem documents with a stable `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::auth::revoke_all,
        routes::me::me,
        routes::me::list,
        routes::me::revoke,
        routes::sessions::list,
        routes::sessions::create,
        routes::sessions::cleanup,
        routes::sessions::get,
        routes::sessions::store,
        routes::sessions::invalidate,
        routes::sessions::permissions,
        routes::sessions::update,
        routes::sessions::extend,
        routes::sessions::check,
        routes::sessions::check_many,
        routes::users::list,
        routes::users::create,
        routes::users::get,
        routes::users::delete,
        routes::users::invalidate_sessions,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::health::openapi_json,
    ),
    components(schemas(
        ProblemBody,
        dto::PermissionItem,
        dto::RegisterBody,
        dto::LoginBody,
        dto::RefreshBody,
        dto::TokenView,
        dto::UserView,
        dto::CreateUserBody,
        dto::UserListView,
        dto::SessionView,
        dto::DataView,
        dto::StoreBody,
        dto::CreateSessionBody,
        dto::PolicyBody,
        dto::CreatedView,
        dto::UpdateBody,
        dto::ExtendBody,
        dto::CheckView,
        dto::CheckManyBody,
        dto::CheckManyView,
        dto::ListView,
        dto::CountView,
        dto::StoredView,
        dto::MeView,
        dto::HealthView,
    )),
    modifiers(&Security),
    tags(
        (name = "auth", description = "registration, login, token refresh and revocation"),
        (name = "me", description = "the caller's own sessions"),
        (name = "sessions", description = "every manager operation (requires psm:admin)"),
        (name = "users", description = "accounts"),
        (name = "health", description = "liveness, readiness and metrics"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
