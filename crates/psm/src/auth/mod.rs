//! [`AuthService`]: accounts, logins, sessions and tokens (the seed's `ConnectionAPI`).
//!
//! The service drives the ports only ([`UserStore`](psm_core::UserStore),
//! [`PermissionStore`](psm_core::PermissionStore), [`TokenStateStore`](psm_core::TokenStateStore),
//! [`Cache`](psm_core::Cache), the clock and the random source), so the same code runs embedded
//! (memory or file stores) and scaled out (Redis and PostgreSQL), chosen by configuration alone.
//!
//! What it holds to:
//! - Passwords: 8 to 128 characters by default, hashed with argon2id at OWASP's minimum cost or
//!   more, always on the service's own hashing threads (one per core, each keeping its argon2
//!   working memory), with at most [`AuthConfig::max_concurrent_hashes`] hashes admitted at once
//!   (beyond that a caller waits up to [`AuthConfig::hash_queue_timeout`], then gets `RateLimited`).
//!   A login verifies in constant time, and an unknown email is verified against a dummy hash (made
//!   when the service is built) so it costs what a wrong password costs; both fail with the same
//!   `InvalidCredentials` error. A login whose stored hash is cheaper than the configured cost
//!   stores a fresh hash. Changing a password ([`AuthService::change_password`]) ends every session
//!   of the user.
//! - Throttling: failed logins are counted per account and per client key before any verification;
//!   over the limit a login fails with `RateLimited` and a `retry_after` detail in seconds.
//! - Sessions: a fresh random id per login, the user's permissions, client metadata, a per-user limit
//!   with a configurable policy, an idle timeout that every refresh renews, and an absolute lifetime
//!   nothing renews. Raising a session's permissions gives it a new id (session fixation defence).
//! - Tokens: access and refresh pairs from [`psm_jwt::TokenService`]; every refresh rotates; a reused
//!   refresh token revokes its family and ends its session.
//! - Secrets never reach logs or errors: events name users and sessions by redacted ids only.

mod accounts;
mod builder;
mod config;
mod password;
mod sessions;
mod throttle;
mod user_cache;

#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use psm_core::{
    DynCache, DynClock, DynPermissionStore, DynUserStore, Error, ErrorKind, Metadata, NewSession,
    NewUser, Page, PermissionList, RandomSource, Result, SessionData, SessionId, SessionIdRef,
    SessionInfo, SessionLimit, Timestamp, Ttl, UserId, redact_id, util::generate_session_id_with,
};
use psm_jwt::{AccessClaims, TokenPair, TokenService};
use serde_json::{Map, Value};

pub use builder::AuthServiceBuilder;
pub use config::{
    Argon2Params, AuthConfig, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, ThrottleConfig,
};

/// The account types the service takes and returns.
pub use psm_core::{Email, PasswordHash, User, UserUpdate, Username};

use throttle::{INVALID_ACCOUNT, Throttle};

/// Random bytes in generated session and user ids (128 bits).
const ID_RANDOM_BYTES: usize = 16;

/// Longest client ip and user agent kept in session metadata, in characters.
const MAX_IP_CHARS: usize = 64;
const MAX_USER_AGENT_CHARS: usize = 512;

/// Page size for listing a user's sessions.
const LIST_PAGE: u64 = 1000;

/// Metadata key of a login session's absolute end.
const ABSOLUTE_EXPIRES_AT: &str = "absolute_expires_at";

/// Accounts, logins, sessions and tokens over the ports (the seed's `ConnectionAPI`).
///
/// Build it with [`AuthService::builder`], or [`AuthService::memory`] / [`AuthService::file`] for the
/// embedded default. See the [module docs](self) for what it guarantees.
///
/// # Clone
/// Cloning is cheap and shares everything, the login throttle included.
///
/// # User cache
/// Users looked up by email are cached whole, password hash included, so the cache must be as
/// trusted as the user store. Logins never read it. Updates and deletions through the service drop
/// the user's entry before and again after the store write; a lookup that read the store before the
/// write and fills the cache after the second drop can still serve the old record, for at most
/// [`AuthConfig::user_cache_ttl`].
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    users: DynUserStore,
    sessions: DynPermissionStore,
    cache: DynCache,
    tokens: TokenService,
    limit: SessionLimit,
    throttle: Throttle,
    /// Runs argon2, bounded in concurrency.
    hasher: password::Hasher,
    /// The hash an unknown email is verified against, made with the configured cost at build.
    dummy_hash: PasswordHash,
    config: AuthConfig,
    clock: DynClock,
    rng: Arc<dyn RandomSource>,
}

impl fmt::Debug for AuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("users", &self.inner.users.provider_name())
            .field("sessions", &self.inner.sessions.provider_name())
            .field("cache", &self.inner.cache.provider_name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A new account.
#[derive(Clone)]
pub struct RegisterRequest {
    /// Username: 3 to 64 ASCII letters, digits, `.`, `-`, `_`; unique case-insensitively.
    pub username: String,
    /// Email address; unique case-insensitively.
    pub email: String,
    /// The password in clear; only its argon2id hash is stored.
    pub password: String,
    /// Permissions every session of the user gets.
    pub permissions: PermissionList,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// A login attempt.
#[derive(Clone)]
pub struct LoginRequest {
    /// The account's email address (any case).
    pub email: String,
    /// The password in clear.
    pub password: String,
    /// Who is logging in.
    pub client: ClientInfo,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("client", &self.client)
            .finish()
    }
}

/// The client of a login: recorded in the session's metadata and used for throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's ip address, if known (stored in the session's metadata).
    pub ip: Option<String>,
    /// The client's user agent, if known (stored in the session's metadata).
    pub user_agent: Option<String>,
    /// The key failed logins are counted under besides the account, for example the ip.
    pub key: String,
}

/// A successful login.
#[derive(Clone)]
pub struct LoginOutcome {
    /// The user who logged in.
    pub user: User,
    /// The new session's id.
    pub session_id: SessionId,
    /// The session's access and refresh tokens.
    pub tokens: TokenPair,
    /// Sessions of the user removed to respect the per-user limit, oldest first.
    pub evicted: Vec<SessionId>,
}

impl fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are bearer secrets: never in debug output.
        f.debug_struct("LoginOutcome")
            .field("user", &self.user.id)
            .field("session_id", &self.session_id.redacted())
            .field("evicted", &self.evicted.len())
            .finish_non_exhaustive()
    }
}

fn invalid_credentials() -> Error {
    Error::new(ErrorKind::InvalidCredentials, "invalid email or password")
}

fn malformed_claims() -> Error {
    Error::new(ErrorKind::TokenInvalid, "token claims are malformed")
}

/// The session and user a verified token names.
fn token_subject(sid: &str, sub: &str) -> Result<(SessionId, UserId)> {
    let sid = SessionId::parse(sid).map_err(|_| malformed_claims())?;
    let sub = UserId::parse(sub).map_err(|_| malformed_claims())?;
    Ok((sid, sub))
}

fn token_revoked() -> Error {
    Error::new(ErrorKind::TokenRevoked, "the token's session has ended")
}

/// Whole seconds of `d`, as a ttl (configuration is validated, so this only fails on a bug).
fn ttl_of(d: Duration) -> Result<Ttl> {
    Ttl::from_secs(d.as_secs())
}

fn micros_of(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl AuthService {
    /// A builder to choose the ports and configuration.
    pub fn builder() -> AuthServiceBuilder {
        AuthServiceBuilder::new()
    }

    /// The embedded default in memory: the four `psm::memory` stores, the system clock, `config`.
    ///
    /// # Errors
    /// See [`AuthServiceBuilder::build`].
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub fn memory(keys: psm_jwt::KeySet, config: AuthConfig) -> Result<Self> {
        Self::builder().memory().keys(keys).config(config).build()
    }

    /// The embedded default on disk: the four stores of one `psm::file::FileStorage`, the system
    /// clock, `config`.
    ///
    /// # Errors
    /// See [`AuthServiceBuilder::build`].
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub fn file(
        storage: &crate::file::FileStorage,
        keys: psm_jwt::KeySet,
        config: AuthConfig,
    ) -> Result<Self> {
        Self::builder()
            .file(storage)
            .keys(keys)
            .config(config)
            .build()
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// The token service (for stateless verification on hot paths, for example).
    pub fn token_service(&self) -> &TokenService {
        &self.inner.tokens
    }

    /// The user store.
    pub fn users(&self) -> &DynUserStore {
        &self.inner.users
    }

    /// The session store.
    pub fn sessions(&self) -> &DynPermissionStore {
        &self.inner.sessions
    }

    /// Initializes the session store (for the memory store: starts its background sweeper, so
    /// expired sessions of users who never return are reclaimed). Calling it twice is harmless.
    ///
    /// Logins work without it: the dummy hash unknown emails are verified against is made when the
    /// service is built.
    ///
    /// # Errors
    /// Whatever the session store's `initialize` returns.
    pub async fn initialize(&self) -> Result<()> {
        self.inner.sessions.initialize().await
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}
