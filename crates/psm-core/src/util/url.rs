//! Provider URLs (`memory://`, `file:///path`, `redis://`, `rediss://`, `postgres://`) parsed into a
//! scheme and a provider configuration map.

use std::{borrow::Cow, fmt};

use ::url::{Host, Url, form_urlencoded};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::{Error, ErrorKind, Result};

/// The providers a URL can name. Always compiled; whether the provider is available depends on the
/// facade's Cargo feature, see [`ProviderScheme::feature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderScheme {
    /// `memory://`
    Memory,
    /// `file://`
    File,
    /// `redis://`
    Redis,
    /// `rediss://` (Redis over TLS)
    Rediss,
    /// `postgres://` or `postgresql://`
    Postgres,
}

impl ProviderScheme {
    /// The scheme for a URL scheme name (ASCII case-insensitive), or `None` when psm has no such provider.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        [
            ("memory", Self::Memory),
            ("file", Self::File),
            ("redis", Self::Redis),
            ("rediss", Self::Rediss),
            ("postgres", Self::Postgres),
            ("postgresql", Self::Postgres),
        ]
        .into_iter()
        .find_map(|(name, s)| name.eq_ignore_ascii_case(scheme).then_some(s))
    }

    /// The canonical URL scheme: `"memory"`, `"file"`, `"redis"`, `"rediss"` or `"postgres"`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::Redis => "redis",
            Self::Rediss => "rediss",
            Self::Postgres => "postgres",
        }
    }

    /// The provider's registered name: `"memory"`, `"file"`, `"redis"` (for both Redis schemes) or
    /// `"postgres"`.
    pub fn provider_name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::Redis | Self::Rediss => "redis",
            Self::Postgres => "postgres",
        }
    }

    /// The facade's Cargo feature that compiles the provider in.
    pub fn feature(self) -> &'static str {
        self.provider_name()
    }
}

impl fmt::Display for ProviderScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// A parsed provider URL: which provider, and its configuration keys.
///
/// `Debug` hides every value whose key mentions a password, secret or token, and the password inside
/// `url`.
#[derive(Clone, PartialEq)]
pub struct ProviderUrl {
    provider: ProviderScheme,
    config: Map<String, Value>,
}

impl ProviderUrl {
    /// The provider the URL names.
    pub fn provider(&self) -> ProviderScheme {
        self.provider
    }

    /// The configuration keys (see [`parse_provider_url`] for the mapping).
    pub fn config(&self) -> &Map<String, Value> {
        &self.config
    }

    /// Consumes the URL into its configuration keys.
    pub fn into_config(self) -> Map<String, Value> {
        self.config
    }

    /// Consumes the URL into its provider and configuration keys.
    pub fn into_parts(self) -> (ProviderScheme, Map<String, Value>) {
        (self.provider, self.config)
    }
}

impl fmt::Debug for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a Map<String, Value>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for (k, v) in self.0 {
                    if is_secret_key(k) {
                        m.entry(k, &"<redacted>");
                    } else if let (true, Value::String(s)) = (k == "url", v) {
                        m.entry(k, &redact_url(s));
                    } else {
                        m.entry(k, v);
                    }
                }
                m.finish()
            }
        }
        f.debug_struct("ProviderUrl")
            .field("provider", &self.provider)
            .field("config", &Redacted(&self.config))
            .finish()
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|s| k.contains(s))
}

fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut u) if u.password().is_some() => match u.set_password(Some("redacted")) {
            Ok(()) => u.into(),
            Err(()) => "<redacted>".to_owned(),
        },
        Ok(u) => u.into(),
        Err(_) => "<redacted>".to_owned(),
    }
}

/// Parses a provider URL into its provider and configuration keys.
///
/// | URL | keys |
/// | --- | --- |
/// | `memory://` | none |
/// | `file:///abs/path`, `file://localhost/abs/path` | `storage_dir` (percent-decoded) |
/// | `file://./rel/path`, `file://../rel/path` | `storage_dir` (the relative path as written, percent-decoded) |
/// | `redis://user:pass@host:port/db` | `host`, `port`, `db`, `username`, `password`, `url` |
/// | `rediss://…` | the same plus `ssl: true` |
/// | `postgres://user:pass@host:port/dbname` (or `postgresql://`) | `host`, `port`, `dbname`, `user`, `password`, `url` |
///
/// - Components absent from the URL are absent from the map, so the provider's own defaults apply.
/// - User names and passwords are percent-decoded. `url` is the URL without its query, for adapters
///   that hand it to their driver; it keeps the password (still percent-encoded).
/// - Each query parameter becomes a key. `true` and `false` become booleans, integers in canonical form
///   (`5`, `-3`, not `05` or `+3`) become numbers, and everything else stays a string.
/// - A repeated query key, an empty key, or a key that the URL already sets (such as `host`) is an error,
///   since no choice between the values is obviously right.
/// - A fragment (`#…`) is an error; a `#` in a password must be written `%23`.
/// - A database named `.` or `..` cannot be written: URL parsing drops such path segments, even
///   percent-encoded.
///
/// ```
/// use psm_core::util::{ProviderScheme, parse_provider_url};
///
/// let u = parse_provider_url("rediss://app:p%40ss@cache.local:6380/2?key_prefix=psm&pool_size=8")?;
/// assert_eq!(u.provider(), ProviderScheme::Rediss);
/// assert_eq!(u.config()["password"], "p@ss");
/// assert_eq!(u.config()["db"], 2);
/// assert_eq!(u.config()["ssl"], true);
/// assert_eq!(u.config()["pool_size"], 8);
/// assert!(!format!("{u:?}").contains("p%40ss"));
/// # Ok::<(), psm_core::Error>(())
/// ```
///
/// # Errors
/// - [`ErrorKind::ProviderNotSupported`] for a scheme psm has no provider for (the message names it);
/// - [`ErrorKind::ProviderConfiguration`] for anything malformed. Messages never quote the URL, so a
///   password cannot leak through them.
pub fn parse_provider_url(url: &str) -> Result<ProviderUrl> {
    // The same trimming the URL standard applies: C0 controls and spaces at either end.
    let url = url.trim_matches(|c: char| c <= ' ');
    let (scheme, rest) = url.split_once(':').ok_or_else(no_scheme)?;
    if !is_scheme(scheme) {
        return Err(no_scheme());
    }
    let provider = ProviderScheme::from_scheme(scheme).ok_or_else(|| unsupported(scheme))?;
    let Some(after_slashes) = rest.strip_prefix("//") else {
        return Err(config_error("provider url must have the form scheme://..."));
    };
    if provider == ProviderScheme::File && is_relative_path(after_slashes) {
        return relative_file_url(after_slashes);
    }
    let parsed = Url::parse(url).map_err(|e| {
        config_error("provider url is malformed")
            .with_detail("scheme", provider)
            .with_source(e)
    })?;
    if parsed.fragment().is_some() {
        return Err(config_error(
            "provider url may not have a fragment ('#' in a password must be written %23)",
        ));
    }
    let mut config = match provider {
        ProviderScheme::Memory => memory_config(&parsed)?,
        ProviderScheme::File => file_config(&parsed)?,
        ProviderScheme::Redis | ProviderScheme::Rediss => {
            redis_config(&parsed, provider == ProviderScheme::Rediss)?
        }
        ProviderScheme::Postgres => postgres_config(&parsed)?,
    };
    add_query(&mut config, parsed.query().unwrap_or(""))?;
    Ok(ProviderUrl { provider, config })
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn is_relative_path(s: &str) -> bool {
    let path = s.split(['?', '#']).next().unwrap_or("");
    [".", ".."].contains(&path) || path.starts_with("./") || path.starts_with("../")
}

fn memory_config(u: &Url) -> Result<Map<String, Value>> {
    let has_host = u.host_str().is_some_and(|h| !h.is_empty());
    if has_host || u.port().is_some() || has_credentials(u) || !matches!(u.path(), "" | "/") {
        return Err(config_error(
            "memory url takes no host, port, path or credentials",
        ));
    }
    Ok(Map::new())
}

fn file_config(u: &Url) -> Result<Map<String, Value>> {
    // The url crate already turns `localhost` into an empty host for file URLs.
    if u.host_str().is_some_and(|h| !h.is_empty()) {
        return Err(config_error(
            "file url host must be empty or localhost: use file:///absolute/path or file://./relative/path",
        ));
    }
    if has_credentials(u) {
        return Err(config_error("file url takes no credentials"));
    }
    let path = decode(u.path(), "file url path")?;
    // On Windows `file:///C:/data` names `C:/data`; elsewhere the leading slash is part of the path.
    let path = match path.strip_prefix('/') {
        Some(rest) if cfg!(windows) && rest.as_bytes().get(1) == Some(&b':') => rest,
        _ => &path,
    };
    storage_dir(path)
}

fn relative_file_url(after_slashes: &str) -> Result<ProviderUrl> {
    let (path_and_query, fragment) = match after_slashes.split_once('#') {
        Some((before, after)) => (before, Some(after)),
        None => (after_slashes, None),
    };
    if fragment.is_some() {
        return Err(config_error("provider url may not have a fragment"));
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut config = storage_dir(&decode(path, "file url path")?)?;
    add_query(&mut config, query)?;
    Ok(ProviderUrl {
        provider: ProviderScheme::File,
        config,
    })
}

fn storage_dir(path: &str) -> Result<Map<String, Value>> {
    if path.is_empty() || path == "/" {
        return Err(config_error("file url needs a directory path"));
    }
    if path.contains('\0') {
        return Err(config_error(
            "file url path may not contain a nul character",
        ));
    }
    let mut config = Map::new();
    config.insert("storage_dir".into(), path.into());
    Ok(config)
}

fn redis_config(u: &Url, tls: bool) -> Result<Map<String, Value>> {
    let mut config = server_config(u, "username")?;
    match u.path() {
        "" | "/" => {}
        path => {
            let db = path[1..]
                .parse::<u32>()
                .ok()
                .filter(|_| path[1..].bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    config_error("redis url path must be a database number such as /0")
                })?;
            config.insert("db".into(), db.into());
        }
    }
    if tls {
        config.insert("ssl".into(), true.into());
    }
    Ok(config)
}

fn postgres_config(u: &Url) -> Result<Map<String, Value>> {
    let mut config = server_config(u, "user")?;
    let name = u.path().strip_prefix('/').unwrap_or(u.path());
    if name.contains('/') {
        return Err(config_error(
            "postgres url path must be a database name (write '/' inside it as %2F)",
        ));
    }
    let name = decode(name, "postgres database name")?;
    if !name.is_empty() {
        config.insert("dbname".into(), name.into_owned().into());
    }
    Ok(config)
}

/// `host`, `port`, the user under `user_key`, `password` and `url`, each only when present.
fn server_config(u: &Url, user_key: &str) -> Result<Map<String, Value>> {
    let mut config = Map::new();
    let host = match u.host() {
        Some(Host::Domain(d)) if !d.is_empty() => Some(d.to_owned()),
        Some(Host::Ipv4(a)) => Some(a.to_string()),
        // Without brackets, as drivers expect a bare address.
        Some(Host::Ipv6(a)) => Some(a.to_string()),
        _ => None,
    };
    if let Some(host) = host {
        config.insert("host".into(), host.into());
    }
    if let Some(port) = u.port() {
        config.insert("port".into(), port.into());
    }
    if !u.username().is_empty() {
        config.insert(
            user_key.into(),
            decode(u.username(), "user name")?.into_owned().into(),
        );
    }
    if let Some(password) = u.password() {
        config.insert(
            "password".into(),
            decode(password, "password")?.into_owned().into(),
        );
    }
    let mut bare = u.clone();
    bare.set_query(None);
    config.insert("url".into(), String::from(bare).into());
    Ok(config)
}

fn has_credentials(u: &Url) -> bool {
    !u.username().is_empty() || u.password().is_some()
}

fn add_query(config: &mut Map<String, Value>, query: &str) -> Result<()> {
    let mut from_query = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key.is_empty() {
            return Err(config_error(
                "provider url has a query parameter without a name",
            ));
        }
        if config.contains_key(key.as_ref()) {
            return Err(
                config_error("query parameter repeats a setting the url already makes")
                    .with_detail("key", short(&key)),
            );
        }
        if from_query
            .insert(key.clone().into_owned(), query_value(&value))
            .is_some()
        {
            return Err(config_error("query parameter is repeated").with_detail("key", short(&key)));
        }
    }
    config.extend(from_query);
    Ok(())
}

fn query_value(v: &str) -> Value {
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        // Only canonical integers become numbers, so `007` or `+1` stay exactly as written.
        _ => match (v.parse::<i64>(), v.parse::<u64>()) {
            (Ok(n), _) if n.to_string() == v => n.into(),
            (_, Ok(n)) if n.to_string() == v => n.into(),
            _ => Value::String(v.to_owned()),
        },
    }
}

fn decode<'a>(s: &'a str, what: &'static str) -> Result<Cow<'a, str>> {
    percent_decode_str(s).decode_utf8().map_err(|_| {
        config_error("provider url component is not utf-8 after percent-decoding")
            .with_detail("component", what)
    })
}

/// A query key cut to 64 characters for an error detail.
fn short(key: &str) -> String {
    key.chars().take(64).collect()
}

fn no_scheme() -> Error {
    config_error("provider url must start with a scheme such as redis://")
}

fn unsupported(scheme: &str) -> Error {
    let scheme: String = scheme
        .chars()
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    Error::new(
        ErrorKind::ProviderNotSupported,
        format!("provider url scheme '{scheme}' is not supported"),
    )
    .with_detail("scheme", scheme)
}

fn config_error(message: &'static str) -> Error {
    Error::new(ErrorKind::ProviderConfiguration, message)
}

#[cfg(test)]
mod tests;
