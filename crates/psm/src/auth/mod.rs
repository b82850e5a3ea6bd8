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

mod builder;
mod config;
mod password;
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

    /// Creates an account (the seed's `create_user`).
    ///
    /// Validates the username, the email and the password policy before anything else, then hashes
    /// the password with argon2id off the async threads.
    ///
    /// # Errors
    /// `Validation` for a bad username, email or password; `UserExists` when the email or username is
    /// taken; `RateLimited` when no hashing slot frees within the queue timeout; store errors.
    pub async fn register(&self, request: RegisterRequest) -> Result<User> {
        let RegisterRequest {
            username,
            email,
            password,
            permissions,
        } = request;
        let username = Username::parse(&username)?;
        let email = Email::parse(&email)?;
        password::check_policy(&self.inner.config, &password)?;
        let id = self.new_user_id()?;
        let password_hash = self.inner.hasher.hash(&*self.inner.rng, password).await?;
        let user = self
            .inner
            .users
            .create_user(NewUser {
                id,
                username,
                email,
                password_hash,
                permissions: permissions.into_vec(),
            })
            .await?;
        tracing::info!(user = %redact_id(user.id.as_str()), "user registered");
        Ok(user)
    }

    fn new_user_id(&self) -> Result<UserId> {
        let id = generate_session_id_with(&*self.inner.rng, "user", ID_RANDOM_BYTES)?;
        UserId::parse(id.as_str())
    }

    /// Logs a user in: checks the throttle, verifies the password, creates a session under the
    /// per-user limit and issues its tokens.
    ///
    /// Every address that does not parse is counted under one account key. When the stored hash is
    /// cheaper than the configured cost, a fresh hash of the password is stored (best effort: a
    /// failure is logged, the login goes on). After the tokens are issued the user is read again:
    /// when the account was deleted or its password changed meanwhile, the new session and token
    /// family are ended and the login fails.
    ///
    /// # Errors
    /// - `RateLimited` (with `retry_after` in seconds and `scope` `account`, `client` or `global`)
    ///   when the account or the client key has too many recent failures, or every tracked key is
    ///   near its limit; nothing is verified then. Also (`scope` `hashing`) when no hashing slot
    ///   frees within [`AuthConfig::hash_queue_timeout`]; the attempt still counts as a failure.
    /// - `InvalidCredentials` for an unknown email or a wrong password, alike in message and cost;
    ///   also when the account was deleted or its password changed during the login.
    /// - `SessionLimitReached` at the limit with [`LimitPolicy::Reject`](psm_core::LimitPolicy).
    /// - `Validation` when the user has no permissions to put in a session; store and token errors.
    pub async fn login(&self, request: LoginRequest) -> Result<LoginOutcome> {
        let LoginRequest {
            email,
            password,
            client,
        } = request;
        let parsed = Email::parse(&email);
        let account = match &parsed {
            Ok(e) => e.normalized(),
            Err(_) => INVALID_ACCOUNT.to_owned(),
        };
        let attempt = self
            .inner
            .throttle
            .begin(&account, Some(&client.key), self.now())?;
        // An address that cannot exist and a password no policy allows cannot match anything.
        let (Ok(email), true) = (parsed, password.chars().count() <= MAX_PASSWORD_CHARS) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        let user = self.inner.users.get_user_by_email(&email).await?;
        let (hash, rehash) = match &user {
            Some(u) => (
                u.password_hash.clone(),
                password::needs_rehash(&u.password_hash, self.inner.hasher.params()),
            ),
            None => (self.inner.dummy_hash.clone(), false),
        };
        // Kept only when a fresh hash must be made from it.
        let kept = rehash.then(|| password.clone());
        let verified = self.inner.hasher.verify(hash, password).await?;
        let Some(mut user) = user.filter(|_| verified) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        self.inner.throttle.succeeded(attempt);
        if let Some(password) = kept
            && let Some(upgraded) = self.upgrade_hash(&user, password).await
        {
            user = upgraded;
        }

        let permissions =
            PermissionList::from_permissions(user.permissions.clone()).map_err(|_| {
                Error::validation("the user has no permissions to put in a session")
                    .with_detail("field", "permissions")
            })?;
        let session_id = generate_session_id_with(
            &*self.inner.rng,
            &self.inner.config.session_prefix,
            ID_RANDOM_BYTES,
        )?;
        let now = self.now();
        let absolute = now.plus_secs(
            i64::try_from(self.inner.config.absolute_lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        let session = NewSession::new(user.id.clone(), permissions)
            .with_ttl(Some(ttl_of(self.inner.config.idle_timeout)?))
            .with_metadata(login_metadata(&client, absolute)?);
        let evicted = self
            .inner
            .sessions
            .create_session(&session_id, session, self.inner.limit)
            .await?;
        let tokens = match self.inner.tokens.issue(&user.id, &session_id).await {
            Ok(t) => t,
            Err(e) => {
                // A session nobody holds tokens for is dead weight; the token error wins.
                let _ = self.inner.sessions.invalidate_session(&session_id).await;
                return Err(e);
            }
        };
        // A deletion, revocation or password change that ran between the lookup and now could not
        // see this session: read the account again, and end what was just made if it changed.
        let current = self.inner.users.get_user(&user.id).await;
        // Also a permission removed meanwhile: the session was built from the older list.
        let unchanged = matches!(
            &current,
            Ok(Some(u)) if u.password_hash == user.password_hash
                && user.permissions.iter().all(|p| u.permissions.contains(p))
        );
        if !unchanged {
            let _ = self.inner.sessions.invalidate_session(&session_id).await;
            if let Err(e) = self.inner.tokens.revoke(&tokens.refresh_token).await {
                tracing::warn!(kind = %e.kind(), "revoking a token family failed");
            }
            current?;
            tracing::info!(
                user = %redact_id(user.id.as_str()),
                "login failed: the account changed during the login"
            );
            return Err(invalid_credentials());
        }
        tracing::info!(
            user = %redact_id(user.id.as_str()),
            session = %session_id.redacted(),
            evicted = evicted.len(),
            "login succeeded"
        );
        Ok(LoginOutcome {
            user,
            session_id,
            tokens,
            evicted,
        })
    }

    /// Stores a fresh hash of `password` at the configured cost for `user`, whose stored hash is
    /// cheaper, and returns the updated user; `None` (logged) when it could not.
    ///
    /// The user store has no compare-and-set, so the hash is written only if the stored one is still
    /// the one just verified when read again right before the write; a password change landing
    /// between that read and the write could still be undone (a window of one store round trip,
    /// reported by [`change_password`](Self::change_password) as `Concurrency`).
    async fn upgrade_hash(&self, user: &User, password: String) -> Option<User> {
        let fresh = match self.inner.hasher.hash(&*self.inner.rng, password).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(kind = %e.kind(), "upgrading a password hash failed");
                return None;
            }
        };
        let write = async {
            match self.inner.users.get_user(&user.id).await? {
                Some(u) if u.password_hash == user.password_hash => {}
                _ => return Ok(None),
            }
            let update = UserUpdate {
                password_hash: Some(fresh),
                ..UserUpdate::default()
            };
            let updated = self.inner.users.update_user(&user.id, update).await?;
            self.forget_user(&user.id).await?;
            Ok::<_, Error>(updated)
        };
        match write.await {
            Ok(Some(updated)) => {
                tracing::info!(user = %redact_id(user.id.as_str()), "password hash upgraded");
                Some(updated)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(kind = %e.kind(), "upgrading a password hash failed");
                None
            }
        }
    }

    /// Rotates a refresh token into a new pair and renews the session's idle timeout (never past its
    /// absolute end).
    ///
    /// Simultaneous refreshes with one token count as reuse (the conservative reading of the OAuth
    /// 2.0 Security BCP): at most one of them gets a pair, the others fail with
    /// `TokenReuseDetected` or `TokenRevoked`, the family is revoked and the session ends, so the
    /// pair the winner got is useless too. Clients must serialize their refreshes.
    ///
    /// # Errors
    /// - `TokenInvalid` / `TokenExpired` for a token that does not verify.
    /// - `TokenReuseDetected` for a refresh token used before: its family is revoked and its session
    ///   ended.
    /// - `TokenExpired` when the session reached its absolute lifetime (the session is ended).
    /// - `TokenRevoked` when the session no longer exists or the family was revoked.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let claims = self.inner.tokens.decode_refresh(refresh_token)?;
        let (sid, user) = token_subject(&claims.sid, &claims.sub)?;
        let pair = match self.inner.tokens.refresh(refresh_token).await {
            Ok(pair) => pair,
            Err(e) if e.kind() == ErrorKind::TokenReuseDetected => {
                // The reuse error is what the caller must see, even if ending the session fails.
                let ended = self.inner.sessions.invalidate_session(&sid).await;
                let ended = ended.unwrap_or_else(|e| {
                    tracing::warn!(kind = %e.kind(), "ending a session after token reuse failed");
                    false
                });
                tracing::warn!(
                    user = %redact_id(user.as_str()),
                    session = %sid.redacted(),
                    session_ended = ended,
                    "refresh token reuse detected; family revoked and session ended"
                );
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let Some(data) = self.inner.sessions.get_permissions(&sid).await? else {
            return Err(self.end_family(&pair, token_revoked()).await);
        };
        if data.user_id != user {
            return Err(self.end_family(&pair, token_revoked()).await);
        }
        let now = self.now();
        let left = self.absolute_end(&data).micros_since(now) / 1_000_000;
        let idle = i64::try_from(self.inner.config.idle_timeout.as_secs()).unwrap_or(i64::MAX);
        // Renew by the idle timeout, but never past the absolute end (rounded down).
        let secs = left.min(idle);
        if secs < 1 {
            self.inner.sessions.invalidate_session(&sid).await?;
            tracing::info!(session = %sid.redacted(), "session reached its absolute lifetime");
            let e = Error::new(
                ErrorKind::TokenExpired,
                "the session reached its absolute lifetime",
            );
            return Err(self.end_family(&pair, e).await);
        }
        let ttl = Ttl::from_secs_i64(secs)?;
        if !self.inner.sessions.extend_session_ttl(&sid, ttl).await? {
            return Err(self.end_family(&pair, token_revoked()).await);
        }
        tracing::debug!(session = %sid.redacted(), "tokens refreshed");
        Ok(pair)
    }

    /// Revokes the family of a pair just issued by a refresh that cannot stand, and returns `e`.
    async fn end_family(&self, pair: &TokenPair, e: Error) -> Error {
        if let Err(revoke) = self.inner.tokens.revoke(&pair.refresh_token).await {
            tracing::warn!(kind = %revoke.kind(), "revoking a token family failed");
        }
        e
    }

    /// The absolute end of a login session: from its metadata, or `created_at` plus the configured
    /// lifetime for a session that lacks it.
    fn absolute_end(&self, data: &SessionData) -> Timestamp {
        data.metadata
            .as_map()
            .get(ABSOLUTE_EXPIRES_AT)
            .and_then(Value::as_str)
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .unwrap_or_else(|| {
                Timestamp::from_unix_micros(
                    data.created_at
                        .as_unix_micros()
                        .saturating_add(micros_of(self.inner.config.absolute_lifetime)),
                )
            })
    }

    /// Logs out: revokes the refresh token's family and ends its session.
    ///
    /// An expired (but validly signed) refresh token still logs out: its family is revoked and its
    /// session ended, which matters when families are configured to live shorter than sessions.
    ///
    /// # Errors
    /// `TokenInvalid` for a token that is not a validly signed refresh token; store errors.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        let (sid, _) = match self.inner.tokens.decode_refresh(refresh_token) {
            Ok(claims) => token_subject(&claims.sid, &claims.sub)?,
            Err(e) if e.kind() == ErrorKind::TokenExpired => {
                // `revoke` (below) checks the signature and every claim but the expiry before it
                // touches anything; it runs first so the payload is read only from a token this
                // service signed.
                self.inner.tokens.revoke(refresh_token).await?;
                let subject = signed_subject(refresh_token)?;
                self.inner.sessions.invalidate_session(&subject.0).await?;
                tracing::info!(session = %subject.0.redacted(), "logged out with an expired token");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.inner.tokens.revoke(refresh_token).await?;
        self.inner.sessions.invalidate_session(&sid).await?;
        tracing::info!(session = %sid.redacted(), "logged out");
        Ok(())
    }

    /// Revokes every token of `user` (older access tokens stop verifying strictly, every refresh
    /// family is revoked) and ends every session of the user. Returns how many families were revoked.
    ///
    /// # Errors
    /// Store errors.
    pub async fn revoke_user_tokens(&self, user: &UserId) -> Result<u64> {
        let families = self.inner.tokens.revoke_user_tokens(user).await?;
        let sessions = self.inner.sessions.invalidate_user_sessions(user).await?;
        tracing::info!(
            user = %redact_id(user.as_str()),
            families,
            sessions,
            "user tokens revoked"
        );
        Ok(families)
    }

    /// The user's live sessions, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn check_active_sessions(&self, user: &UserId) -> Result<Vec<SessionInfo>> {
        let mut page = Page::first(LIST_PAGE)?;
        let mut out = Vec::new();
        loop {
            let ids = self.inner.sessions.list_sessions(Some(user), page).await?;
            for id in &ids {
                // A session can end between listing and reading it.
                if let Some(info) = self.inner.sessions.get_session_info(id).await? {
                    out.push(info);
                }
            }
            if ids.len() < page.limit() {
                return Ok(out);
            }
            page = page.next();
        }
    }

    /// The user with `email` (case-insensitively), served from the cache for up to
    /// [`AuthConfig::user_cache_ttl`]. A failing cache is bypassed, never fatal.
    ///
    /// The cached record holds the whole user, password hash included, so the cache must be as
    /// trusted as the user store. Logins never read it: they verify against the store.
    ///
    /// # Errors
    /// `Validation` for a malformed address; user store errors.
    pub async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = Email::parse(email)?;
        let key = user_cache::email_key(&email);
        if let Some(key) = &key {
            match self.inner.cache.get(key).await {
                Ok(Some(bytes)) => {
                    if let Some(user) = user_cache::decode(&bytes)
                        .filter(|u| u.email.normalized() == email.normalized())
                    {
                        return Ok(Some(user));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(kind = %e.kind(), "user cache read failed"),
            }
        }
        let user = self.inner.users.get_user_by_email(&email).await?;
        if let (Some(key), Some(user)) = (&key, &user) {
            let stored = async {
                let tag = user_cache::user_tag(&user.id)?;
                let ttl = ttl_of(self.inner.config.user_cache_ttl)?;
                self.inner
                    .cache
                    .set(key, &user_cache::encode(user), ttl, &[tag])
                    .await
            };
            if let Err(e) = stored.await {
                tracing::warn!(kind = %e.kind(), "user cache write failed");
            }
        }
        Ok(user)
    }

    /// Applies a partial update to a user and drops the user's cached entries (before and again
    /// after the store write; see [the struct docs](Self#user-cache) for the remaining bound).
    ///
    /// When the update takes away any permission the user had, every token and session of the
    /// user ends ([`revoke_user_tokens`](Self::revoke_user_tokens)), since sessions hold the
    /// permissions they were opened with. The comparison is with the user as read just before the
    /// write, so of two concurrent updates the second may not see what the first added.
    ///
    /// # Errors
    /// `Validation` (field `password_hash`) for an update that sets a password hash: use
    /// [`change_password`](Self::change_password); `UserExists` when the new email or username is
    /// taken; store errors.
    pub async fn update_user(&self, user: &UserId, update: UserUpdate) -> Result<Option<User>> {
        if update.password_hash.is_some() {
            return Err(Error::validation(
                "passwords are changed with change_password, which ends the user's sessions",
            )
            .with_detail("field", "password_hash"));
        }
        let before = match update.permissions {
            Some(_) => self.inner.users.get_user(user).await?,
            None => None,
        };
        self.forget_user(user).await?;
        let updated = self.inner.users.update_user(user, update).await?;
        if let (Some(before), Some(after)) = (&before, &updated)
            && before
                .permissions
                .iter()
                .any(|p| !after.permissions.contains(p))
        {
            self.revoke_user_tokens(user).await?;
        }
        self.forget_user(user).await?;
        Ok(updated)
    }

    /// Changes a user's password: checks the new one against the policy, verifies the old one
    /// (counted by the login throttle for the account like a failed login), stores the new hash,
    /// then ends every token and session of the user
    /// ([`revoke_user_tokens`](Self::revoke_user_tokens)), this caller's included.
    ///
    /// # Errors
    /// - `Validation` when the new password is outside the policy.
    /// - `UserNotFound` for an unknown user.
    /// - `InvalidCredentials` when the old password is wrong; `RateLimited` when the account has
    ///   too many recent failures or no hashing slot frees in time.
    /// - `Concurrency` when another write replaced the new hash before the call ended (the
    ///   sessions are ended anyway; read the account and retry).
    /// - Store errors.
    pub async fn change_password(
        &self,
        user: &UserId,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        password::check_policy(&self.inner.config, new_password)?;
        let current = self.inner.users.get_user(user).await?.ok_or_else(|| {
            Error::new(ErrorKind::UserNotFound, "user not found")
                .with_detail("user", redact_id(user.as_str()))
        })?;
        let attempt = self
            .inner
            .throttle
            .begin(&current.email.normalized(), None, self.now())?;
        let verified = old_password.chars().count() <= MAX_PASSWORD_CHARS
            && self
                .inner
                .hasher
                .verify(current.password_hash.clone(), old_password.to_owned())
                .await?;
        if !verified {
            tracing::info!(user = %redact_id(user.as_str()), "password change refused");
            return Err(invalid_credentials());
        }
        self.inner.throttle.succeeded(attempt);
        let fresh = self
            .inner
            .hasher
            .hash(&*self.inner.rng, new_password.to_owned())
            .await?;
        self.forget_user(user).await?;
        let update = UserUpdate {
            password_hash: Some(fresh.clone()),
            ..UserUpdate::default()
        };
        let updated = self.inner.users.update_user(user, update).await?;
        // Sessions end before anything else can fail.
        self.revoke_user_tokens(user).await?;
        self.forget_user(user).await?;
        if updated.is_none() {
            return Err(Error::new(ErrorKind::UserNotFound, "user not found")
                .with_detail("user", redact_id(user.as_str())));
        }
        match self.inner.users.get_user(user).await? {
            Some(u) if u.password_hash == fresh => {
                tracing::info!(user = %redact_id(user.as_str()), "password changed");
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::Concurrency,
                "the account changed during the password change",
            )
            .with_detail("user", redact_id(user.as_str()))),
        }
    }

    async fn forget_user(&self, user: &UserId) -> Result<()> {
        self.inner
            .cache
            .delete_tag(&user_cache::user_tag(user)?)
            .await
            .map(|_| ())
    }

    /// Deletes a user and everything of theirs: the account first (so no new login can start), then
    /// every token family and the epoch (old access tokens stop verifying), every session, and the
    /// cached entries (dropped before and again after the store write). Returns whether the account
    /// existed; the cascade runs either way. A login that looked the user up before the deletion
    /// notices it after issuing its tokens and ends its session.
    ///
    /// # Errors
    /// Store errors; the call can be repeated.
    pub async fn delete_user(&self, user: &UserId) -> Result<bool> {
        self.forget_user(user).await?;
        let existed = self.inner.users.delete_user(user).await?;
        self.inner.tokens.revoke_user_tokens(user).await?;
        let sessions = self.inner.sessions.invalidate_user_sessions(user).await?;
        self.forget_user(user).await?;
        tracing::info!(user = %redact_id(user.as_str()), existed, sessions, "user deleted");
        Ok(existed)
    }

    /// Sets a session's permissions. When any permission is added, the session moves to a new id
    /// (same user, metadata and remaining lifetime; the old id ends), so an id learned before the
    /// raise is worthless after it (session fixation defence); tokens bound to the old id stop
    /// working too, so issue new ones with [`issue_tokens`](Self::issue_tokens). When nothing is
    /// added, the id and the expiry stay. Returns the session's id after the call.
    ///
    /// # Errors
    /// `SessionNotFound` for a missing or expired session; store errors.
    pub async fn raise_permissions(
        &self,
        session: &SessionIdRef,
        permissions: PermissionList,
    ) -> Result<SessionId> {
        let not_found = || {
            Error::new(ErrorKind::SessionNotFound, "session not found")
                .with_detail("session", session.redacted())
        };
        let info = self
            .inner
            .sessions
            .get_session_info(session)
            .await?
            .ok_or_else(not_found)?;
        let adds = permissions
            .iter()
            .any(|p| !info.data.permissions.contains(p));
        if !adds {
            if !self
                .inner
                .sessions
                .update_permissions(session, permissions, None)
                .await?
            {
                return Err(not_found());
            }
            return Ok(session.to_owned());
        }
        let ttl = match info.expires_at {
            Some(at) => {
                let secs = at.secs_until_ceil(self.now());
                if secs == 0 {
                    return Err(not_found());
                }
                Some(Ttl::from_secs(secs)?)
            }
            None => None,
        };
        let new_id = generate_session_id_with(
            &*self.inner.rng,
            &self.inner.config.session_prefix,
            ID_RANDOM_BYTES,
        )?;
        let moved = NewSession::new(info.data.user_id.clone(), permissions)
            .with_ttl(ttl)
            .with_metadata(info.data.metadata.clone());
        // No limit here: the old session ends right after, and evicting another would be wrong.
        self.inner
            .sessions
            .create_session(&new_id, moved, SessionLimit::unlimited())
            .await?;
        if !self.inner.sessions.invalidate_session(session).await? {
            // The old session ended meanwhile (logout, revocation): so does its successor.
            self.inner.sessions.invalidate_session(&new_id).await?;
            return Err(not_found());
        }
        tracing::info!(
            user = %redact_id(info.data.user_id.as_str()),
            old = %session.redacted(),
            new = %new_id.redacted(),
            "session permissions raised; session id rotated"
        );
        Ok(new_id)
    }

    /// Issues a fresh token pair for a live session (after [`raise_permissions`](Self::raise_permissions)
    /// moved it, for example). Earlier families stay as they are.
    ///
    /// # Errors
    /// `SessionNotFound` for a missing or expired session; token and store errors.
    pub async fn issue_tokens(&self, session: &SessionIdRef) -> Result<TokenPair> {
        let data = self
            .inner
            .sessions
            .get_permissions(session)
            .await?
            .ok_or_else(|| {
                Error::new(ErrorKind::SessionNotFound, "session not found")
                    .with_detail("session", session.redacted())
            })?;
        self.inner
            .tokens
            .issue(&data.user_id, &session.to_owned())
            .await
    }

    /// Verifies an access token strictly (signature, claims, the user's token epoch) and checks its
    /// session still exists.
    ///
    /// # Errors
    /// `TokenInvalid` / `TokenExpired` for a token that does not verify; `TokenRevoked` after
    /// [`revoke_user_tokens`](Self::revoke_user_tokens) or when the session ended.
    pub async fn verify(&self, access_token: &str) -> Result<AccessClaims> {
        let claims = self.inner.tokens.verify_access_strict(access_token).await?;
        let (sid, user) = token_subject(&claims.sid, &claims.sub)?;
        match self.inner.sessions.get_permissions(&sid).await? {
            Some(data) if data.user_id == user => Ok(claims),
            _ => Err(token_revoked()),
        }
    }
}

/// The session and user of a refresh token whose signature and claims (all but the expiry) were
/// verified already, read from its payload.
fn signed_subject(token: &str) -> Result<(SessionId, UserId)> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .ok_or_else(malformed_claims)?;
    let claims: psm_jwt::RefreshClaims =
        serde_json::from_slice(&payload).map_err(|_| malformed_claims())?;
    token_subject(&claims.sid, &claims.sub)
}

/// Decodes unpadded URL-safe base64 (RFC 4648 §5), as in a JWT; `None` for any other character.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The metadata of a login session: client ip and user agent (bounded), the absolute end, the origin.
fn login_metadata(client: &ClientInfo, absolute: Timestamp) -> Result<Metadata> {
    let bounded = |s: &Option<String>, max: usize| {
        s.as_ref().map_or(Value::Null, |s| {
            Value::String(s.chars().filter(|c| !c.is_control()).take(max).collect())
        })
    };
    let mut map = Map::new();
    map.insert("ip".to_owned(), bounded(&client.ip, MAX_IP_CHARS));
    map.insert(
        "user_agent".to_owned(),
        bounded(&client.user_agent, MAX_USER_AGENT_CHARS),
    );
    map.insert(
        ABSOLUTE_EXPIRES_AT.to_owned(),
        Value::String(absolute.to_rfc3339()),
    );
    map.insert("created_via".to_owned(), Value::String("auth".to_owned()));
    Metadata::from_map(map)
}
