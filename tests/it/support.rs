//! Servers and stores for the end-to-end tests: a file store in a temp dir, or Redis (fresh key
//! prefix) plus PostgreSQL (fresh schema) from `PSM_REDIS_URL` / `PSM_POSTGRES_URL`.

use std::path::Path;

use psm::{
    OsRandom, RandomSource,
    auth::{AuthConfig, RegisterRequest},
    jwt::TokenConfig,
    postgres::{PostgresConfig, PostgresStorage},
};
use psm_cli::{
    keys,
    settings::{ServeFlags, ServeSettings, Settings, StoreFlags, resolve},
    stores::Stores,
};
use serde_json::{Value, json};

/// A server variable, or a loud failure naming it (STYLE rule 20).
pub(crate) fn server_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "{var} is not set: run the tests through `cargo xtask ci`, or export the servers with \
             `eval \"$(cargo xtask services env)\"`"
        ),
    }
}

/// `base` with `key=value` appended to its query.
pub(crate) fn with_param(base: &str, key: &str, value: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{key}={value}")
}

/// A fresh lowercase name.
pub(crate) fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    OsRandom.fill(&mut bytes).unwrap();
    let tail: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{}_{tail}", std::process::id())
}

/// Where a test keeps its data.
pub(crate) struct Backing {
    pub(crate) flags: StoreFlags,
    redis_prefix: Option<String>,
    pg_schema: Option<String>,
    _dir: tempfile::TempDir,
}

impl Backing {
    /// The embedded default: the file store (and signing key) in a temp dir.
    pub(crate) fn file() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("psm-data");
        Self {
            flags: StoreFlags {
                data_dir: Some(data),
                ..StoreFlags::default()
            },
            redis_prefix: None,
            pg_schema: None,
            _dir: dir,
        }
    }

    /// Sessions, tokens and cache on Redis under a fresh prefix; users on PostgreSQL in a fresh schema.
    pub(crate) fn servers() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("{}:", unique("psme2e"));
        let schema = unique("psm_e2e");
        let redis = with_param(&server_url("PSM_REDIS_URL"), "key_prefix", &prefix);
        let pg = with_param(&server_url("PSM_POSTGRES_URL"), "schema", &schema);
        Self {
            flags: StoreFlags {
                store: Some(redis),
                users: Some(pg),
                data_dir: Some(dir.path().join("psm-data")),
                ..StoreFlags::default()
            },
            redis_prefix: Some(prefix),
            pg_schema: Some(schema),
            _dir: dir,
        }
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        self.flags.data_dir.as_deref().unwrap()
    }

    /// The resolved settings, listening on a free loopback port.
    pub(crate) fn settings(&self) -> (Settings, ServeSettings) {
        let serve = ServeFlags {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServeFlags::default()
        };
        resolve(&self.flags, Some(&serve)).unwrap()
    }

    /// Creates an administrator through the stores (as `psm users create --admin` does); the
    /// server must not be running when the store is the file store (it holds the lock).
    pub(crate) async fn create_admin(&self, email: &str, password: &str) {
        let (settings, _) = self.settings();
        let stores = Stores::open(&settings, None).await.unwrap();
        let keys = keys::load_or_create(&settings.jwt_secret_file).unwrap();
        let auth = stores
            .auth(keys, AuthConfig::default(), TokenConfig::new("psm", "psm"))
            .unwrap();
        auth.register(RegisterRequest {
            username: "admin".into(),
            email: email.into(),
            password: password.into(),
            permissions: psm::PermissionList::parse(["psm:admin"]).unwrap(),
        })
        .await
        .unwrap();
        stores.close().await.unwrap();
    }

    /// Removes what the test left on the servers.
    pub(crate) async fn cleanup(&self) {
        if let Some(prefix) = &self.redis_prefix {
            purge_redis_prefix(&server_url("PSM_REDIS_URL"), prefix).await;
        }
        if let Some(schema) = &self.pg_schema {
            let pg = PostgresStorage::connect(
                PostgresConfig::from_url(&server_url("PSM_POSTGRES_URL")).unwrap(),
            )
            .await
            .unwrap();
            pg.database()
                .execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"), &[])
                .await
                .unwrap();
            pg.close().await.unwrap();
        }
    }
}

/// A JSON HTTP client bound to one server.
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with an optional bearer token and JSON body; returns status and body
    /// (`null` for an empty body).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        };
        (status, value)
    }

    /// Logs in; returns the token pair as JSON.
    pub(crate) async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// The string at `key` of `value`.
pub(crate) fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {value}"))
}

/// Removes every key under `prefix` on the standalone server `url` (sessions, indexes, token
/// state with its epochs, cache): `flush_all_sessions` deliberately leaves token epochs alone.
pub(crate) async fn purge_redis_prefix(url: &str, prefix: &str) {
    use fred::prelude::{ClientLike, Config, KeysInterface};
    use futures::StreamExt;
    let client = fred::clients::Client::new(Config::from_url(url).unwrap(), None, None, None);
    client.init().await.unwrap();
    let mut stream = client.scan_buffered(format!("{prefix}*"), Some(1000), None);
    let mut keys = Vec::new();
    while let Some(key) = stream.next().await {
        keys.push(key.unwrap());
    }
    drop(stream);
    for key in keys {
        let _: u64 = client.unlink(key).await.unwrap();
    }
    client.quit().await.unwrap();
}
