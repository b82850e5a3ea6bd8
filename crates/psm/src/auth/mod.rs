//! [`AuthService`]: accounts, logins, sessions and tokens (the seed's `ConnectionAPI`).
//!
//! The service drives the ports only ([`UserStore`](psm_core::UserStore),
//! [`PermissionStore`](psm_core::PermissionStore), [`TokenStateStore`](psm_core::TokenStateStore),
//! [`Cache`](psm_core::Cache), the clock and the random source), so the same code runs embedded
//! (memory or file stores) and scaled out (Redis and PostgreSQL), chosen by configuration alone.
//!
//! What it holds to:
//! - Passwords: 8 to 128 characters by default, hashed with argon2id at OWASP's minimum cost or
//!   more, always on Tokio's blocking pool. A login verifies in constant time, and an unknown email is
//!   verified against a dummy hash so it costs what a wrong password costs; both fail with the same
//!   `InvalidCredentials` error.
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

use throttle::Throttle;

/// Random bytes in generated session and user ids (128 bits).
const ID_RANDOM_BYTES: usize = 16;

/// Longest client ip and user agent kept in session metadata, in characters.
const MAX_IP_CHARS: usize = 64;
const MAX_USER_AGENT_CHARS: usize = 512;

/// Longest account or client key the throttle keeps (longer ones are cut).
const MAX_ACCOUNT_KEY_CHARS: usize = 256;

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
    /// The hash an unknown email is verified against, made once with the configured cost.
    dummy_hash: tokio::sync::OnceCell<PasswordHash>,
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
    /// expired sessions of users who never return are reclaimed) and makes the dummy hash unknown
    /// emails are verified against, so even the first such login costs no more than a wrong
    /// password. Calling it twice is harmless.
    ///
    /// # Errors
    /// Whatever the session store's `initialize` returns; `Provider` when hashing fails.
    pub async fn initialize(&self) -> Result<()> {
        self.inner.sessions.initialize().await?;
        self.dummy_hash().await.map(|_| ())
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
    /// taken; store errors.
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
        let password_hash =
            password::hash(self.inner.config.argon2, &*self.inner.rng, password).await?;
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
    /// # Errors
    /// - `RateLimited` (with `retry_after` in seconds and `scope` `account` or `client`) when the
    ///   account or the client key has too many recent failures; nothing is verified then.
    /// - `InvalidCredentials` for an unknown email or a wrong password, alike in message and cost.
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
            Err(_) => email
                .to_lowercase()
                .chars()
                .take(MAX_ACCOUNT_KEY_CHARS)
                .collect(),
        };
        let client_key: String = client.key.chars().take(MAX_ACCOUNT_KEY_CHARS).collect();
        let attempt = self
            .inner
            .throttle
            .begin(&account, &client_key, self.now())?;
        // An address that cannot exist and a password no policy allows cannot match anything.
        let (Ok(email), true) = (parsed, password.chars().count() <= MAX_PASSWORD_CHARS) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        let user = self.inner.users.get_user_by_email(&email).await?;
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let verified = password::verify(hash, password).await?;
        let Some(user) = user.filter(|_| verified) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        self.inner.throttle.succeeded(attempt);

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

    async fn dummy_hash(&self) -> Result<PasswordHash> {
        self.inner
            .dummy_hash
            .get_or_try_init(|| async {
                let mut secret = [0u8; 32];
                self.inner.rng.fill(&mut secret)?;
                let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                password::hash(self.inner.config.argon2, &*self.inner.rng, secret).await
            })
            .await
            .cloned()
    }

    /// Rotates a refresh token into a new pair and renews the session's idle timeout (never past its
    /// absolute end).
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
    /// An expired refresh token still logs out: its family is revoked, and its session has ended
    /// already (a family lives exactly as long as its session's absolute lifetime).
    ///
    /// # Errors
    /// `TokenInvalid` for a token that is not a validly signed refresh token; store errors.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        let claims = match self.inner.tokens.decode_refresh(refresh_token) {
            Ok(claims) => claims,
            Err(e) if e.kind() == ErrorKind::TokenExpired => {
                self.inner.tokens.revoke(refresh_token).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let (sid, _) = token_subject(&claims.sid, &claims.sub)?;
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

    /// Applies a partial update to a user and drops the user's cached entries.
    ///
    /// # Errors
    /// `UserExists` when the new email or username is taken; store errors.
    pub async fn update_user(&self, user: &UserId, update: UserUpdate) -> Result<Option<User>> {
        let updated = self.inner.users.update_user(user, update).await?;
        self.forget_user(user).await?;
        Ok(updated)
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
    /// cached entries. Returns whether the account existed; the cascade runs either way.
    ///
    /// # Errors
    /// Store errors; the call can be repeated.
    pub async fn delete_user(&self, user: &UserId) -> Result<bool> {
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
