//! `/v1/sessions`: every manager operation, for callers holding `psm:admin`.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use psm::{LimitPolicy, SessionLimit};
use serde_json::Value;

use crate::{
    Api,
    dto::{
        CheckManyBody, CheckManyView, CheckQuery, CheckView, CountView, CreateSessionBody,
        CreatedView, DataView, ExtendBody, ListQuery, ListView, MAX_OFFSET, MAX_SESSION_LIMIT,
        PolicyBody, SessionView, StoreBody, StoredView, UpdateBody,
    },
    extract::{ApiJson, ApiQuery, SessionPath},
    guard::RequirePermission,
    openapi::{Authz, Body, Common, Conflict, NotFound},
    problem::Problem,
};

crate::permission!(pub(crate) Admin = "psm:admin");

/// The default page size of `GET /v1/sessions`.
const DEFAULT_LIMIT: u64 = 100;

fn missing() -> Problem {
    Problem::from(psm::Error::new(
        psm::ErrorKind::SessionNotFound,
        "no live session with this id",
    ))
}

/// Lists session ids: one user's by creation, or every session in the provider's stable order.
#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "a page of ids", body = ListView), Authz, Common)
)]
pub(crate) async fn list(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ListView>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(Problem::invalid_parameter(
            "offset",
            "offset is larger than 9223372036854775807",
        ));
    }
    let ids = api
        .sessions_op(
            "list_sessions",
            api.manager()
                .list_sessions(query.user_id.as_deref(), limit, offset),
        )
        .await?;
    Ok(Json(ListView {
        sessions: ids.iter().map(|id| id.as_str().to_owned()).collect(),
        limit,
        offset,
    }))
}

/// Creates a session under a per-user limit (`create_session`; never overwrites).
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    request_body = CreateSessionBody,
    responses(
        (status = 201, description = "the new session", body = CreatedView),
        Conflict, Authz, Body, Common,
    )
)]
pub(crate) async fn create(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    ApiJson(body): ApiJson<CreateSessionBody>,
) -> Result<impl IntoResponse, Problem> {
    let limit = match body.max_sessions {
        None => SessionLimit::unlimited(),
        Some(max) if max > MAX_SESSION_LIMIT => {
            return Err(Problem::invalid_parameter(
                "max_sessions",
                "max_sessions is larger than 1000000",
            ));
        }
        Some(max) => {
            let policy = match body.policy.unwrap_or(PolicyBody::Reject) {
                PolicyBody::Reject => LimitPolicy::Reject,
                PolicyBody::EvictOldest => LimitPolicy::EvictOldest,
            };
            SessionLimit::new(max, policy)
                .map_err(|e| Problem::from(e.with_detail("field", "max_sessions")))?
        }
    };
    let metadata = body.metadata.map(Value::Object);
    let manager = api.manager();
    let created = match &body.session_id {
        Some(id) => {
            api.sessions_op(
                "create_session",
                manager.create_session_with_id(
                    id,
                    &body.user_id,
                    &body.permissions,
                    body.ttl,
                    metadata,
                    limit,
                ),
            )
            .await?
        }
        None => {
            api.sessions_op(
                "create_session",
                manager.create_session(&body.user_id, &body.permissions, body.ttl, metadata, limit),
            )
            .await?
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedView {
            session_id: created.id.as_str().to_owned(),
            evicted: created
                .evicted
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect(),
        }),
    ))
}

/// Removes every expired session and dangling index entry.
#[utoipa::path(
    post, path = "/v1/sessions/cleanup", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "sessions removed", body = CountView), Authz, Common)
)]
pub(crate) async fn cleanup(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
) -> Result<Json<CountView>, Problem> {
    let count = api
        .sessions_op(
            "cleanup_expired_sessions",
            api.manager().cleanup_expired_sessions(),
        )
        .await?;
    Ok(Json(CountView { count }))
}

/// A session's record and ttl state (`get_session_info`).
#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    responses((status = 200, description = "the session", body = SessionView), NotFound, Authz, Common)
)]
pub(crate) async fn get(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
) -> Result<Json<SessionView>, Problem> {
    let info = api
        .sessions_op(
            "get_session_info",
            api.manager().get_session_info(id.as_str()),
        )
        .await?
        .ok_or_else(missing)?;
    Ok(Json(SessionView::new(&id, info)))
}

/// Stores a session, replacing any session with this id (`store_permissions`).
#[utoipa::path(
    put, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    request_body = StoreBody,
    responses((status = 200, description = "stored", body = StoredView), Authz, Body, Common)
)]
pub(crate) async fn store(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
    ApiJson(body): ApiJson<StoreBody>,
) -> Result<Json<StoredView>, Problem> {
    let stored = api
        .sessions_op(
            "store_permissions",
            api.manager().store_permissions(
                id.as_str(),
                &body.user_id,
                &body.permissions,
                body.ttl,
                body.metadata.map(Value::Object),
            ),
        )
        .await?;
    Ok(Json(StoredView {
        session_id: id.as_str().to_owned(),
        stored,
    }))
}

/// Ends a session (`invalidate_session`).
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    responses((status = 204, description = "ended"), NotFound, Authz, Common)
)]
pub(crate) async fn invalidate(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
) -> Result<StatusCode, Problem> {
    let ended = api
        .sessions_op(
            "invalidate_session",
            api.manager().invalidate_session(id.as_str()),
        )
        .await?;
    ended.then_some(StatusCode::NO_CONTENT).ok_or_else(missing)
}

/// A session's record (`get_permissions`).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/permissions", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    responses((status = 200, description = "the session's record", body = DataView), NotFound, Authz, Common)
)]
pub(crate) async fn permissions(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
) -> Result<Json<DataView>, Problem> {
    let data = api
        .sessions_op(
            "get_permissions",
            api.manager().get_permissions(id.as_str()),
        )
        .await?
        .ok_or_else(missing)?;
    Ok(Json(DataView::from(data)))
}

/// Replaces a session's permissions (`update_permissions`); without a ttl the expiry stays.
#[utoipa::path(
    put, path = "/v1/sessions/{id}/permissions", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    request_body = UpdateBody,
    responses((status = 204, description = "updated"), NotFound, Authz, Body, Common)
)]
pub(crate) async fn update(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<StatusCode, Problem> {
    let updated = api
        .sessions_op(
            "update_permissions",
            api.manager()
                .update_permissions(id.as_str(), &body.permissions, body.ttl),
        )
        .await?;
    updated
        .then_some(StatusCode::NO_CONTENT)
        .ok_or_else(missing)
}

/// Renews a session: it expires `ttl` seconds from now (`extend_session_ttl`).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/extend", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    request_body = ExtendBody,
    responses((status = 204, description = "renewed"), NotFound, Authz, Body, Common)
)]
pub(crate) async fn extend(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<StatusCode, Problem> {
    let renewed = api
        .sessions_op(
            "extend_session_ttl",
            api.manager().extend_session_ttl(id.as_str(), body.ttl),
        )
        .await?;
    renewed
        .then_some(StatusCode::NO_CONTENT)
        .ok_or_else(missing)
}

/// Whether a session holds a permission (`check_permission`; a missing session holds nothing).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/check", tag = "sessions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$"),
        CheckQuery,
    ),
    responses((status = 200, description = "the answer", body = CheckView), Authz, Common)
)]
pub(crate) async fn check(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
    ApiQuery(query): ApiQuery<CheckQuery>,
) -> Result<Json<CheckView>, Problem> {
    let granted = api
        .sessions_op(
            "check_permission",
            api.manager()
                .check_permission(id.as_str(), &query.permission),
        )
        .await?;
    Ok(Json(CheckView {
        permission: query.permission,
        granted,
    }))
}

/// Which of several permissions a session holds (`check_permissions`).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/check", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "session id", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    request_body = CheckManyBody,
    responses((status = 200, description = "the answers, in order", body = CheckManyView), Authz, Body, Common)
)]
pub(crate) async fn check_many(
    State(api): State<Api>,
    _: RequirePermission<Admin>,
    SessionPath(id): SessionPath,
    ApiJson(body): ApiJson<CheckManyBody>,
) -> Result<Json<CheckManyView>, Problem> {
    let check = api
        .sessions_op(
            "check_permissions",
            api.manager()
                .check_permissions(id.as_str(), &body.permissions),
        )
        .await?;
    Ok(Json(CheckManyView::from(check)))
}
