//! [`AuthServiceBuilder`]: the ports, keys and configuration of an [`AuthService`].

use std::{fmt, sync::Arc};

use psm_core::{
    DynCache, DynClock, DynPermissionStore, DynTokenStateStore, DynUserStore, Error, OsRandom,
    RandomSource, Result, SessionLimit, SystemClock,
};
use psm_jwt::{KeySet, TokenConfig, TokenService};

use crate::auth::{AuthConfig, AuthService, Inner, password, throttle::Throttle};

/// Issuer and audience of the default [`TokenConfig`].
const DEFAULT_ISSUER: &str = "psm";

/// Builds an [`AuthService`] from its ports, chosen by configuration.
///
/// Required: a [`KeySet`] and the four stores, given one by one or as the embedded default with
/// [`memory`](Self::memory) (and [`file`](Self::file) with the `file` feature); stores given one by one
/// win over the embedded default. Optional: the [`TokenConfig`] (default: issuer and audience
/// `"psm"`, the refresh-token family living as long as [`AuthConfig::absolute_lifetime`]), the
/// [`AuthConfig`], the clock (system) and the random source (the OS CSPRNG).
///
/// ```
/// use psm::auth::{AuthConfig, AuthService};
/// use psm::jwt::{Algorithm, KeySet, SigningKey};
///
/// # fn main() -> psm::Result<()> {
/// let key = SigningKey::hmac("k1", Algorithm::HS256, &[7u8; 32])?;
/// let auth = AuthService::builder()
///     .memory()
///     .keys(KeySet::new(key)?)
///     .config(AuthConfig::default())
///     .build()?;
/// assert_eq!(auth.config().max_sessions_per_user, 5);
/// # Ok(())
/// # }
/// ```
pub struct AuthServiceBuilder {
    users: Option<DynUserStore>,
    sessions: Option<DynPermissionStore>,
    token_state: Option<DynTokenStateStore>,
    cache: Option<DynCache>,
    embedded: Embedded,
    keys: Option<KeySet>,
    token_config: Option<TokenConfig>,
    config: AuthConfig,
    clock: Option<DynClock>,
    rng: Option<Arc<dyn RandomSource>>,
}

/// The embedded default that fills the stores not given one by one.
enum Embedded {
    None,
    #[cfg(feature = "memory")]
    Memory,
    #[cfg(feature = "file")]
    File(crate::file::FileStorage),
}

impl fmt::Debug for AuthServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of debug output.
        f.debug_struct("AuthServiceBuilder")
            .field("users", &self.users)
            .field("sessions", &self.sessions)
            .field("token_state", &self.token_state)
            .field("cache", &self.cache)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for AuthServiceBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthServiceBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            users: None,
            sessions: None,
            token_state: None,
            cache: None,
            embedded: Embedded::None,
            keys: None,
            token_config: None,
            config: AuthConfig::default(),
            clock: None,
            rng: None,
        }
    }

    /// The user accounts.
    #[must_use]
    pub fn users(mut self, users: DynUserStore) -> Self {
        self.users = Some(users);
        self
    }

    /// The login sessions.
    #[must_use]
    pub fn sessions(mut self, sessions: DynPermissionStore) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The refresh-token families and user epochs.
    #[must_use]
    pub fn token_state(mut self, token_state: DynTokenStateStore) -> Self {
        self.token_state = Some(token_state);
        self
    }

    /// The cache for users looked up by email.
    #[must_use]
    pub fn cache(mut self, cache: DynCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Fills every store not given one by one with a fresh in-process store (`psm::memory`), reading
    /// time from the builder's clock.
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    #[must_use]
    pub fn memory(mut self) -> Self {
        self.embedded = Embedded::Memory;
        self
    }

    /// Fills every store not given one by one with the stores of one durable storage directory
    /// (`psm::file`), which reads time from the clock it was opened with.
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    #[must_use]
    pub fn file(mut self, storage: &crate::file::FileStorage) -> Self {
        self.embedded = Embedded::File(storage.clone());
        self
    }

    /// The signing and verification keys.
    #[must_use]
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The token settings (issuer, audience, lifetimes).
    #[must_use]
    pub fn token_config(mut self, config: TokenConfig) -> Self {
        self.token_config = Some(config);
        self
    }

    /// The service's configuration.
    #[must_use]
    pub fn config(mut self, config: AuthConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock (a [`ManualClock`](psm_core::ManualClock) in tests).
    #[must_use]
    pub fn clock(mut self, clock: DynClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The random source for session ids, user ids and salts.
    #[must_use]
    pub fn rng(mut self, rng: Arc<dyn RandomSource>) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Checks everything and builds the service.
    ///
    /// Building makes, on the calling thread, the dummy hash that logins with an unknown email are
    /// verified against, so it costs one argon2 hash at the configured cost (tens of milliseconds
    /// at OWASP's minimum).
    ///
    /// # Errors
    /// `ProviderConfiguration` for a missing store or key set, or a bad [`AuthConfig`]; whatever
    /// [`TokenService::new`] rejects; `Provider` when the random source or hashing fails.
    pub fn build(self) -> Result<AuthService> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let rng = self.rng.unwrap_or_else(|| Arc::new(OsRandom));
        // Without an embedded provider compiled in, nothing fills the stores.
        #[cfg_attr(not(any(feature = "memory", feature = "file")), allow(unused_mut))]
        let (mut users, mut sessions, mut token_state, mut cache) =
            (self.users, self.sessions, self.token_state, self.cache);
        match self.embedded {
            Embedded::None => {}
            #[cfg(feature = "memory")]
            Embedded::Memory => {
                use crate::memory::{
                    MemoryCache, MemoryConfig, MemoryStore, MemoryTokenStateStore, MemoryUserStore,
                };
                let c = &clock;
                users.get_or_insert_with(|| Arc::new(MemoryUserStore::with_clock(c.clone())));
                sessions.get_or_insert_with(|| {
                    Arc::new(MemoryStore::with_clock(MemoryConfig::default(), c.clone()))
                });
                token_state
                    .get_or_insert_with(|| Arc::new(MemoryTokenStateStore::with_clock(c.clone())));
                cache.get_or_insert_with(|| Arc::new(MemoryCache::with_clock(c.clone())));
            }
            #[cfg(feature = "file")]
            Embedded::File(storage) => {
                users.get_or_insert_with(|| Arc::new(storage.users()));
                sessions.get_or_insert_with(|| Arc::new(storage.sessions()));
                token_state.get_or_insert_with(|| Arc::new(storage.tokens()));
                cache.get_or_insert_with(|| Arc::new(storage.cache()));
            }
        }
        let missing = |what: &'static str| {
            Error::configuration("the auth service needs every store and a key set")
                .with_detail("missing", what)
        };
        let users = users.ok_or_else(|| missing("users"))?;
        let sessions = sessions.ok_or_else(|| missing("sessions"))?;
        let token_state = token_state.ok_or_else(|| missing("token_state"))?;
        let cache = cache.ok_or_else(|| missing("cache"))?;
        let keys = self.keys.ok_or_else(|| missing("keys"))?;
        let token_config = match self.token_config {
            Some(c) => c,
            None => {
                let mut c = TokenConfig::new(DEFAULT_ISSUER, DEFAULT_ISSUER);
                c.refresh_lifetime = self.config.absolute_lifetime;
                c
            }
        };
        let tokens =
            TokenService::new(keys, token_config, token_state, clock.clone(), rng.clone())?;
        let limit = SessionLimit::new(self.config.max_sessions_per_user, self.config.limit_policy)?;
        let throttle = Throttle::new(self.config.throttle, &*rng)?;
        let hasher = password::Hasher::new(&self.config);
        let dummy_hash = password::dummy_hash(self.config.argon2, &*rng)?;
        Ok(AuthService {
            inner: Arc::new(Inner {
                users,
                sessions,
                cache,
                tokens,
                limit,
                throttle,
                hasher,
                dummy_hash,
                config: self.config,
                clock,
                rng,
            }),
        })
    }
}
