//! [`Api`]: what every handler shares (the manager, the auth service, the guard, metrics and the
//! stores `/readyz` checks), and [`HttpConfig`].

use std::{fmt, future::Future, sync::Arc, time::Duration, time::Instant};

use axum::{extract::FromRef, http::HeaderName};
use psm::{
    DynCache, DynTokenStateStore, PermissionList, PermissionStorageManager, auth::AuthService,
};

use crate::{
    guard::PermissionGuard,
    limiter::Limiter,
    metrics::{Metrics, PoolSource},
};

/// The permission the admin routes require.
pub const ADMIN_PERMISSION: &str = "psm:admin";

/// The permission self-registered users get unless configured otherwise.
pub const DEFAULT_USER_PERMISSION: &str = "psm:user";

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes (default 2 MiB: the largest valid request, 4,096
    /// permissions of 255 bytes plus 64 KiB of metadata, fits with room to spare).
    pub body_limit: usize,
    /// Longest a request may take before it is answered with 503 `request_timeout` (default 30 s).
    pub request_timeout: Duration,
    /// Whether `POST /v1/auth/register` is open to anyone (default true).
    pub registration: bool,
    /// The permissions self-registered users get (default `psm:user`); validated by
    /// [`ApiBuilder::build`].
    pub default_permissions: Vec<String>,
    /// Whether the client address used for login throttling is read from `X-Forwarded-For` (only
    /// behind a proxy that sets it; default false: the peer address).
    pub trust_forwarded_for: bool,
    /// Also accept a session id in this header where a bearer token is expected.
    pub session_header: Option<HeaderName>,
    /// Registrations one client may attempt per [`registration_window`](Self::registration_window)
    /// (default 10); beyond it, 429 with `Retry-After`.
    pub registrations_per_client: u32,
    /// The window of [`registrations_per_client`](Self::registrations_per_client) (default 1 h).
    pub registration_window: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            registration: true,
            default_permissions: vec![DEFAULT_USER_PERMISSION.to_owned()],
            trust_forwarded_for: false,
            session_header: None,
            registrations_per_client: 10,
            registration_window: Duration::from_secs(3600),
        }
    }
}

/// The state every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    manager: PermissionStorageManager,
    auth: AuthService,
    guard: PermissionGuard,
    config: HttpConfig,
    default_permissions: PermissionList,
    registrations: Limiter,
    metrics: Metrics,
    token_state: Option<DynTokenStateStore>,
    cache: Option<DynCache>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("provider", &self.inner.manager.provider_name())
            .field("users", &self.inner.auth.users().provider_name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl FromRef<Api> for PermissionGuard {
    fn from_ref(api: &Api) -> Self {
        api.inner.guard.clone()
    }
}

impl Api {
    /// A builder over `manager` (sessions) and `auth` (accounts and tokens). `auth` should keep its
    /// sessions in the manager's store, so a login's session is what the admin routes see.
    pub fn builder(manager: PermissionStorageManager, auth: AuthService) -> ApiBuilder {
        ApiBuilder {
            manager,
            auth,
            config: HttpConfig::default(),
            pools: Vec::new(),
            token_state: None,
            cache: None,
        }
    }

    /// The session manager.
    pub fn manager(&self) -> &PermissionStorageManager {
        &self.inner.manager
    }

    /// The auth service.
    pub fn auth(&self) -> &AuthService {
        &self.inner.auth
    }

    /// The guard of the protected routes.
    pub fn guard(&self) -> &PermissionGuard {
        &self.inner.guard
    }

    /// The HTTP settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The permissions of self-registered users.
    pub(crate) fn default_permissions(&self) -> &PermissionList {
        &self.inner.default_permissions
    }

    /// The registration throttle.
    pub(crate) fn registrations(&self) -> &Limiter {
        &self.inner.registrations
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn token_state(&self) -> Option<&DynTokenStateStore> {
        self.inner.token_state.as_ref()
    }

    pub(crate) fn cache(&self) -> Option<&DynCache> {
        self.inner.cache.as_ref()
    }

    /// Runs a store operation of the session provider, counted under `operation`.
    pub(crate) async fn sessions_op<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = psm::Result<T>>,
    ) -> psm::Result<T> {
        self.observe(self.inner.manager.provider_name(), operation, f)
            .await
    }

    /// Runs an auth operation (which reaches the user, session and token stores), counted as an
    /// auth operation.
    pub(crate) async fn auth_op<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = psm::Result<T>>,
    ) -> psm::Result<T> {
        let start = Instant::now();
        let out = f.await;
        self.inner
            .metrics
            .auth_op(operation, result_label(&out), start.elapsed());
        out
    }

    /// Runs a read of the user store, counted under its provider.
    pub(crate) async fn users_op<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = psm::Result<T>>,
    ) -> psm::Result<T> {
        let provider = self.inner.auth.users().provider_name().to_owned();
        self.observe(&provider, operation, f).await
    }

    async fn observe<T>(
        &self,
        provider: &str,
        operation: &'static str,
        f: impl Future<Output = psm::Result<T>>,
    ) -> psm::Result<T> {
        let start = Instant::now();
        let out = f.await;
        self.inner
            .metrics
            .store_op(provider, operation, result_label(&out), start.elapsed());
        out
    }
}

/// `ok`, or the error's code.
pub(crate) fn result_label<T>(out: &psm::Result<T>) -> &'static str {
    match out {
        Ok(_) => "ok",
        Err(e) => e.kind().code(),
    }
}

/// Builds an [`Api`].
pub struct ApiBuilder {
    manager: PermissionStorageManager,
    auth: AuthService,
    config: HttpConfig,
    pools: Vec<(String, PoolSource)>,
    token_state: Option<DynTokenStateStore>,
    cache: Option<DynCache>,
}

impl fmt::Debug for ApiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApiBuilder {
    /// The HTTP settings.
    #[must_use]
    pub fn config(mut self, config: HttpConfig) -> Self {
        self.config = config;
        self
    }

    /// A pool whose state `/metrics` reports under `provider`.
    #[must_use]
    pub fn pool_gauge(mut self, provider: &str, source: PoolSource) -> Self {
        self.pools.push((provider.to_owned(), source));
        self
    }

    /// The token state store, checked by `/readyz`.
    #[must_use]
    pub fn token_state(mut self, store: DynTokenStateStore) -> Self {
        self.token_state = Some(store);
        self
    }

    /// The cache, checked by `/readyz`.
    #[must_use]
    pub fn cache(mut self, cache: DynCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The API.
    ///
    /// # Errors
    /// `InvalidPermission` / `Validation` when `default_permissions` is not a valid permission list.
    pub fn build(self) -> psm::Result<Api> {
        let default_permissions = PermissionList::parse(&self.config.default_permissions)
            .map_err(|e| e.with_detail("field", "default_permissions"))?;
        let registrations = Limiter::new(
            self.config.registrations_per_client,
            self.config.registration_window,
        );
        let metrics = Metrics::new(self.pools);
        let tokens_provider = self.token_state.as_ref().map_or_else(
            || "token_state".to_owned(),
            |t| t.provider_name().to_owned(),
        );
        let mut guard = PermissionGuard::with_tokens(self.manager.clone(), self.auth.clone())
            .observed(metrics.clone(), tokens_provider);
        if let Some(name) = &self.config.session_header {
            guard = guard.session_header(name.clone());
        }
        Ok(Api {
            inner: Arc::new(Inner {
                manager: self.manager,
                auth: self.auth,
                guard,
                config: self.config,
                default_permissions,
                registrations,
                metrics,
                token_state: self.token_state,
                cache: self.cache,
            }),
        })
    }
}
