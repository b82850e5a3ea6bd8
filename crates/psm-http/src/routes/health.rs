//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::future::{BoxFuture, join_all};
use psm::{CacheKey, UserId};
use serde_json::{Map, Value};

use crate::{Api, dto::HealthView, openapi};

/// How long one store may take to answer the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The id every readiness probe reads (nothing is ever stored under it).
const PROBE_ID: &str = "psm-readyz-probe";

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process serves requests", body = HealthView))
)]
pub(crate) async fn healthz() -> Json<HealthView> {
    Json(HealthView {
        status: "ok",
        checks: Map::new(),
    })
}

/// Every store answers: one cheap read of each, at most two seconds apiece.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "every store answered", body = HealthView),
        (status = 503, description = "a store did not answer; `checks` says which", body = HealthView),
    )
)]
pub(crate) async fn readyz(State(api): State<Api>) -> Response {
    let probes = probes(&api);
    let names: Vec<&'static str> = probes.iter().map(|(n, _)| *n).collect();
    let results = join_all(probes.into_iter().map(|(_, probe)| async move {
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.kind().code()),
            Err(_) => Err("operation_timeout"),
        }
    }))
    .await;
    let mut checks = Map::new();
    let mut ready = true;
    for (name, result) in names.into_iter().zip(results) {
        let value = match result {
            Ok(()) => "ok",
            Err(code) => {
                ready = false;
                code
            }
        };
        checks.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    let (status, label) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        Json(HealthView {
            status: label,
            checks,
        }),
    )
        .into_response()
}

type Probe = BoxFuture<'static, psm::Result<()>>;

/// One read per store: sessions, users, and the token state and cache when configured.
fn probes(api: &Api) -> Vec<(&'static str, Probe)> {
    let mut out: Vec<(&'static str, Probe)> = Vec::new();
    let manager = api.manager().clone();
    out.push((
        "sessions",
        Box::pin(async move { manager.get_permissions(PROBE_ID).await.map(drop) }),
    ));
    let users = api.auth().users().clone();
    out.push((
        "users",
        Box::pin(async move { users.get_user(&UserId::parse(PROBE_ID)?).await.map(drop) }),
    ));
    if let Some(tokens) = api.token_state().cloned() {
        out.push((
            "token_state",
            Box::pin(async move { tokens.user_epoch(&UserId::parse(PROBE_ID)?).await.map(drop) }),
        ));
    }
    if let Some(cache) = api.cache().cloned() {
        out.push((
            "cache",
            Box::pin(async move { cache.get(&CacheKey::parse(PROBE_ID)?).await.map(drop) }),
        ));
    }
    out
}

/// Prometheus text exposition.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.metrics().render(),
    )
        .into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> Response {
    Json(openapi::openapi()).into_response()
}
