//! [`PostgresConfig`]: connection, pool, timeout, TLS and retry settings, from JSON or a URL.

use std::{fmt, path::PathBuf, time::Duration};

use psm_core::{Error, Result, util::parse_provider_url};
use serde_json::{Map, Value};

/// The default schema all tables live in.
pub const DEFAULT_SCHEMA: &str = "psm";
/// Added to `statement_timeout` for the client-side bound of one call, so the server's own
/// timeout (a clean `57014`) normally fires first.
pub const QUERY_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// The longest accepted timeout or delay, in seconds (one day).
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// How the client negotiates TLS (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is **not** verified.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is **not** verified (encryption against passive eavesdropping
    /// only, exactly libpq's `require`). Choose `verify-full` to authenticate the server.
    Require,
    /// TLS or fail; the certificate chain must lead to a trusted root (`sslrootcert`, or the
    /// system's roots) and name the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's names: `disable`, `prefer`, `require`, `verify-full`.
    ///
    /// # Errors
    /// `ProviderConfiguration` for any other value (including libpq's `allow` and `verify-ca`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-full" | "verify_full" => Ok(Self::VerifyFull),
            _ => Err(bad(
                "sslmode",
                "must be one of disable, prefer, require, verify-full",
            )),
        }
    }

    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// How a pooled connection is checked before it is handed out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RecycleCheck {
    /// Only whether the connection is still open (no round trip). A connection the server dropped
    /// is noticed and replaced; the default, because checks are one round trip each.
    #[default]
    Fast,
    /// Additionally runs an empty query on every checkout (one extra round trip per call).
    Verified,
}

/// A password that never shows in `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself (handed to the driver only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Configuration of a [`PostgresStorage`](crate::PostgresStorage).
///
/// Durations are read from JSON in **seconds** (integers or fractions such as `0.25`, or the same as a
/// string, as URL query parameters arrive). `Debug` never prints the password.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Server host name, IP address, or an absolute directory holding the Unix socket (default
    /// `localhost`).
    pub host: String,
    /// Server port (default 5432).
    pub port: u16,
    /// Role name (default `postgres`).
    pub user: String,
    /// Password, if the server asks for one.
    pub password: Option<Secret>,
    /// Database name (default: the role name).
    pub dbname: Option<String>,
    /// Schema holding every table, including the migration history (default `psm`): 1 to 63 bytes
    /// of lowercase ASCII letters, digits and `_`, not starting with a digit, not `pg_` prefixed.
    pub schema: String,
    /// Most connections in the pool (keys `pool_size` or `max_connections`; default 16).
    pub pool_size: usize,
    /// Longest a new connection may take to be established (default 5 s).
    pub connect_timeout: Duration,
    /// Longest a call waits for a free pooled connection before `OperationTimeout` (default 5 s).
    pub wait_timeout: Duration,
    /// Server-side `statement_timeout` of every pooled connection (default 30 s; 0 or `null`
    /// disables it). A statement running longer fails with `OperationTimeout`.
    pub statement_timeout: Option<Duration>,
    /// Whether TCP keepalives are sent (default `true`).
    pub keepalives: bool,
    /// Idle time before the first keepalive probe (default 60 s).
    pub keepalives_idle: Duration,
    /// Time between unanswered keepalive probes (default 10 s).
    pub keepalives_interval: Duration,
    /// Unanswered keepalive probes before the connection is dropped (default 3).
    pub keepalives_retries: u32,
    /// Linux `TCP_USER_TIMEOUT`: longest time sent data may stay unacknowledged before the
    /// connection is dropped (default 30 s; 0 or `null` keeps the system default).
    pub tcp_user_timeout: Option<Duration>,
    /// Client-side bound of one call when `statement_timeout` is off (default 60 s; 0 or `null`
    /// means unbounded). With `statement_timeout` on, each call is bounded by `statement_timeout`
    /// plus [`QUERY_TIMEOUT_MARGIN`] instead. A call past its bound fails with `OperationTimeout`
    /// and its connection is discarded (a stalled server cannot hang callers).
    pub query_timeout: Option<Duration>,
    /// TLS negotiation (default `prefer`).
    pub sslmode: SslMode,
    /// PEM file with the root certificates trusted by `verify-full` (default: the system's roots).
    pub sslrootcert: Option<PathBuf>,
    /// How many times acquiring a connection is retried after a connection error (default 2, so
    /// three attempts in all).
    pub retry_attempts: u32,
    /// Delay before the first retry, doubled after each one (default 0.1 s).
    pub retry_delay: Duration,
    /// Upper bound of the retry delay (default 2 s).
    pub retry_max_delay: Duration,
    /// `application_name` reported to the server (default `psm`).
    pub application_name: String,
    /// How connections are checked when they return to use (default fast).
    pub recycle_check: RecycleCheck,
    /// Largest SQL text the query layer accepts, in bytes (default 65,536).
    pub max_query_bytes: usize,
    /// Most parameters one query-layer call accepts (default 1,000; PostgreSQL's own limit is
    /// 65,535).
    pub max_query_params: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 5432,
            user: "postgres".to_owned(),
            password: None,
            dbname: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            keepalives: true,
            keepalives_idle: Duration::from_secs(60),
            keepalives_interval: Duration::from_secs(10),
            keepalives_retries: 3,
            tcp_user_timeout: Some(Duration::from_secs(30)),
            query_timeout: Some(Duration::from_secs(60)),
            sslmode: SslMode::default(),
            sslrootcert: None,
            retry_attempts: 2,
            retry_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            application_name: "psm".to_owned(),
            recycle_check: RecycleCheck::default(),
            max_query_bytes: 64 * 1024,
            max_query_params: 1_000,
        }
    }
}

impl PostgresConfig {
    /// Reads a configuration object. Keys: `url`, `host`, `port`, `user` (or `username`),
    /// `password`, `dbname` (or `database`), `schema`, `pool_size` (or `max_connections`),
    /// `connect_timeout`, `wait_timeout`, `statement_timeout`, `query_timeout`, `keepalives`,
    /// `keepalives_idle`, `keepalives_interval`, `keepalives_retries`, `tcp_user_timeout`,
    /// `sslmode`, `sslrootcert`, `retry_attempts`, `retry_delay`, `retry_max_delay`,
    /// `application_name`, `recycle_check` (`fast` or `verified`), `max_query_bytes`,
    /// `max_query_params`. Durations are seconds (fractions allowed).
    ///
    /// `url` (a `postgres://` URL, query parameters included) is applied first; the other keys
    /// override it. This accepts exactly the map `psm_core::util::parse_provider_url` produces.
    /// `null` as the whole config means all defaults.
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the key, for an unknown key, a value of the wrong type or out
    /// of range, or a bad schema name. Messages never contain the password.
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut cfg = Self::default();
        let map = match v {
            Value::Null => return Ok(cfg),
            Value::Object(map) => map,
            _ => {
                return Err(Error::configuration(
                    "postgres provider config must be a json object",
                ));
            }
        };
        if let Some(url) = map.get("url") {
            let url = url.as_str().ok_or_else(|| bad("url", "must be a string"))?;
            let parsed = url_map(url)?;
            cfg.apply(&parsed)?;
        }
        cfg.apply(map)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a `postgres://` (or `postgresql://`) URL: `postgres://user:password@host:port/dbname?key=value`,
    /// where each query parameter is a [`from_json`](Self::from_json) key.
    ///
    /// # Errors
    /// `ProviderConfiguration` (or `ProviderNotSupported` for another scheme); messages never quote
    /// the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut cfg = Self::default();
        cfg.apply(&url_map(url)?)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The client-side bound of one call: `statement_timeout` plus [`QUERY_TIMEOUT_MARGIN`], or
    /// `query_timeout` when `statement_timeout` is off (`None`: unbounded).
    pub fn call_timeout(&self) -> Option<Duration> {
        match self.statement_timeout {
            Some(t) => Some(t.saturating_add(QUERY_TIMEOUT_MARGIN)),
            None => self.query_timeout,
        }
    }

    /// The database name used: `dbname`, or the role name when unset.
    pub fn effective_dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// Checks cross-field rules and the schema name.
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the key.
    pub fn validate(&self) -> Result<()> {
        validate_schema(&self.schema)?;
        if self.pool_size == 0 || self.pool_size > 10_000 {
            return Err(bad("pool_size", "must be between 1 and 10000"));
        }
        if self.host.is_empty() {
            return Err(bad("host", "must not be empty"));
        }
        if self.user.is_empty() {
            return Err(bad("user", "must not be empty"));
        }
        // An empty name would be sent to the server as is; leaving the key out means the role's.
        if self.dbname.as_deref() == Some("") {
            return Err(bad(
                "dbname",
                "must not be empty (leave it out to use the user name)",
            ));
        }
        if self.max_query_bytes == 0 {
            return Err(bad("max_query_bytes", "must be at least 1"));
        }
        if self.max_query_params > 65_535 {
            return Err(bad("max_query_params", "must be at most 65535"));
        }
        if self.sslrootcert.is_some() && self.sslmode != SslMode::VerifyFull {
            return Err(bad(
                "sslrootcert",
                "is only used with sslmode verify-full; set sslmode explicitly",
            ));
        }
        Ok(())
    }

    fn apply(&mut self, map: &Map<String, Value>) -> Result<()> {
        for (key, value) in map {
            let k = key.as_str();
            match k {
                // Applied first by `from_json`; in a URL map it repeats host, port, … exactly.
                "url" => {}
                "host" => self.host = string(k, value)?,
                "port" => {
                    self.port = u16::try_from(uint(k, value)?)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad(k, "must be between 1 and 65535"))?;
                }
                "user" | "username" => self.user = string(k, value)?,
                "password" => {
                    self.password = match value {
                        Value::Null => None,
                        Value::String(s) => Some(Secret::new(s.clone())),
                        _ => return Err(bad(k, "must be a string")),
                    };
                }
                "dbname" | "database" => {
                    self.dbname = match value {
                        Value::Null => None,
                        v => Some(string(k, v)?),
                    };
                }
                "schema" => {
                    let s = string(k, value)?;
                    validate_schema(&s)?;
                    self.schema = s;
                }
                "pool_size" | "max_connections" => {
                    self.pool_size = usize::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| bad(k, "must be between 1 and 10000"))?;
                }
                "connect_timeout" => self.connect_timeout = positive_duration(k, value)?,
                "wait_timeout" | "pool_timeout" => {
                    self.wait_timeout = positive_duration(k, value)?;
                }
                "statement_timeout" => {
                    self.statement_timeout = match value {
                        Value::Null => None,
                        v => Some(duration(k, v)?).filter(|d| !d.is_zero()),
                    };
                }
                "keepalives" => self.keepalives = boolean(k, value)?,
                "keepalives_idle" => self.keepalives_idle = positive_duration(k, value)?,
                "keepalives_interval" => {
                    self.keepalives_interval = positive_duration(k, value)?;
                }
                "keepalives_retries" => {
                    self.keepalives_retries = u32::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| (1..=1_000).contains(n))
                        .ok_or_else(|| bad(k, "must be between 1 and 1000"))?;
                }
                "tcp_user_timeout" => self.tcp_user_timeout = optional_duration(k, value)?,
                "query_timeout" => self.query_timeout = optional_duration(k, value)?,
                "sslmode" | "ssl_mode" => self.sslmode = SslMode::parse(&string(k, value)?)?,
                "sslrootcert" => {
                    self.sslrootcert = match value {
                        Value::Null => None,
                        v => Some(PathBuf::from(string(k, v)?)),
                    };
                }
                "retry_attempts" => {
                    self.retry_attempts = u32::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| *n <= 100)
                        .ok_or_else(|| bad(k, "must be between 0 and 100"))?;
                }
                "retry_delay" => self.retry_delay = duration(k, value)?,
                "retry_max_delay" | "max_retry_delay" => {
                    self.retry_max_delay = duration(k, value)?;
                }
                "application_name" => {
                    let s = string(k, value)?;
                    if s.len() > 63 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(bad(k, "must be at most 63 printable ascii characters"));
                    }
                    self.application_name = s;
                }
                "recycle_check" => {
                    self.recycle_check = match string(k, value)?.as_str() {
                        "fast" => RecycleCheck::Fast,
                        "verified" => RecycleCheck::Verified,
                        _ => return Err(bad(k, "must be fast or verified")),
                    };
                }
                "max_query_bytes" => {
                    self.max_query_bytes = usize::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| (1..=16 * 1024 * 1024).contains(n))
                        .ok_or_else(|| bad(k, "must be between 1 and 16777216"))?;
                }
                "max_query_params" => {
                    self.max_query_params = usize::try_from(uint(k, value)?)
                        .ok()
                        .filter(|n| *n <= 65_535)
                        .ok_or_else(|| bad(k, "must be between 0 and 65535"))?;
                }
                _ => {
                    let shown: String = key.chars().take(64).collect();
                    return Err(Error::configuration(format!(
                        "unknown postgres provider config key `{shown}`"
                    ))
                    .with_detail("key", shown));
                }
            }
        }
        Ok(())
    }
}

/// Validates a schema name: 1 to 63 bytes of `[a-z0-9_]`, not starting with a digit, not starting
/// with `pg_` (reserved by PostgreSQL).
///
/// # Errors
/// `ProviderConfiguration` naming the key `schema`.
pub fn validate_schema(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
        && !s.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(bad(
            "schema",
            "must be 1 to 63 lowercase ascii letters, digits or '_', not starting with a digit or 'pg_'",
        ))
    }
}

fn url_map(url: &str) -> Result<Map<String, Value>> {
    let parsed = parse_provider_url(url)?;
    if parsed.provider() != psm_core::util::ProviderScheme::Postgres {
        return Err(Error::configuration(
            "postgres provider url must start with postgres:// or postgresql://",
        ));
    }
    Ok(parsed.into_config())
}

fn bad(key: &str, what: &str) -> Error {
    Error::configuration(format!("postgres config `{key}` {what}")).with_detail("key", key)
}

fn string(key: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad(key, "must be a string"))
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "1" || s == "on" => Ok(true),
        Value::String(s) if s == "false" || s == "0" || s == "off" => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        _ => Err(bad(key, "must be a boolean")),
    }
}

fn uint(key: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
    .ok_or_else(|| bad(key, "must be a non-negative integer"))
}

fn duration(key: &str, v: &Value) -> Result<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .ok_or_else(|| bad(key, "must be a non-negative number of seconds"))?;
    if secs > MAX_DURATION_SECS {
        return Err(bad(key, "must be at most 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration where `0` or `null` means "off".
fn optional_duration(key: &str, v: &Value) -> Result<Option<Duration>> {
    if v.is_null() {
        return Ok(None);
    }
    let d = duration(key, v)?;
    Ok((!d.is_zero()).then_some(d))
}

fn positive_duration(key: &str, v: &Value) -> Result<Duration> {
    let d = duration(key, v)?;
    if d < Duration::from_millis(1) {
        return Err(bad(key, "must be at least 0.001 seconds"));
    }
    Ok(d)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
