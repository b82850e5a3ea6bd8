//! Settings and where they come from: a command-line flag wins over its `PSM_*` environment
//! variable, which wins over the TOML file (`--config`, `PSM_CONFIG`), which wins over the default.
//!
//! Every key of the TOML file is the flag's name with `_` for `-` (`request_timeout = "30s"`);
//! durations are seconds or psm ttl strings (`"90"`, `"15m"`, `"1h30m"`, `"2d"`).

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::{ArgAction, Args, ValueEnum, builder::BoolishValueParser};
use serde::{Deserialize, Deserializer};

use crate::CliError;

/// A duration in whole seconds, written as seconds or a psm ttl string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub u64);

impl Secs {
    /// As a [`Duration`].
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl FromStr for Secs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        psm::util::parse_ttl_string(s)
            .map(|t| Self(t.as_secs()))
            .map_err(|e| e.message().to_owned())
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Secs::from_str(&n.to_string()),
            Raw::Text(s) => Secs::from_str(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the stores are and how the process logs: for every command. Its `Debug` output shows
/// the store URLs without their passwords.
#[derive(Clone, Default, Args)]
pub struct StoreFlags {
    /// TOML file with default settings
    #[arg(long, global = true, env = "PSM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Session store: memory://, file://PATH, redis://, rediss://, postgres:// [default: file store in --data-dir]
    #[arg(long, global = true, env = "PSM_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// User store: memory://, file://PATH or postgres:// [default: the session store's]
    #[arg(long, global = true, env = "PSM_USERS", value_name = "URL")]
    pub users: Option<String>,
    /// Directory of the embedded store and the signing key [default: ./psm-data]
    #[arg(long, global = true, env = "PSM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the HS256 token signing secret (created on first use) [default: DATA_DIR/jwt-hs256.key]
    #[arg(long, global = true, env = "PSM_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// TTL of sessions stored without one [default: 1h]
    #[arg(long, global = true, env = "PSM_DEFAULT_TTL", value_name = "DURATION")]
    pub default_ttl: Option<Secs>,
    /// Log filter, e.g. info or psm=debug,info [default: info]
    #[arg(long, global = true, env = "PSM_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format [default: text]
    #[arg(long, global = true, env = "PSM_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl fmt::Debug for StoreFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreFlags")
            .field("config", &self.config)
            .field("store", &self.store.as_deref().map(redact_url))
            .field("users", &self.users.as_deref().map(redact_url))
            .field("data_dir", &self.data_dir)
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("default_ttl", &self.default_ttl)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// What `psm serve` adds.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeFlags {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "PSM_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Largest request body in bytes [default: 2097152]
    #[arg(long, env = "PSM_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Longest a request may take [default: 30s]
    #[arg(long, env = "PSM_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<Secs>,
    /// Whether anyone may register an account [default: true]
    #[arg(long, env = "PSM_REGISTRATION", value_name = "BOOL", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub registration: Option<bool>,
    /// Read client addresses from X-Forwarded-For (only behind a proxy that sets it) [default: false]
    #[arg(long, env = "PSM_TRUST_FORWARDED_FOR", value_name = "BOOL", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub trust_forwarded_for: Option<bool>,
    /// Token issuer and audience [default: psm]
    #[arg(long, env = "PSM_ISSUER", value_name = "NAME")]
    pub issuer: Option<String>,
    /// Access token lifetime [default: 15m]
    #[arg(long, env = "PSM_ACCESS_TTL", value_name = "DURATION")]
    pub access_ttl: Option<Secs>,
    /// A login session unused this long expires [default: 30m]
    #[arg(long, env = "PSM_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<Secs>,
    /// A login session ends this long after login [default: 12h]
    #[arg(long, env = "PSM_SESSION_LIFETIME", value_name = "DURATION")]
    pub session_lifetime: Option<Secs>,
    /// Most live login sessions per user (the oldest is evicted) [default: 5]
    #[arg(long, env = "PSM_MAX_SESSIONS_PER_USER", value_name = "N")]
    pub max_sessions_per_user: Option<u32>,
}

/// The TOML file: every key optional, unknown keys refused. No `Debug`: it holds store URLs,
/// which may carry passwords.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    store: Option<String>,
    users: Option<String>,
    data_dir: Option<PathBuf>,
    jwt_secret_file: Option<PathBuf>,
    default_ttl: Option<Secs>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    listen: Option<SocketAddr>,
    body_limit: Option<usize>,
    request_timeout: Option<Secs>,
    registration: Option<bool>,
    trust_forwarded_for: Option<bool>,
    issuer: Option<String>,
    access_ttl: Option<Secs>,
    idle_timeout: Option<Secs>,
    session_lifetime: Option<Secs>,
    max_sessions_per_user: Option<u32>,
}

/// Where the sessions are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A provider URL.
    Url(String),
    /// The embedded file store in a directory.
    Dir(PathBuf),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StoreLocation {
    /// The location with any password removed, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(p) => format!("file store in {}", p.display()),
            Self::Url(u) => redact_url(u),
        }
    }
}

/// Whether a query parameter holds a secret (`password`, `ssl_password`, `token`, `secret`, …).
fn secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|s| key.contains(s))
        && key != "key_prefix"
}

/// `url` without its secrets: the userinfo password (`redis://user:secret@host` becomes
/// `redis://user:***@host`) and the values of query parameters that name one
/// (`?password=…`, `?ssl_keyfile_password=…`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let query = query.map(|q| {
        let (q, fragment) = q.split_once('#').map_or((q, None), |(q, f)| (q, Some(f)));
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_param(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        let mut out = format!("?{}", pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    });
    format!("{scheme}://{authority}{path}{}", query.unwrap_or_default())
}

/// The settings of every command, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The session store.
    pub store: StoreLocation,
    /// The user store, when it is not the session store's.
    pub users: Option<StoreLocation>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The signing secret's file.
    pub jwt_secret_file: PathBuf,
    /// The ttl of sessions stored without one.
    pub default_ttl: Secs,
    /// The log filter.
    pub log_level: String,
    /// The log format.
    pub log_format: LogFormat,
}

/// The settings of `psm serve`, resolved.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The listening address.
    pub listen: SocketAddr,
    /// The request body limit in bytes.
    pub body_limit: usize,
    /// The per-request time limit.
    pub request_timeout: Secs,
    /// Whether self-registration is open.
    pub registration: bool,
    /// Whether `X-Forwarded-For` is trusted.
    pub trust_forwarded_for: bool,
    /// The token issuer and audience.
    pub issuer: String,
    /// The access token lifetime.
    pub access_ttl: Secs,
    /// The idle timeout of login sessions.
    pub idle_timeout: Secs,
    /// The absolute lifetime of login sessions.
    pub session_lifetime: Secs,
    /// The per-user session limit.
    pub max_sessions_per_user: u32,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 2 * 1024 * 1024,
            request_timeout: Secs(30),
            registration: true,
            trust_forwarded_for: false,
            issuer: "psm".to_owned(),
            access_ttl: Secs(15 * 60),
            idle_timeout: Secs(30 * 60),
            session_lifetime: Secs(12 * 3600),
            max_sessions_per_user: 5,
        }
    }
}

fn read_file(path: Option<&Path>) -> Result<FileSettings, CliError> {
    let Some(path) = path else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::config(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        CliError::config(format!(
            "the config file {} is invalid: {e}",
            path.display()
        ))
    })
}

/// Resolves the common settings (and the serve settings, when `serve` is given).
///
/// # Errors
/// A configuration error when the TOML file cannot be read or parsed.
pub fn resolve(
    flags: &StoreFlags,
    serve: Option<&ServeFlags>,
) -> Result<(Settings, ServeSettings), CliError> {
    let file = read_file(flags.config.as_deref())?;
    let data_dir = flags
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./psm-data"));
    let store = match flags.store.clone().or(file.store) {
        Some(url) => StoreLocation::Url(url),
        None => StoreLocation::Dir(data_dir.clone()),
    };
    let users = flags
        .users
        .clone()
        .or(file.users)
        .map(StoreLocation::Url)
        .filter(|u| *u != store);
    let jwt_secret_file = flags
        .jwt_secret_file
        .clone()
        .or(file.jwt_secret_file)
        .unwrap_or_else(|| data_dir.join("jwt-hs256.key"));
    let settings = Settings {
        store,
        users,
        jwt_secret_file,
        default_ttl: flags.default_ttl.or(file.default_ttl).unwrap_or(Secs(3600)),
        log_level: flags
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_owned()),
        log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
        data_dir,
    };
    let d = ServeSettings::default();
    let none = ServeFlags::default();
    let s = serve.unwrap_or(&none);
    let serve = ServeSettings {
        listen: s.listen.or(file.listen).unwrap_or(d.listen),
        body_limit: s.body_limit.or(file.body_limit).unwrap_or(d.body_limit),
        request_timeout: s
            .request_timeout
            .or(file.request_timeout)
            .unwrap_or(d.request_timeout),
        registration: s
            .registration
            .or(file.registration)
            .unwrap_or(d.registration),
        trust_forwarded_for: s
            .trust_forwarded_for
            .or(file.trust_forwarded_for)
            .unwrap_or(d.trust_forwarded_for),
        issuer: s.issuer.clone().or(file.issuer).unwrap_or(d.issuer),
        access_ttl: s.access_ttl.or(file.access_ttl).unwrap_or(d.access_ttl),
        idle_timeout: s
            .idle_timeout
            .or(file.idle_timeout)
            .unwrap_or(d.idle_timeout),
        session_lifetime: s
            .session_lifetime
            .or(file.session_lifetime)
            .unwrap_or(d.session_lifetime),
        max_sessions_per_user: s
            .max_sessions_per_user
            .or(file.max_sessions_per_user)
            .unwrap_or(d.max_sessions_per_user),
    };
    Ok((settings, serve))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "store = \"memory://\"\nlisten = \"127.0.0.1:9000\"\nrequest_timeout = \"2m\"\naccess_ttl = 60\nregistration = false"
        )
        .unwrap();
        let flags = StoreFlags {
            config: Some(file.path().to_owned()),
            ..StoreFlags::default()
        };
        let serve = ServeFlags {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServeFlags::default()
        };
        let (s, v) = resolve(&flags, Some(&serve)).unwrap();
        assert_eq!(s.store, StoreLocation::Url("memory://".into()));
        assert_eq!(v.listen.port(), 7000);
        assert_eq!(v.request_timeout, Secs(120));
        assert_eq!(v.access_ttl, Secs(60));
        assert!(!v.registration);
        assert_eq!(v.max_sessions_per_user, 5);
        assert_eq!(s.jwt_secret_file, PathBuf::from("./psm-data/jwt-hs256.key"));
    }

    #[test]
    fn defaults_are_the_embedded_file_store_on_loopback() {
        let (s, v) = resolve(&StoreFlags::default(), None).unwrap();
        assert_eq!(s.store, StoreLocation::Dir(PathBuf::from("./psm-data")));
        assert_eq!(s.users, None);
        assert_eq!(v.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.default_ttl, Secs(3600));
    }

    #[test]
    fn a_bad_file_is_a_configuration_error_naming_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "lisen = \"127.0.0.1:9000\"").unwrap();
        let flags = StoreFlags {
            config: Some(file.path().to_owned()),
            ..StoreFlags::default()
        };
        let e = resolve(&flags, None).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let flags = StoreFlags {
            config: Some("/nonexistent/psm.toml".into()),
            ..StoreFlags::default()
        };
        assert!(resolve(&flags, None).is_err());
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://app:s3cret@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@db/x?sslmode=require"),
            "postgres://u:***@db/x?sslmode=require"
        );
        assert_eq!(redact_url("memory://"), "memory://");
        assert_eq!(
            redact_url("redis://h:6379/0?password=hunter2&key_prefix=app:&ssl_keyfile_password=x"),
            "redis://h:6379/0?password=***&key_prefix=app:&ssl_keyfile_password=***"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=u&sslmode=require"),
            "postgres://db/x?user=u&sslmode=require"
        );
        assert!(
            !StoreLocation::Url("redis://:pw@h".into())
                .describe()
                .contains("pw")
        );
        let flags = StoreFlags {
            store: Some("redis://app:s3cret@cache:6379/0".into()),
            users: Some("postgres://u:hunter2@db/x".into()),
            ..StoreFlags::default()
        };
        let shown = format!("{flags:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("redis://app:***@cache:6379/0"), "{shown}");
    }
}
