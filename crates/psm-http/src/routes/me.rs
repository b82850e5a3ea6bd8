//! `/v1/me`: the caller and the caller's own sessions.

use axum::{Json, extract::State, http::StatusCode};
use psm::{Page, SessionId, UserId};

use crate::{
    Api,
    dto::{MeView, SessionView},
    extract::SessionPath,
    guard::Principal,
    openapi::{Authn, Common, NotFound},
    problem::Problem,
};

/// Most sessions one listing returns (far above any sane per-user limit).
const MAX_LISTED: u64 = 10_000;

/// The caller: user, session and permissions.
#[utoipa::path(
    get, path = "/v1/me", tag = "me",
    security(("bearer" = [])),
    responses((status = 200, description = "the caller", body = MeView), Authn, Common)
)]
pub(crate) async fn me(caller: Principal) -> Json<MeView> {
    Json(MeView {
        user_id: caller.user_id.as_str().to_owned(),
        session_id: caller.session_id.as_str().to_owned(),
        permissions: caller.permissions.to_strings(),
    })
}

/// The caller's live sessions, oldest first.
#[utoipa::path(
    get, path = "/v1/me/sessions", tag = "me",
    security(("bearer" = [])),
    responses((status = 200, description = "the sessions", body = [SessionView]), Authn, Common)
)]
pub(crate) async fn list(
    State(api): State<Api>,
    caller: Principal,
) -> Result<Json<Vec<SessionView>>, Problem> {
    Ok(Json(sessions_of(&api, &caller.user_id).await?))
}

/// Ends one of the caller's sessions (its tokens stop working).
#[utoipa::path(
    delete, path = "/v1/me/sessions/{id}", tag = "me",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a session id of the caller", min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")),
    responses((status = 204, description = "ended"), NotFound, Authn, Common)
)]
pub(crate) async fn revoke(
    State(api): State<Api>,
    caller: Principal,
    SessionPath(id): SessionPath,
) -> Result<StatusCode, Problem> {
    let manager = api.manager();
    let owner = api
        .sessions_op("get_permissions", manager.get_permissions(id.as_str()))
        .await?
        .map(|d| d.user_id);
    if owner.as_ref() != Some(&caller.user_id) {
        return Err(not_yours());
    }
    let ended = api
        .sessions_op(
            "invalidate_session",
            manager.invalidate_session(id.as_str()),
        )
        .await?;
    if ended {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_yours())
    }
}

/// Another user's session is as invisible as a missing one: the same answer as the admin route's.
fn not_yours() -> Problem {
    Problem::from(psm::Error::new(
        psm::ErrorKind::SessionNotFound,
        "no live session of yours with this id",
    ))
}

/// Every live session of `user` with its info, oldest first.
pub(crate) async fn sessions_of(api: &Api, user: &UserId) -> Result<Vec<SessionView>, Problem> {
    let manager = api.manager();
    let mut ids: Vec<SessionId> = Vec::new();
    let mut page = Page::new(1000, 0).map_err(Problem::from)?;
    loop {
        let batch = api
            .sessions_op(
                "list_sessions",
                manager.list_sessions_page(Some(user.as_str()), page),
            )
            .await?;
        let done = batch.len() < page.limit();
        ids.extend(batch);
        if done || ids.len() as u64 >= MAX_LISTED {
            ids.truncate(usize::try_from(MAX_LISTED).unwrap_or(usize::MAX));
            break;
        }
        page = page.next();
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let info = api
            .sessions_op("get_session_info", manager.get_session_info(id.as_str()))
            .await?;
        // A session that ended between the listing and this read is simply not listed.
        if let Some(info) = info {
            out.push(SessionView::new(&id, info));
        }
    }
    Ok(out)
}
