//! [`AuthConfig`]: password policy, argon2id cost, session limits and lifetimes, login throttling.

use std::time::Duration;

use psm_core::{Error, LimitPolicy, MAX_TTL_SECS, Result};

/// Fewest characters a password policy may require (OWASP's floor).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Most characters a password policy may allow: long passphrases are welcome, unbounded input is not.
pub const MAX_PASSWORD_CHARS: usize = 4096;

/// How [`AuthService`](crate::auth::AuthService) behaves; every field has a sound default and the whole
/// value is checked when the service is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Fewest characters a password may have (default 8; at least 8).
    pub password_min_chars: usize,
    /// Most characters a password may have (default 128; at most 4,096).
    pub password_max_chars: usize,
    /// The argon2id cost of new password hashes.
    pub argon2: Argon2Params,
    /// Most live login sessions one user may hold (default 5).
    pub max_sessions_per_user: u32,
    /// What a login does when the user is at the limit (default: evict the oldest session).
    pub limit_policy: LimitPolicy,
    /// A session unused for this long expires; every refresh renews it (default 30 min).
    pub idle_timeout: Duration,
    /// A session ends this long after login however often it is refreshed (default 12 h).
    pub absolute_lifetime: Duration,
    /// Login throttling.
    pub throttle: ThrottleConfig,
    /// How long a user found by email stays in the cache (default 60 s).
    pub user_cache_ttl: Duration,
    /// Prefix of generated session ids (default `"sess"`).
    pub session_prefix: String,
    /// Most argon2 hashes and verifications admitted at once (default twice the available
    /// parallelism; at least 1); they run on one hashing thread per core (at most this many), and
    /// the rest wait their turn. Each hashing thread keeps `argon2.memory_kib` of working memory
    /// for verifications; a hash being made allocates its own. Without a bound a burst of logins
    /// could exhaust memory and cores.
    pub max_concurrent_hashes: usize,
    /// How long a login, registration or password change waits for a free hashing slot before it
    /// fails with `RateLimited` (default 5 s; between 1 ms and 10 min).
    pub hash_queue_timeout: Duration,
}

/// The default of [`AuthConfig::max_concurrent_hashes`]: twice the available parallelism.
fn default_max_concurrent_hashes() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_mul(2)
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            password_min_chars: 8,
            password_max_chars: 128,
            argon2: Argon2Params::default(),
            max_sessions_per_user: 5,
            limit_policy: LimitPolicy::EvictOldest,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 3600),
            throttle: ThrottleConfig::default(),
            user_cache_ttl: Duration::from_secs(60),
            session_prefix: "sess".to_owned(),
            max_concurrent_hashes: default_max_concurrent_hashes(),
            hash_queue_timeout: Duration::from_secs(5),
        }
    }
}

impl AuthConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.password_min_chars < MIN_PASSWORD_CHARS
            || self.password_min_chars > self.password_max_chars
            || self.password_max_chars > MAX_PASSWORD_CHARS
        {
            return Err(Error::configuration(
                "password length bounds must satisfy 8 <= min <= max <= 4096",
            )
            .with_detail("field", "password_min_chars"));
        }
        self.argon2.validate()?;
        if self.max_sessions_per_user == 0 {
            return Err(
                Error::configuration("max_sessions_per_user must be at least 1")
                    .with_detail("field", "max_sessions_per_user"),
            );
        }
        for (field, d) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_lifetime", self.absolute_lifetime),
            ("user_cache_ttl", self.user_cache_ttl),
        ] {
            if d < Duration::from_secs(1) || d.as_secs() > MAX_TTL_SECS {
                return Err(Error::configuration(
                    "durations must be between 1 second and one year",
                )
                .with_detail("field", field));
            }
        }
        if self.idle_timeout > self.absolute_lifetime {
            return Err(Error::configuration(
                "idle_timeout must not be longer than absolute_lifetime",
            )
            .with_detail("field", "idle_timeout"));
        }
        self.throttle.validate()?;
        // The prefix plus `_` and 22 random characters must stay a valid session id.
        if self.session_prefix.len() > 200
            || !self
                .session_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::configuration(
                "session_prefix must be at most 200 ascii letters, digits, '-' or '_'",
            )
            .with_detail("field", "session_prefix"));
        }
        if self.max_concurrent_hashes == 0
            || self.max_concurrent_hashes > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(
                Error::configuration("max_concurrent_hashes must be at least 1")
                    .with_detail("field", "max_concurrent_hashes"),
            );
        }
        if self.hash_queue_timeout < Duration::from_millis(1)
            || self.hash_queue_timeout > Duration::from_secs(600)
        {
            return Err(Error::configuration(
                "hash_queue_timeout must be between 1 millisecond and 10 minutes",
            )
            .with_detail("field", "hash_queue_timeout"));
        }
        Ok(())
    }
}

/// The argon2id cost parameters.
///
/// The default is OWASP's minimum for argon2id (Password Storage Cheat Sheet): 19 MiB of memory, two
/// passes, one lane. Raise them as far as login latency allows.
///
/// Parameters below OWASP's minimum are a configuration error. OWASP lists equally strong trades of
/// memory for passes, and those pass too: m = 47,104 KiB with t = 1, m = 19,456 with t = 2,
/// m = 12,288 with t = 3, m = 9,216 with t = 4, m = 7,168 with t = 5 (each with p = 1 or more).
/// Anything weaker needs [`allow_below_owasp_minimum`](Self::allow_below_owasp_minimum), which is
/// for tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB (`m`).
    pub memory_kib: u32,
    /// Number of passes (`t`).
    pub iterations: u32,
    /// Degree of parallelism (`p`).
    pub parallelism: u32,
    /// Accepts parameters below OWASP's minimum. For tests only, to keep suites fast: never set it
    /// in production.
    pub allow_below_owasp_minimum: bool,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP_MINIMUM
    }
}

impl Argon2Params {
    /// OWASP's minimum for argon2id: m = 19,456 KiB, t = 2, p = 1.
    pub const OWASP_MINIMUM: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
        allow_below_owasp_minimum: false,
    };

    /// OWASP's argon2id settings of equal strength, as (least memory in KiB, passes).
    const OWASP_EQUIVALENTS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];

    /// Whether the parameters reach OWASP's minimum (or one of its equivalents).
    pub fn meets_owasp_minimum(&self) -> bool {
        self.parallelism >= 1
            && Self::OWASP_EQUIVALENTS
                .iter()
                .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t)
    }

    /// Checks the parameters against argon2's own bounds and OWASP's minimum.
    ///
    /// # Errors
    /// `ProviderConfiguration` when argon2 rejects them, or when they are below OWASP's minimum
    /// and [`allow_below_owasp_minimum`](Self::allow_below_owasp_minimum) is not set.
    pub fn validate(&self) -> Result<()> {
        self.to_argon2()?;
        if !self.allow_below_owasp_minimum && !self.meets_owasp_minimum() {
            return Err(Error::configuration(
                "argon2 parameters are below owasp's minimum (m=19456 KiB, t=2, p=1)",
            )
            .with_detail("field", "argon2"));
        }
        Ok(())
    }

    pub(crate) fn to_argon2(self) -> Result<argon2::Params> {
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            Error::configuration("argon2 parameters are out of range")
                .with_detail("field", "argon2")
                .with_source(e)
        })
    }
}

/// Login throttling: failed attempts counted in a sliding window, per account and per client key.
///
/// Attempts are counted as they start (and forgiven when they succeed), so parallel guesses cannot
/// slip past the limit. The counters live in the service's process: several instances behind a load
/// balancer each allow the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// The sliding window (default 15 min).
    pub window: Duration,
    /// Failed logins allowed per account (email) within the window (default 5).
    pub max_failures_per_account: u32,
    /// Failed logins allowed per client key (for example the ip) within the window (default 20).
    pub max_failures_per_client: u32,
    /// Most accounts and, separately, client keys tracked at once (default 100,000). When a new key
    /// finds the map full, keys with no failure left in the window are forgotten first, then those
    /// with the fewest failures; a key within a fifth of its limit (at least one failure short of
    /// it) is never forgotten, and when every key is that close a login fails with `RateLimited`
    /// (scope `global`) rather than lift a lock.
    pub max_tracked_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            max_failures_per_account: 5,
            max_failures_per_client: 20,
            max_tracked_keys: 100_000,
        }
    }
}

impl ThrottleConfig {
    fn validate(&self) -> Result<()> {
        if self.window < Duration::from_secs(1) || self.window.as_secs() > MAX_TTL_SECS {
            return Err(Error::configuration(
                "throttle window must be between 1 second and one year",
            )
            .with_detail("field", "throttle.window"));
        }
        if self.max_failures_per_account == 0 || self.max_failures_per_client == 0 {
            return Err(Error::configuration("throttle limits must be at least 1")
                .with_detail("field", "throttle.max_failures"));
        }
        if self.max_tracked_keys == 0 {
            return Err(Error::configuration("max_tracked_keys must be at least 1")
                .with_detail("field", "throttle.max_tracked_keys"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_owasp_and_valid() {
        let c = AuthConfig::default();
        c.validate().unwrap();
        assert_eq!(
            (
                c.argon2.memory_kib,
                c.argon2.iterations,
                c.argon2.parallelism
            ),
            (19_456, 2, 1)
        );
        assert_eq!((c.password_min_chars, c.password_max_chars), (8, 128));
        assert_eq!(c.max_sessions_per_user, 5);
        assert_eq!(c.limit_policy, LimitPolicy::EvictOldest);
        assert!(c.max_concurrent_hashes >= 2);
        assert_eq!(c.hash_queue_timeout, Duration::from_secs(5));
    }

    #[test]
    fn owasp_equivalents_pass_and_test_params_need_the_flag() {
        for (m, t) in Argon2Params::OWASP_EQUIVALENTS {
            let p = Argon2Params {
                memory_kib: m,
                iterations: t,
                ..Argon2Params::OWASP_MINIMUM
            };
            p.validate().unwrap();
        }
        let mut cheap = Argon2Params {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            allow_below_owasp_minimum: false,
        };
        assert!(!cheap.meets_owasp_minimum());
        assert!(cheap.validate().is_err());
        cheap.allow_below_owasp_minimum = true;
        cheap.validate().unwrap();
    }

    #[test]
    fn rejects_bad_fields() {
        let cases: Vec<fn(&mut AuthConfig)> = vec![
            |c| c.password_min_chars = 7,
            |c| c.password_max_chars = 5000,
            |c| c.password_min_chars = 200,
            |c| c.argon2.memory_kib = 1,
            |c| c.argon2.iterations = 0,
            |c| c.max_sessions_per_user = 0,
            |c| c.idle_timeout = Duration::ZERO,
            |c| c.idle_timeout = Duration::from_secs(13 * 3600),
            |c| c.absolute_lifetime = Duration::from_secs(MAX_TTL_SECS + 1),
            |c| c.user_cache_ttl = Duration::from_millis(10),
            |c| c.throttle.window = Duration::ZERO,
            |c| c.throttle.max_failures_per_client = 0,
            |c| c.session_prefix = "a b".to_owned(),
            |c| c.argon2.memory_kib = 19_455,
            |c| c.argon2.iterations = 1,
            |c| {
                c.argon2.memory_kib = 12_288;
                c.argon2.iterations = 2;
            },
            |c| c.max_concurrent_hashes = 0,
            |c| c.hash_queue_timeout = Duration::ZERO,
        ];
        for (i, f) in cases.into_iter().enumerate() {
            let mut c = AuthConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(
                e.kind(),
                psm_core::ErrorKind::ProviderConfiguration,
                "case {i}"
            );
        }
    }
}
