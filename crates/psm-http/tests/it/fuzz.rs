//! Fuzz properties of request decoding through the real router (tower `oneshot`, no sockets), run
//! by `cargo xtask fuzz`: arbitrary methods, paths and path parameters, queries, content types,
//! `Authorization` headers and bodies never panic and never get a 5xx; every error is a problem
//! document, and a protected route never answers 2xx without a valid token.
//!
//! Under a plain `cargo test` the property runs a few dozen requests; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many (divided by the
//! property's cost).

use std::{net::SocketAddr, sync::OnceLock};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Method, Request, StatusCode, header},
};
use proptest::prelude::*;
use psm::{
    PermissionList, PermissionStorageManager,
    auth::{ClientInfo, LoginRequest, RegisterRequest},
};
use psm_http::{Api, HttpConfig};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt;

use crate::support::auth;

/// Small enough that oversized bodies are cheap to generate.
const BODY_LIMIT: usize = 4096;

/// The configuration of a property that costs `cost` times a cheap parser call: `PSM_FUZZ_CASES`
/// (set by `cargo xtask fuzz`) divided by `cost`, or 256 divided by `cost` under a plain `cargo test`.
fn config(cost: u32) -> ProptestConfig {
    let base = std::env::var("PSM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / cost).max(8),
        ..ProptestConfig::default()
    }
}

struct World {
    rt: Runtime,
    router: Router,
    admin: String,
    user: String,
    /// The token of every request that would revoke its caller's tokens, so the admin's and the
    /// user's survive.
    victim: String,
}

async fn token(api: &Api, name: &str, permissions: &[&str]) -> String {
    let email = format!("{name}@example.com");
    api.auth()
        .register(RegisterRequest {
            username: format!("{name}_user"),
            email: email.clone(),
            password: "a long enough password".to_owned(),
            permissions: PermissionList::parse(permissions).unwrap(),
        })
        .await
        .unwrap();
    api.auth()
        .login(LoginRequest {
            email,
            password: "a long enough password".to_owned(),
            client: ClientInfo::default(),
        })
        .await
        .unwrap()
        .tokens
        .access_token
}

/// The world the property shares (its requests change it: they delete sessions, revoke tokens).
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

/// A fresh world: a router over a memory store with an admin, a plain user, a victim and `sess_a`.
fn build_world() -> World {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (router, admin, user, victim) = rt.block_on(async {
        let auth = auth();
        let manager = PermissionStorageManager::from_store(auth.sessions().clone())
            .await
            .unwrap();
        let config = HttpConfig {
            body_limit: BODY_LIMIT,
            ..HttpConfig::default()
        };
        let api = Api::builder(manager, auth).config(config).build().unwrap();
        let admin = token(&api, "admin", &["psm:admin"]).await;
        let user = token(&api, "plain", &["read"]).await;
        let victim = token(&api, "victim", &["psm:admin"]).await;
        api.manager()
            .store_permissions("sess_a", "u1", ["read"], Some(1000), None)
            .await
            .unwrap();
        (psm_http::router(api), admin, user, victim)
    });
    World {
        rt,
        router,
        admin,
        user,
        victim,
    }
}

/// Every route template, with whether it needs a bearer token.
const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/auth/register", false),
    ("POST", "/v1/auth/login", false),
    ("POST", "/v1/auth/refresh", false),
    ("POST", "/v1/auth/logout", false),
    ("POST", "/v1/auth/revoke-all", true),
    ("GET", "/v1/me", true),
    ("GET", "/v1/me/sessions", true),
    ("DELETE", "/v1/me/sessions/{id}", true),
    ("GET", "/v1/sessions", true),
    ("POST", "/v1/sessions", true),
    ("POST", "/v1/sessions/cleanup", true),
    ("GET", "/v1/sessions/{id}", true),
    ("PUT", "/v1/sessions/{id}", true),
    ("DELETE", "/v1/sessions/{id}", true),
    ("GET", "/v1/sessions/{id}/permissions", true),
    ("PUT", "/v1/sessions/{id}/permissions", true),
    ("POST", "/v1/sessions/{id}/extend", true),
    ("GET", "/v1/sessions/{id}/check", true),
    ("POST", "/v1/sessions/{id}/check", true),
    ("GET", "/v1/users", true),
    ("POST", "/v1/users", true),
    ("GET", "/v1/users/{id}", true),
    ("DELETE", "/v1/users/{id}", true),
    ("DELETE", "/v1/users/{id}/sessions", true),
    ("GET", "/healthz", false),
    ("GET", "/readyz", false),
    ("GET", "/metrics", false),
    ("GET", "/openapi.json", false),
];

/// Routes whose success revokes the caller's own tokens.
fn revokes_caller(uri: &str) -> bool {
    // The path without its query: `/v1/auth/revoke-all?x` revokes its caller too (it once took
    // the admin's token, and the router's other tests then saw the admin revoked).
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    path == "/v1/auth/revoke-all" || path.starts_with("/v1/me/sessions/")
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Admin,
    User,
    /// The admin token with one character changed.
    Mutated(prop::sample::Index, char),
    Raw(Vec<u8>),
}

fn auth_header() -> impl Strategy<Value = Auth> {
    prop_oneof![
        2 => Just(Auth::None),
        4 => Just(Auth::Admin),
        1 => Just(Auth::User),
        1 => (any::<prop::sample::Index>(), prop::sample::select(vec!['A', 'z', '0', '.', '_', '-', '='])).prop_map(|(i, c)| Auth::Mutated(i, c)),
        2 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            "(Bearer|bearer|BEARER|Basic|Token)?( {0,2})[A-Za-z0-9._=-]{0,60}".prop_map(String::into_bytes),
        ].prop_map(Auth::Raw),
    ]
}

/// A path parameter: the session-id alphabet, URI characters left raw (stray `%` included), or
/// arbitrary text percent-encoded.
fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sess_a".to_owned()),
        "[A-Za-z0-9_-]{1,40}",
        (250_usize..260).prop_map(|n| "a".repeat(n)),
        "[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,40}",
        any::<String>().prop_map(|s| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(limit|offset|user_id|permission|x)=(-?[0-9]{1,22}|[a-z%]{0,6})(&(limit|offset|user_id|permission)=(-?[0-9]{1,6}|[a-z]{0,4})){0,2}"
            .prop_map(|q| format!("?{q}")),
        "[A-Za-z0-9=&%+;-]{0,30}".prop_map(|q| format!("?{q}")),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        6 => prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
            "application/jsonx",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
            ";",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

/// A JSON value of the types a field may or may not take.
fn field_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0_i64),
            Just(1),
            Just(-1),
            Just(86_400),
            Just(31_536_001),
            any::<i64>()
        ]
        .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "u1",
            "sess_a",
            "read",
            "psm:admin",
            "add",
            "remove",
            "replace",
            "reject",
            "evict_oldest",
            "a@b.co",
            "a long enough password",
            "user_name",
            "",
            " ",
            "x y",
            "1h",
        ])
        .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "user_id",
        "permissions",
        "ttl",
        "metadata",
        "session_id",
        "max_sessions",
        "policy",
        "mode",
        "permission",
        "username",
        "email",
        "password",
        "refresh_token",
        "limit",
        "offset",
        "extra",
    ]);
    prop_oneof![
        2 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => "[\\[\\]{}\":,0-9a-z ]{0,80}".prop_map(String::into_bytes),
        6 => prop::collection::btree_map(key, field_value(), 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
        1 => (BODY_LIMIT - 8..BODY_LIMIT + 64)
            .prop_map(|n| format!("{{\"metadata\":{{\"pad\":\"{}\"}}}}", "x".repeat(n)).into_bytes()),
    ]
}

#[derive(Debug)]
struct Case {
    method: Method,
    uri: String,
    protected: bool,
    auth: Auth,
    content_type: Option<Vec<u8>>,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    let method = prop_oneof![
        8 => Just(None),
        1 => prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD, Method::OPTIONS]).prop_map(Some),
    ];
    let path = prop_oneof![
        9 => (prop::sample::select(ROUTES), param()).prop_map(|((m, t, p), id)| (m, t.replace("{id}", &id), p)),
        1 => "/[A-Za-z0-9/._%-]{0,40}".prop_map(|p| ("GET", p, false)),
    ];
    (method, path, query(), auth_header(), content_type(), body()).prop_map(
        |(method, (route_method, path, protected), query, auth, content_type, body)| Case {
            method: method.unwrap_or_else(|| Method::from_bytes(route_method.as_bytes()).unwrap()),
            uri: format!("{path}{query}"),
            protected,
            auth,
            content_type,
            body,
        },
    )
}

impl Case {
    /// The request, or `None` when the generated URI or a header value is not valid HTTP (a
    /// client could not send it).
    fn request(&self, w: &World) -> Option<(Request<Body>, bool)> {
        let mut valid_token = false;
        let authorization = match &self.auth {
            Auth::None => None,
            Auth::Admin | Auth::User => {
                valid_token = true;
                // Neither the admin's nor the user's token may be revoked by a case: the other
                // cases and `the_fuzzed_router_answers_its_tokens` rely on both.
                let token = match (&self.auth, revokes_caller(&self.uri)) {
                    (_, true) => &w.victim,
                    (Auth::User, false) => &w.user,
                    _ => &w.admin,
                };
                Some(format!("Bearer {token}").into_bytes())
            }
            Auth::Mutated(i, c) => {
                let mut chars: Vec<char> = w.admin.chars().collect();
                let at = i.index(chars.len());
                if chars[at] == *c {
                    return None;
                }
                chars[at] = *c;
                Some(format!("Bearer {}", chars.into_iter().collect::<String>()).into_bytes())
            }
            Auth::Raw(bytes) => Some(bytes.clone()),
        };
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str());
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, HeaderValue::from_bytes(&a).ok()?);
        }
        if let Some(ct) = &self.content_type {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_bytes(ct).ok()?);
        }
        let mut request = builder.body(Body::from(self.body.clone())).ok()?;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        Some((request, valid_token))
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn requests_get_a_problem_or_an_answer_never_a_5xx(case in case()) {
        let w = world();
        let Some((request, valid_token)) = case.request(w) else {
            return Ok(());
        };
        let response = w.rt.block_on(w.router.clone().oneshot(request)).unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = w
            .rt
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        prop_assert!(!status.is_server_error(), "{} for {:?}: {}", status, case, String::from_utf8_lossy(&bytes));
        prop_assert!(status.as_u16() >= 200);
        if case.protected && !valid_token {
            prop_assert!(!status.is_success(), "{} without a valid token for {:?}", status, case);
        }
        // A HEAD answer has no body to check.
        if status.is_client_error() && case.method != Method::HEAD {
            prop_assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{:?}", case);
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let code = body["code"].as_str().unwrap_or_default().to_owned();
            prop_assert!(!code.is_empty(), "{}", body);
            prop_assert_eq!(&body["status"], &json!(status.as_u16()));
            prop_assert_eq!(&body["type"], &json!(format!("urn:psm:problem:{code}")));
            prop_assert!(body["title"].is_string() && body["detail"].is_string(), "{}", body);
        }
    }
}

#[test]
fn the_fuzzed_router_answers_its_tokens() {
    // Guards the property: the world's tokens are valid, so requests with them reach the handlers.
    // On a world of its own: the property's requests change the shared one while this runs.
    let w = build_world();
    for (token, expected) in [(&w.admin, StatusCode::OK), (&w.user, StatusCode::FORBIDDEN)] {
        let request = Request::get("/v1/sessions/sess_a")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = w.rt.block_on(w.router.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), expected);
    }
}
