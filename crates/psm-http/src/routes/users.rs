//! `/v1/users`: accounts (administrators; a user may read their own).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use psm::{Page, PermissionList, PermissionRef, auth::RegisterRequest};

use crate::{
    Api,
    dto::{CountView, CreateUserBody, MAX_OFFSET, UserListQuery, UserListView, UserView},
    extract::{ApiJson, ApiQuery, UserPath},
    guard::{Principal, RequirePermission, Requirement},
    openapi::{Authz, Body, Common, Conflict, NotFound},
    problem::Problem,
    routes::sessions::Admin,
    state::ADMIN_PERMISSION,
};

fn no_user() -> Problem {
    Problem::from(psm::Error::new(
        psm::ErrorKind::UserNotFound,
        "no user with this id",
    ))
}

/// Creates an account with chosen permissions (`psm:admin` makes another administrator).
#[utoipa::path(
    post, path = "/v1/users", tag = "users",
    security(("bearer" = [])),
    request_body = CreateUserBody,
    responses((status = 201, description = "the account", body = UserView), Conflict, Authz, Body, Common)
)]
pub(crate) async fn create(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    ApiJson(body): ApiJson<CreateUserBody>,
) -> Result<impl IntoResponse, Problem> {
    let permissions = PermissionList::parse(&body.permissions)
        .map_err(|e| Problem::from(e.with_detail("field", "permissions")))?;
    let request = RegisterRequest {
        username: body.username,
        email: body.email,
        password: body.password,
        permissions,
    };
    let user = api
        .auth_op("create_user", api.auth().register(request))
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(user))))
}

/// Lists accounts by creation, optionally only those holding a permission.
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    security(("bearer" = [])),
    params(UserListQuery),
    responses((status = 200, description = "a page of accounts", body = UserListView), Authz, Common)
)]
pub(crate) async fn list(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> Result<Json<UserListView>, Problem> {
    let limit = query.limit.unwrap_or(100);
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(Problem::invalid_parameter(
            "offset",
            "offset is larger than 9223372036854775807",
        ));
    }
    let page = Page::new(limit, offset).map_err(Problem::from)?;
    let permission = query
        .permission
        .as_deref()
        .map(PermissionRef::parse)
        .transpose()
        .map_err(|e| Problem::from(e.with_detail("field", "permission")))?;
    let users = api
        .users_op(
            "list_users",
            api.auth().users().list_users(permission, page),
        )
        .await?;
    Ok(Json(UserListView {
        users: users.into_iter().map(UserView::from).collect(),
        limit,
        offset,
    }))
}

/// An account: the caller's own, or any for an administrator.
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id", min_length = 1, max_length = 255)),
    responses((status = 200, description = "the account", body = UserView), NotFound, Authz, Common)
)]
pub(crate) async fn get(
    State(api): State<Api>,
    caller: Principal,
    UserPath(id): UserPath,
) -> Result<Json<UserView>, Problem> {
    if caller.user_id != id {
        let admin = Requirement::parse(ADMIN_PERMISSION).map_err(|_| Problem::internal())?;
        if !caller.satisfies(&admin) {
            return Err(Problem::forbidden(
                "only an administrator may read another user",
            ));
        }
    }
    let user = api
        .users_op("get_user", api.auth().users().get_user(&id))
        .await?
        .ok_or_else(no_user)?;
    Ok(Json(UserView::from(user)))
}

/// Deletes an account with its sessions and tokens.
#[utoipa::path(
    delete, path = "/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id", min_length = 1, max_length = 255)),
    responses((status = 204, description = "deleted"), NotFound, Authz, Common)
)]
pub(crate) async fn delete(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    UserPath(id): UserPath,
) -> Result<StatusCode, Problem> {
    let deleted = api
        .auth_op("delete_user", api.auth().delete_user(&id))
        .await?;
    deleted
        .then_some(StatusCode::NO_CONTENT)
        .ok_or_else(no_user)
}

/// Ends every session of a user (`invalidate_user_sessions`); their tokens stop working.
#[utoipa::path(
    delete, path = "/v1/users/{id}/sessions", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "user id", min_length = 1, max_length = 255)),
    responses((status = 200, description = "sessions ended", body = CountView), Authz, Common)
)]
pub(crate) async fn invalidate_sessions(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    UserPath(id): UserPath,
) -> Result<Json<CountView>, Problem> {
    let count = api
        .sessions_op(
            "invalidate_user_sessions",
            api.manager().invalidate_user_sessions(id.as_str()),
        )
        .await?;
    Ok(Json(CountView { count }))
}
