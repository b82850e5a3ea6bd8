//! The shared connection: a fred pool, the loaded scripts, the health check and the optional
//! client-side cache.

use std::{sync::Arc, time::Duration};

use fred::{
    clients::Pool,
    interfaces::{ClientLike, HeartbeatInterface, LuaInterface},
    types::{
        Value,
        config::{
            Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig,
            UnresponsiveConfig,
        },
    },
};
use parking_lot::RwLock;
use psm_core::{Clock, Result, SystemClock};
use tokio::task::JoinHandle;

use crate::{
    client_cache::ClientCache,
    config::RedisConfig,
    error::{self, map},
    keys::Keys,
    scripts::{self, Source},
};

/// How long a reservation in a user index is protected from pruning (cluster mode).
pub(crate) const PENDING_GRACE_MS: i64 = 30_000;

/// State shared by every clone of a [`RedisStorage`](crate::RedisStorage).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) keys: Keys,
    conn: RwLock<Option<Arc<Conn>>>,
    init: tokio::sync::Mutex<()>,
    pub(crate) client_cache: Option<Arc<ClientCache>>,
}

/// One live connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) pool: Pool,
    /// (name, sha1, full text), in the order of [`scripts::ALL`].
    scripts: Vec<(&'static str, String, String)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Shared {
    pub(crate) fn new(config: RedisConfig) -> Self {
        let keys = Keys::new(&config.key_prefix);
        let client_cache = config
            .client_cache
            .map(|c| Arc::new(ClientCache::new(c.max_entries)));
        Self {
            config,
            keys,
            conn: RwLock::new(None),
            init: tokio::sync::Mutex::new(()),
            client_cache,
        }
    }

    /// The live connection, or `ProviderNotInitialized`.
    #[inline]
    pub(crate) fn conn(&self) -> Result<Arc<Conn>> {
        self.conn.read().clone().ok_or_else(error::not_initialized)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.read().is_some()
    }

    /// Connects (once; concurrent callers wait for the first).
    pub(crate) async fn initialize(self: &Arc<Self>) -> Result<()> {
        let _guard = self.init.lock().await;
        if self.is_connected() {
            return Ok(());
        }
        let pool = build_pool(&self.config)?;
        pool.init().await.map_err(|e| map(&e, "connect", false))?;
        let mut loaded = Vec::with_capacity(scripts::ALL.len());
        for s in &scripts::ALL {
            let text = scripts::full_text(s);
            // The sha is the same on every node; a node that lacks the script answers EVALSHA
            // with NOSCRIPT and gets it through EVAL (see `Conn::run`).
            let sha: String = pool
                .script_load(text.clone())
                .await
                .map_err(|e| map(&e, "script_load", true))?;
            loaded.push((s.name, sha, text));
        }
        let mut tasks = Vec::new();
        if let Some(interval) = self.config.health_check_interval {
            let p = pool.clone();
            tasks.push(tokio::spawn(async move {
                let _ = p.enable_heartbeat(interval, false).await;
            }));
        }
        if let Some(cache) = &self.client_cache {
            match cache.start(&self.config).await {
                Ok(t) => tasks.extend(t),
                Err(e) => {
                    let _ = pool.quit().await;
                    return Err(e);
                }
            }
        }
        *self.conn.write() = Some(Arc::new(Conn {
            pool,
            scripts: loaded,
            tasks,
        }));
        Ok(())
    }

    /// Disconnects; later calls fail with `ProviderNotInitialized` until `initialize`.
    pub(crate) async fn close(&self) -> Result<()> {
        let _guard = self.init.lock().await;
        let conn = self.conn.write().take();
        if let Some(cache) = &self.client_cache {
            cache.stop().await;
        }
        if let Some(conn) = conn {
            let _ = conn.pool.quit().await;
        }
        Ok(())
    }
}

impl Conn {
    /// Whether every pooled client is connected (used to tell a timeout from an outage).
    pub(crate) fn healthy(&self) -> bool {
        self.pool.clients().iter().all(|c| c.is_connected())
    }

    /// Maps a fred error of `op`.
    pub(crate) fn err(&self, e: &fred::error::Error, op: &'static str) -> psm_core::Error {
        map(e, op, self.healthy())
    }

    /// Runs `script` with EVALSHA, falling back to EVAL when the server lost its script cache.
    pub(crate) async fn run(
        &self,
        script: &Source,
        keys: Vec<String>,
        args: Vec<Value>,
        op: &'static str,
    ) -> Result<Value> {
        let Some((_, sha, text)) = self.scripts.iter().find(|(n, _, _)| *n == script.name) else {
            return Err(error::reply(op));
        };
        match self
            .pool
            .evalsha::<Value, _, _, _>(sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if e.details().starts_with("NOSCRIPT") => self
                .pool
                .eval::<Value, _, _, _>(text.as_str(), keys, args)
                .await
                .map_err(|e| self.err(&e, op)),
            Err(e) => Err(self.err(&e, op)),
        }
    }
}

/// fred's configuration for `config`.
pub(crate) fn fred_config(config: &RedisConfig) -> Result<Config> {
    let server = if config.cluster {
        ServerConfig::new_clustered(vec![(config.host.clone(), config.port)])
    } else {
        ServerConfig::new_centralized(config.host.clone(), config.port)
    };
    let mut fc = Config {
        fail_fast: true,
        username: config.username.clone(),
        password: config.password.clone(),
        server,
        database: (!config.cluster && config.db != 0).then_some(config.db),
        ..Config::default()
    };
    if config.ssl {
        fc.tls = Some(crate::tls::build_tls(config)?);
    }
    Ok(fc)
}

/// fred's connection settings: connect timeout, retries and unresponsive detection.
pub(crate) fn connection_config(config: &RedisConfig) -> ConnectionConfig {
    ConnectionConfig {
        connection_timeout: config.socket_connect_timeout,
        internal_command_timeout: config.socket_timeout,
        max_command_attempts: if config.retry_on_timeout { 2 } else { 1 },
        unresponsive: UnresponsiveConfig {
            max_timeout: Some(config.socket_timeout),
            interval: Duration::from_millis(200).min(config.socket_timeout),
        },
        ..ConnectionConfig::default()
    }
}

/// Reconnect forever, every 100 ms, so the store recovers quickly once the server is back.
pub(crate) fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_constant(0, 100)
}

fn build_pool(config: &RedisConfig) -> Result<Pool> {
    let perf = PerformanceConfig {
        default_command_timeout: config.socket_timeout,
        ..PerformanceConfig::default()
    };
    Pool::new(
        fred_config(config)?,
        Some(perf),
        Some(connection_config(config)),
        Some(reconnect_policy()),
        config.pool_size,
    )
    .map_err(|e| map(&e, "configure", false))
}

/// Now as unix microseconds, from the system clock (Redis keeps time for this provider).
#[inline]
pub(crate) fn now_micros() -> i64 {
    SystemClock.now().as_unix_micros()
}
