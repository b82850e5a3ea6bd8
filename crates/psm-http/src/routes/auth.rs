//! `/v1/auth/*`: registration, login, refresh, logout and revoke-all.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, State},
    http::{StatusCode, header, request::Parts},
    response::IntoResponse,
};
use psm::{
    Clock, SystemClock,
    auth::{ClientInfo, LoginRequest, RegisterRequest},
};

use crate::{
    Api,
    dto::{CountView, LoginBody, RefreshBody, RegisterBody, TokenView, UserView},
    extract::ApiJson,
    guard::Principal,
    openapi::{Authn, Body, Common, Conflict, Limited},
    problem::{Problem, codes},
};

/// The client of a request, for login throttling and session metadata.
pub(crate) struct Client(pub(crate) ClientInfo);

impl FromRequestParts<Api> for Client {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Self::Rejection> {
        // The proxy appends the address it saw: the rightmost entry is the one a client cannot
        // choose. Anything that is not an address is ignored.
        let forwarded = api
            .config()
            .trust_forwarded_for
            .then(|| parts.headers.get_all("x-forwarded-for").iter().next_back())
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_string());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let ip = forwarded.or(peer);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self(ClientInfo {
            key: ip.clone().unwrap_or_else(|| "unknown".to_owned()),
            ip,
            user_agent,
        }))
    }
}

/// A token response: never stored by a cache (RFC 6749 §5.1).
fn no_store(view: TokenView) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(view),
    )
}

/// Creates an account with the server's default permissions.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "the account", body = UserView),
        (status = 403, description = "registration is closed on this server", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        Conflict, Limited, Body, Common,
    )
)]
pub(crate) async fn register(
    State(api): State<Api>,
    Client(client): Client,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<impl IntoResponse, Problem> {
    if !api.config().registration {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            codes::REGISTRATION_CLOSED,
            "self-registration is closed on this server",
        ));
    }
    if let Err(refused) = api.registrations().attempt(&client.key, Instant::now()) {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            psm::ErrorKind::RateLimited.code(),
            "too many registrations from this client; retry later",
        )
        .with("scope", if refused.global { "global" } else { "client" })
        .retry_after(refused.retry_after));
    }
    let request = RegisterRequest {
        username: body.username,
        email: body.email,
        password: body.password,
        permissions: api.default_permissions().clone(),
    };
    let user = api
        .auth_op("register", api.auth().register(request))
        .await
        .map_err(|e| Problem::from(e).without_challenge())?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(user))))
}

/// Logs in: a new session and its token pair.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "the session's tokens", body = TokenView),
        (status = 401, description = "wrong email or password", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        Conflict, Limited, Body, Common,
    )
)]
pub(crate) async fn login(
    State(api): State<Api>,
    Client(client): Client,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, Problem> {
    let request = LoginRequest {
        email: body.email,
        password: body.password,
        client,
    };
    let outcome = api
        .auth_op("login", api.auth().login(request))
        .await
        .map_err(|e| Problem::from(e).without_challenge())?;
    Ok(no_store(TokenView::new(outcome.tokens, SystemClock.now())))
}

/// Trades a refresh token for a new pair (the old one is spent; presenting it again ends the
/// session).
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "the new pair", body = TokenView),
        (status = 401, description = "the token is invalid, expired, revoked or reused", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        Body, Common,
    )
)]
pub(crate) async fn refresh(
    State(api): State<Api>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<impl IntoResponse, Problem> {
    let pair = api
        .auth_op("refresh", api.auth().refresh(&body.refresh_token))
        .await
        .map_err(|e| Problem::from(e).without_challenge())?;
    Ok(no_store(TokenView::new(pair, SystemClock.now())))
}

/// Logs out: revokes the refresh token's family and ends its session.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 204, description = "logged out"),
        (status = 401, description = "not a validly signed refresh token", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        Body, Common,
    )
)]
pub(crate) async fn logout(
    State(api): State<Api>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, Problem> {
    api.auth_op("logout", api.auth().logout(&body.refresh_token))
        .await
        .map_err(|e| Problem::from(e).without_challenge())?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every token of the caller and ends every session of theirs.
#[utoipa::path(
    post, path = "/v1/auth/revoke-all", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "how many token families were revoked", body = CountView),
        Authn, Common,
    )
)]
pub(crate) async fn revoke_all(
    State(api): State<Api>,
    caller: Principal,
) -> Result<axum::Json<CountView>, Problem> {
    let count = api
        .auth_op(
            "revoke_user_tokens",
            api.auth().revoke_user_tokens(&caller.user_id),
        )
        .await?;
    Ok(axum::Json(CountView { count }))
}
