//! [`RedisConfig`]: the seed's `RedisProvider` keys, from JSON or a `redis://` / `rediss://` URL.

use std::{fmt, path::PathBuf, time::Duration};

use psm_core::{Error, Result, util::parse_provider_url};
use serde_json::{Map, Value};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "psm:";
/// The longest accepted key prefix, in bytes.
pub const MAX_KEY_PREFIX_LEN: usize = 128;
/// The default number of entries of the client-side cache.
pub const DEFAULT_CLIENT_CACHE_ENTRIES: usize = 100_000;
/// The default bound of the client-side cache's memory, in bytes (approximate: permission bytes
/// plus a fixed overhead per entry and per permission).
pub const DEFAULT_CLIENT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// The default age after which a cached session is read from Redis again, even without an
/// invalidation.
pub const DEFAULT_CLIENT_CACHE_MAX_AGE: Duration = Duration::from_secs(60);
/// The default pool size (fred pipelines many concurrent commands over each connection).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// How the server certificate is verified (seed key `ssl_cert_reqs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslCertReqs {
    /// Verify the chain and the host name (default).
    #[default]
    Required,
    /// Like `Required` (rustls cannot accept an unverifiable certificate "optionally"; the name is
    /// kept for compatibility with the seed).
    Optional,
    /// **Insecure**: accept any certificate. Only when explicitly configured.
    None,
}

/// The client-side cache (config key `client_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCacheConfig {
    /// Most cached sessions (`max_entries`, 1 to 100,000,000); the cache evicts arbitrary entries
    /// beyond it.
    pub max_entries: usize,
    /// Most bytes held (`max_bytes`, 4 KiB to 64 GiB; approximate); a session larger than a
    /// sixteenth of it is not cached.
    pub max_bytes: usize,
    /// Age after which an entry is read again even without an invalidation (`max_age`, seconds,
    /// above 0 and at most one day): a bound on staleness should an invalidation ever be lost.
    pub max_age: Duration,
}

impl Default for ClientCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_CLIENT_CACHE_ENTRIES,
            max_bytes: DEFAULT_CLIENT_CACHE_BYTES,
            max_age: DEFAULT_CLIENT_CACHE_MAX_AGE,
        }
    }
}

/// Configuration of the Redis adapters.
///
/// Build it from the seed's JSON keys with [`RedisConfig::from_json`], from a URL with
/// [`RedisConfig::from_url`], or with struct update syntax over [`Default`]. `Debug` never shows
/// the password.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// Server host (or the cluster seed node). Default `127.0.0.1`.
    pub host: String,
    /// Server port. Default 6379.
    pub port: u16,
    /// Database number (standalone only; must be 0 with `cluster`). Default 0.
    pub db: u8,
    /// ACL user name.
    pub username: Option<String>,
    /// Password (never shown by `Debug`, logs or errors).
    pub password: Option<String>,
    /// Command timeout (seed `socket_timeout`). Default 5 s.
    pub socket_timeout: Duration,
    /// Connection timeout (seed `socket_connect_timeout`). Default 5 s.
    pub socket_connect_timeout: Duration,
    /// Interval of `PING` health checks on idle connections (seed `health_check_interval`); `None`
    /// disables them. Default 30 s.
    pub health_check_interval: Option<Duration>,
    /// Whether a command that timed out is retried once on a new connection, still within
    /// [`socket_timeout`](Self::socket_timeout) (seed `retry_on_timeout`). Default `true`.
    pub retry_on_timeout: bool,
    /// Connections in the pool (seed `max_connections`). Default 4.
    pub pool_size: usize,
    /// Prefix of every key (seed `key_prefix`). Default `psm:`.
    pub key_prefix: String,
    /// Use TLS (seed `ssl`, or a `rediss://` URL).
    pub ssl: bool,
    /// Certificate verification (seed `ssl_cert_reqs`).
    pub ssl_cert_reqs: SslCertReqs,
    /// Extra PEM root certificates (seed `ssl_ca_certs`).
    pub ssl_ca_certs: Option<PathBuf>,
    /// Client-side caching of session permissions (`client_cache`); `None` disables it.
    pub client_cache: Option<ClientCacheConfig>,
    /// Treat the host as a seed node of a Redis Cluster (`cluster`).
    pub cluster: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            socket_timeout: Duration::from_secs(5),
            socket_connect_timeout: Duration::from_secs(5),
            health_check_interval: Some(Duration::from_secs(30)),
            retry_on_timeout: true,
            pool_size: DEFAULT_POOL_SIZE,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            ssl: false,
            ssl_cert_reqs: SslCertReqs::Required,
            ssl_ca_certs: None,
            client_cache: None,
            cluster: false,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("socket_timeout", &self.socket_timeout)
            .field("socket_connect_timeout", &self.socket_connect_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("retry_on_timeout", &self.retry_on_timeout)
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .field("ssl", &self.ssl)
            .field("ssl_cert_reqs", &self.ssl_cert_reqs)
            .field("ssl_ca_certs", &self.ssl_ca_certs)
            .field("client_cache", &self.client_cache)
            .field("cluster", &self.cluster)
            .finish()
    }
}

fn bad(key: &str, why: &str) -> Error {
    Error::configuration(format!("redis config key `{key}` {why}")).with_detail("key", key)
}

/// A JSON value as an unsigned integer (also from a URL query string).
fn uint(key: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(key, "must be a non-negative integer"))
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "1" => Ok(true),
        Value::String(s) if s == "false" || s == "0" => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        _ => Err(bad(key, "must be a boolean")),
    }
}

fn string(key: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(bad(key, "must be a string")),
    }
}

/// Seconds (integer or float, up to one day) as a duration; zero is refused.
fn seconds(key: &str, v: &Value) -> Result<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
    .ok_or_else(|| bad(key, "must be a number of seconds above 0 and at most 86400"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// Whether `prefix` is a valid key prefix: 1 to 128 bytes of printable ASCII without whitespace
/// and without the characters that are special in hash tags or `SCAN MATCH` patterns
/// (`{ } * ? [ ] \`).
pub fn is_valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"{}*?[]\\".contains(&b))
}

impl RedisConfig {
    /// Reads the seed's configuration object (see the crate docs for every key). `null` means all
    /// defaults. Also accepts exactly the map [`psm_core::util::parse_provider_url`] makes of a
    /// `redis://` or `rediss://` URL.
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the key for an unknown key or a bad value; the message never
    /// contains the password.
    pub fn from_json(v: &Value) -> Result<Self> {
        let map = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(m) => m,
            _ => {
                return Err(Error::configuration(
                    "redis provider config must be a json object",
                ));
            }
        };
        let mut cfg = Self::default();
        // A `url` gives the defaults that explicit keys override.
        if let Some(url) = map.get("url") {
            let url = string("url", url)?;
            cfg.apply(&url_map(&url)?)?;
        }
        cfg.apply(map)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a `redis://[user[:password]@]host[:port][/db][?key=value…]` or `rediss://…` URL;
    /// query parameters are configuration keys (`key_prefix`, `cluster`, `socket_timeout`, …).
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json); a malformed URL is `ProviderConfiguration` and the
    /// message never quotes it.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_json(&Value::Object(url_map(url)?))
    }

    fn apply(&mut self, map: &Map<String, Value>) -> Result<()> {
        for (key, value) in map {
            let k = key.as_str();
            match k {
                "url" => {}
                "host" => {
                    let h = string(k, value)?;
                    if h.is_empty() {
                        return Err(bad(k, "must not be empty"));
                    }
                    self.host = h;
                }
                "port" => {
                    self.port = u16::try_from(uint(k, value)?)
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad(k, "must be between 1 and 65535"))?;
                }
                "db" => {
                    self.db = u8::try_from(uint(k, value)?)
                        .ok()
                        .filter(|d| *d < 16)
                        .ok_or_else(|| bad(k, "must be between 0 and 15"))?;
                }
                "username" => self.username = opt_string(k, value)?,
                "password" => {
                    self.password = match value {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        _ => return Err(bad(k, "must be a string")),
                    }
                }
                "socket_timeout" => self.socket_timeout = seconds(k, value)?,
                "socket_connect_timeout" => self.socket_connect_timeout = seconds(k, value)?,
                "health_check_interval" => {
                    self.health_check_interval = match value {
                        Value::Null => None,
                        Value::Number(n) if n.as_f64() == Some(0.0) => None,
                        Value::String(s) if s == "0" => None,
                        v => Some(seconds(k, v)?),
                    }
                }
                "retry_on_timeout" => self.retry_on_timeout = boolean(k, value)?,
                "max_connections" | "pool_size" => {
                    self.pool_size = usize::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| bad(k, "must be between 1 and 1024"))?;
                }
                "decode_responses" => {
                    if !boolean(k, value)? {
                        return Err(bad(
                            k,
                            "must be true: psm always decodes responses as utf-8",
                        ));
                    }
                }
                "key_prefix" => {
                    let p = string(k, value)?;
                    if !is_valid_key_prefix(&p) {
                        return Err(bad(
                            k,
                            "must be 1 to 128 printable ascii bytes without whitespace or { } * ? [ ] \\",
                        ));
                    }
                    self.key_prefix = p;
                }
                "ssl" => self.ssl = boolean(k, value)?,
                "ssl_cert_reqs" => {
                    self.ssl_cert_reqs = match value {
                        Value::Null => SslCertReqs::Required,
                        Value::String(s) => match s.to_ascii_lowercase().as_str() {
                            "required" | "cert_required" => SslCertReqs::Required,
                            "optional" | "cert_optional" => SslCertReqs::Optional,
                            "none" | "cert_none" => SslCertReqs::None,
                            _ => {
                                return Err(bad(
                                    k,
                                    "must be \"required\", \"optional\" or \"none\"",
                                ));
                            }
                        },
                        _ => return Err(bad(k, "must be a string")),
                    }
                }
                "ssl_ca_certs" => self.ssl_ca_certs = opt_string(k, value)?.map(PathBuf::from),
                "client_cache" => self.client_cache = client_cache(value)?,
                "cluster" => self.cluster = boolean(k, value)?,
                _ => {
                    return Err(
                        Error::configuration(format!("unknown redis config key `{k}`"))
                            .with_detail("key", k),
                    );
                }
            }
        }
        Ok(())
    }

    /// Checks every value against the rules [`from_json`](Self::from_json) applies, so a
    /// configuration built as a struct is held to the same rules (`RedisStorage::new` calls it).
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the offending key.
    pub fn validate(&self) -> Result<()> {
        fn secs_ok(d: Duration) -> bool {
            d > Duration::ZERO && d <= Duration::from_secs(86_400)
        }
        const SECS: &str = "must be a number of seconds above 0 and at most 86400";
        if self.host.is_empty() {
            return Err(bad("host", "must not be empty"));
        }
        if self.port == 0 {
            return Err(bad("port", "must be between 1 and 65535"));
        }
        if self.db >= 16 {
            return Err(bad("db", "must be between 0 and 15"));
        }
        if self.cluster && self.db != 0 {
            return Err(bad("db", "must be 0 in cluster mode"));
        }
        if !secs_ok(self.socket_timeout) {
            return Err(bad("socket_timeout", SECS));
        }
        if !secs_ok(self.socket_connect_timeout) {
            return Err(bad("socket_connect_timeout", SECS));
        }
        if self.health_check_interval.is_some_and(|d| !secs_ok(d)) {
            return Err(bad("health_check_interval", SECS));
        }
        if !(1..=1024).contains(&self.pool_size) {
            return Err(bad("max_connections", "must be between 1 and 1024"));
        }
        if !is_valid_key_prefix(&self.key_prefix) {
            return Err(bad(
                "key_prefix",
                "must be 1 to 128 printable ascii bytes without whitespace or { } * ? [ ] \\",
            ));
        }
        if let Some(c) = &self.client_cache {
            if !(1..=100_000_000).contains(&c.max_entries) {
                return Err(bad(
                    "client_cache.max_entries",
                    "must be between 1 and 100000000",
                ));
            }
            if !(MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&c.max_bytes) {
                return Err(bad(
                    "client_cache.max_bytes",
                    "must be between 4096 and 68719476736",
                ));
            }
            if !secs_ok(c.max_age) {
                return Err(bad("client_cache.max_age", SECS));
            }
        }
        Ok(())
    }
}

fn opt_string(key: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        v => string(key, v).map(Some),
    }
}

const MIN_CACHE_BYTES: usize = 4096;
const MAX_CACHE_BYTES: usize = 1 << 36;

fn client_cache(v: &Value) -> Result<Option<ClientCacheConfig>> {
    const K: &str = "client_cache";
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => {
            let mut c = ClientCacheConfig::default();
            for (key, value) in m {
                match key.as_str() {
                    "max_entries" => {
                        c.max_entries = usize::try_from(uint("client_cache.max_entries", value)?)
                            .ok()
                            .filter(|n| (1..=100_000_000).contains(n))
                            .ok_or_else(|| {
                                bad(
                                    "client_cache.max_entries",
                                    "must be between 1 and 100000000",
                                )
                            })?;
                    }
                    "max_bytes" => {
                        c.max_bytes = usize::try_from(uint("client_cache.max_bytes", value)?)
                            .ok()
                            .filter(|n| (MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(n))
                            .ok_or_else(|| {
                                bad(
                                    "client_cache.max_bytes",
                                    "must be between 4096 and 68719476736",
                                )
                            })?;
                    }
                    "max_age" => c.max_age = seconds("client_cache.max_age", value)?,
                    "enabled" => {
                        if !boolean("client_cache.enabled", value)? {
                            return Ok(None);
                        }
                    }
                    other => {
                        return Err(Error::configuration(format!(
                            "unknown redis config key `client_cache.{other}`"
                        ))
                        .with_detail("key", format!("client_cache.{other}")));
                    }
                }
            }
            Ok(Some(c))
        }
        v => Ok(boolean(K, v)?.then(ClientCacheConfig::default)),
    }
}

/// The configuration map of a redis URL, refusing other schemes.
fn url_map(url: &str) -> Result<Map<String, Value>> {
    let parsed = parse_provider_url(url)?;
    if parsed.provider().provider_name() != "redis" {
        return Err(Error::configuration(
            "redis url must start with redis:// or rediss://",
        ));
    }
    Ok(parsed.into_config())
}

#[cfg(test)]
mod tests;
