//! Guarding routes by permission: [`PermissionGuard`] finds the caller's session,
//! [`RequirePermission`] (an extractor) and [`RequirePermissionLayer`] (a tower layer) refuse
//! callers whose session holds no permission matching the route's requirement.
//!
//! A caller is found by an `Authorization: Bearer` access token that psm issued (verified strictly:
//! signature, claims and the user's token epoch) or, when the guard is configured for it, by a
//! session id in a request header. Either way the session is then read once from the store, so a
//! session invalidated a moment ago no longer passes. A requirement is a permission, matched
//! exactly, or a shell-style pattern (`docs:*`, `admin:[rw]*`) that at least one of the session's
//! permissions must match: the stores compare literally (RULES.md), wildcards live here.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{FromRef, FromRequestParts, Request},
    http::{HeaderName, request::Parts},
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use psm::{
    ErrorKind, PermissionList, PermissionStorageManager, SessionId, UserId, auth::AuthService,
    util::PermissionPattern,
};
use tower::{Layer, Service};

use crate::{extract::bearer_token, metrics::Metrics, problem::Problem, state::result_label};

/// The authenticated caller: the session the request came with and what it holds.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The session's owner.
    pub user_id: UserId,
    /// The session.
    pub session_id: SessionId,
    /// The session's permissions, as read for this request.
    pub permissions: PermissionList,
}

impl Principal {
    /// Whether the session holds a permission matching `requirement`.
    pub fn satisfies(&self, requirement: &Requirement) -> bool {
        let pattern = &requirement.pattern;
        if pattern.is_literal() {
            self.permissions.iter_str().any(|p| p == pattern.as_str())
        } else {
            self.permissions.iter_str().any(|p| pattern.matches(p))
        }
    }
}

/// What a route requires: a permission (exact) or a pattern (any matching permission).
#[derive(Debug, Clone)]
pub struct Requirement {
    pattern: PermissionPattern,
}

impl Requirement {
    /// Parses `requirement`: without `*`, `?` or `[` it is one permission, compared exactly.
    ///
    /// # Errors
    /// `InvalidPermission` when it is empty, longer than 255 bytes, or has whitespace or control
    /// characters.
    pub fn parse(requirement: &str) -> psm::Result<Self> {
        PermissionPattern::parse(requirement).map(|pattern| Self { pattern })
    }

    /// The requirement as written.
    pub fn as_str(&self) -> &str {
        self.pattern.as_str()
    }
}

/// Finds and checks callers: built once, cloned into the router state or a layer.
#[derive(Clone)]
pub struct PermissionGuard {
    manager: PermissionStorageManager,
    auth: Option<AuthService>,
    session_header: Option<HeaderName>,
    /// psm's own API counts the guard's store reads (`/metrics`).
    observer: Option<Observer>,
}

#[derive(Clone)]
struct Observer {
    metrics: Metrics,
    tokens_provider: String,
}

impl fmt::Debug for PermissionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionGuard")
            .field("provider", &self.manager.provider_name())
            .field("bearer_tokens", &self.auth.is_some())
            .field("session_header", &self.session_header)
            .finish()
    }
}

impl PermissionGuard {
    /// A guard that accepts bearer access tokens issued by `auth`, whose sessions live in `manager`.
    pub fn with_tokens(manager: PermissionStorageManager, auth: AuthService) -> Self {
        Self {
            manager,
            auth: Some(auth),
            session_header: None,
            observer: None,
        }
    }

    /// A guard that takes the session id from the header `name` (for applications that keep the
    /// session id in a header or set it from a cookie in their own middleware).
    pub fn with_session_header(manager: PermissionStorageManager, name: HeaderName) -> Self {
        Self {
            manager,
            auth: None,
            session_header: Some(name),
            observer: None,
        }
    }

    /// Also accepts a session id in the header `name`, when a request has no bearer token.
    #[must_use]
    pub fn session_header(mut self, name: HeaderName) -> Self {
        self.session_header = Some(name);
        self
    }

    /// Counts the guard's reads in `metrics` (the session store under its provider, the token
    /// epoch read under `tokens_provider`).
    pub(crate) fn observed(mut self, metrics: Metrics, tokens_provider: String) -> Self {
        self.observer = Some(Observer {
            metrics,
            tokens_provider,
        });
        self
    }

    fn record<T>(
        &self,
        tokens: bool,
        operation: &'static str,
        out: &psm::Result<T>,
        start: Instant,
    ) {
        if let Some(o) = &self.observer {
            let provider = if tokens {
                o.tokens_provider.as_str()
            } else {
                self.manager.provider_name()
            };
            o.metrics
                .store_op(provider, operation, result_label(out), start.elapsed());
        }
    }

    /// The manager whose sessions the guard reads.
    pub fn manager(&self) -> &PermissionStorageManager {
        &self.manager
    }

    /// Finds the caller of a request.
    ///
    /// # Errors
    /// 401 when the request carries no usable credential, the token does not verify, or its session
    /// has ended; 503 when the store is unavailable.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, Problem> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let has_bearer = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        if let (Some(name), false) = (&self.session_header, has_bearer) {
            let Some(value) = parts.headers.get(name) else {
                return Err(Problem::unauthorized(format!(
                    "this route needs a session id in the {name} header"
                )));
            };
            let sid = value
                .to_str()
                .ok()
                .and_then(|v| SessionId::parse(v).ok())
                .ok_or_else(|| Problem::unauthorized("the session id header is malformed"))?;
            return self.session_principal(sid, None).await;
        }
        let Some(auth) = &self.auth else {
            return Err(Problem::unauthorized(
                "this route does not accept bearer tokens",
            ));
        };
        let token = bearer_token(parts)?;
        let start = Instant::now();
        let verified = auth.token_service().verify_access_strict(token).await;
        self.record(true, "verify_access_strict", &verified, start);
        let claims = verified.map_err(Problem::from)?;
        let (Ok(sid), Ok(user)) = (SessionId::parse(&claims.sid), UserId::parse(&claims.sub))
        else {
            return Err(Problem::from(psm::Error::new(
                ErrorKind::TokenInvalid,
                "token claims are malformed",
            )));
        };
        self.session_principal(sid, Some(user)).await
    }

    /// Finds the caller and checks `requirement`.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate); 403 when the session holds no matching permission.
    pub async fn authorize(
        &self,
        parts: &Parts,
        requirement: &Requirement,
    ) -> Result<Principal, Problem> {
        let principal = self.authenticate(parts).await?;
        if principal.satisfies(requirement) {
            Ok(principal)
        } else {
            Err(Problem::forbidden(format!(
                "this route requires the permission {}",
                requirement.as_str()
            ))
            .with("required", requirement.as_str()))
        }
    }

    /// The principal of session `sid`, which must belong to `user` when a token named one.
    async fn session_principal(
        &self,
        sid: SessionId,
        user: Option<UserId>,
    ) -> Result<Principal, Problem> {
        let start = Instant::now();
        let read = self.manager.get_permissions(sid.as_str()).await;
        self.record(false, "get_permissions", &read, start);
        let data = read.map_err(Problem::from)?;
        match data {
            Some(data) if user.as_ref().is_none_or(|u| *u == data.user_id) => Ok(Principal {
                user_id: data.user_id,
                session_id: sid,
                permissions: data.permissions,
            }),
            _ => Err(Problem::from(psm::Error::new(
                ErrorKind::TokenRevoked,
                "the session has ended",
            ))),
        }
    }
}

/// Any authenticated caller: extracts the [`Principal`] (from a [`RequirePermissionLayer`] that
/// ran before, or through the state's [`PermissionGuard`]).
impl<S> FromRequestParts<S> for Principal
where
    PermissionGuard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        PermissionGuard::from_ref(state).authenticate(parts).await
    }
}

/// A permission a route requires, named by a type; declare one with [`permission!`](crate::permission).
pub trait RequiredPermission: Send + Sync + 'static {
    /// The permission or pattern.
    const REQUIREMENT: &'static str;

    /// The parsed requirement, when the implementation keeps one (the [`permission!`](crate::permission)
    /// macro parses once per type); otherwise it is parsed on each request.
    fn parsed() -> Option<&'static Requirement> {
        None
    }
}

/// Declares a [`RequiredPermission`] type for [`RequirePermission`].
///
/// ```
/// psm_http::permission!(pub DocsRead = "docs:read");
/// psm_http::permission!(AnyAdmin = "admin:*");
/// # use psm_http::RequiredPermission;
/// assert_eq!(DocsRead::REQUIREMENT, "docs:read");
/// ```
#[macro_export]
macro_rules! permission {
    ($vis:vis $name:ident = $requirement:literal) => {
        #[doc = concat!("The requirement `", $requirement, "`.")]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::RequiredPermission for $name {
            const REQUIREMENT: &'static str = $requirement;

            fn parsed() -> ::std::option::Option<&'static $crate::Requirement> {
                static PARSED: ::std::sync::OnceLock<::std::option::Option<$crate::Requirement>> =
                    ::std::sync::OnceLock::new();
                PARSED
                    .get_or_init(|| $crate::Requirement::parse($requirement).ok())
                    .as_ref()
            }
        }
    };
}

/// An extractor that admits only callers whose session satisfies `P`, and yields them.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use psm_http::{PermissionGuard, RequirePermission};
///
/// psm_http::permission!(DocsRead = "docs:read");
///
/// async fn read_docs(RequirePermission(caller, ..): RequirePermission<DocsRead>) -> String {
///     format!("hello {}", caller.user_id)
/// }
///
/// fn app(guard: PermissionGuard) -> Router {
///     Router::new().route("/docs", get(read_docs)).with_state(guard)
/// }
/// ```
pub struct RequirePermission<P>(pub Principal, pub PhantomData<P>);

impl<P> fmt::Debug for RequirePermission<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequirePermission").field(&self.0).finish()
    }
}

impl<S, P> FromRequestParts<S> for RequirePermission<P>
where
    PermissionGuard: FromRef<S>,
    S: Send + Sync,
    P: RequiredPermission,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let parsed;
        let requirement = match P::parsed() {
            Some(r) => r,
            None => {
                parsed = Requirement::parse(P::REQUIREMENT).map_err(|e| {
                    tracing::error!(requirement = P::REQUIREMENT, error = %e, "invalid route requirement");
                    Problem::internal()
                })?;
                &parsed
            }
        };
        let principal = PermissionGuard::from_ref(state)
            .authorize(parts, requirement)
            .await?;
        Ok(Self(principal, PhantomData))
    }
}

/// A tower layer that admits only callers satisfying a requirement; the [`Principal`] is put in
/// the request's extensions, where handlers find it (extract `Principal` or
/// `Extension<Principal>`).
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use psm_http::{PermissionGuard, RequirePermissionLayer};
///
/// fn app(guard: PermissionGuard) -> psm::Result<Router> {
///     Ok(Router::new()
///         .route("/reports", get(|| async { "quarterly numbers" }))
///         .route_layer(RequirePermissionLayer::new(guard, "reports:*")?))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RequirePermissionLayer {
    guard: PermissionGuard,
    requirement: Arc<Requirement>,
}

impl RequirePermissionLayer {
    /// Requires `requirement` (a permission or a pattern), checked by `guard`.
    ///
    /// # Errors
    /// `InvalidPermission` when the requirement does not parse.
    pub fn new(guard: PermissionGuard, requirement: &str) -> psm::Result<Self> {
        Ok(Self {
            guard,
            requirement: Arc::new(Requirement::parse(requirement)?),
        })
    }
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermissionService {
            inner,
            guard: self.guard.clone(),
            requirement: Arc::clone(&self.requirement),
        }
    }
}

/// The service of a [`RequirePermissionLayer`].
#[derive(Debug, Clone)]
pub struct RequirePermissionService<S> {
    inner: S,
    guard: PermissionGuard,
    requirement: Arc<Requirement>,
}

impl<S> Service<Request> for RequirePermissionService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was driven to readiness serves this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let requirement = Arc::clone(&self.requirement);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match guard.authorize(&parts, &requirement).await {
                Ok(principal) => {
                    parts.extensions.insert(principal);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(problem) => Ok(problem.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(perms: &[&str]) -> Principal {
        Principal {
            user_id: UserId::parse("u").unwrap(),
            session_id: SessionId::parse("s").unwrap(),
            permissions: PermissionList::parse(perms.iter().copied()).unwrap(),
        }
    }

    #[test]
    fn requirements_match_exactly_or_by_pattern() {
        let p = principal(&["docs:read", "admin*"]);
        assert!(p.satisfies(&Requirement::parse("docs:read").unwrap()));
        assert!(!p.satisfies(&Requirement::parse("docs:write").unwrap()));
        assert!(p.satisfies(&Requirement::parse("docs:*").unwrap()));
        assert!(!p.satisfies(&Requirement::parse("reports:*").unwrap()));
        // A stored `admin*` is a literal permission: it does not grant `admin:users`.
        assert!(!p.satisfies(&Requirement::parse("admin:users").unwrap()));
        assert!(Requirement::parse("has space").is_err());
        assert!(Requirement::parse("").is_err());
    }
}
