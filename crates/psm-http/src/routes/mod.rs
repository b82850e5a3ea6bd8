//! The routes (DESIGN §6) and the router that serves them.

pub(crate) mod auth;
pub(crate) mod health;
pub(crate) mod me;
pub(crate) mod sessions;
pub(crate) mod users;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::{
    Api,
    metrics::track,
    problem::{Problem, codes},
};

/// The API's router: every route, with body limit, per-request timeout, tracing and metrics.
///
/// Serve it with [`crate::serve`] (graceful shutdown, peer addresses for throttling) or with
/// `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())`.
pub fn router(api: Api) -> Router {
    let config = api.config().clone();
    Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/revoke-all", post(auth::revoke_all))
        .route("/v1/me", get(me::me))
        .route("/v1/me/sessions", get(me::list))
        .route("/v1/me/sessions/{id}", delete(me::revoke))
        .route("/v1/sessions", get(sessions::list).post(sessions::create))
        .route("/v1/sessions/cleanup", post(sessions::cleanup))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get)
                .put(sessions::store)
                .delete(sessions::invalidate),
        )
        .route(
            "/v1/sessions/{id}/permissions",
            get(sessions::permissions).put(sessions::update),
        )
        .route("/v1/sessions/{id}/extend", post(sessions::extend))
        .route(
            "/v1/sessions/{id}/check",
            get(sessions::check).post(sessions::check_many),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{id}", get(users::get).delete(users::delete))
        .route(
            "/v1/users/{id}/sessions",
            delete(users::invalidate_sessions),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi_json))
        // Innermost first: the timeout, then counting and tracing under the route template, so
        // a timed-out request is counted and traced too. These run only for matched routes; the
        // fallbacks count themselves as `unmatched`. One log line per request is at debug
        // (failures are logged at error by the layer, store errors where they become problems),
        // so a busy server at the default `info` writes no lines.
        .route_layer(middleware::from_fn_with_state(
            config.request_timeout,
            timeout,
        ))
        .route_layer(middleware::from_fn_with_state(api.clone(), track))
        .route_layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // Paths carry session ids: spans name the method and the route template only.
                // At debug, like the request lines: a busy server at `info` builds no span.
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    tracing::debug_span!("request", method = %request.method(), route)
                }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(api)
}

async fn not_found(State(api): State<Api>, method: Method) -> Problem {
    api.metrics()
        .unmatched(&method, StatusCode::NOT_FOUND.as_u16());
    Problem::not_found("no such route")
}

async fn method_not_allowed(State(api): State<Api>, method: Method) -> Problem {
    api.metrics()
        .unmatched(&method, StatusCode::METHOD_NOT_ALLOWED.as_u16());
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("this route does not answer {method}"),
    )
}

/// Answers 503 `request_timeout` when the handler takes longer than the configured time (the
/// handler's future is dropped, so its store call is cancelled).
async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::REQUEST_TIMEOUT,
            "the request did not finish in time",
        )
        .retry_after(1)
        .into_response(),
    }
}
