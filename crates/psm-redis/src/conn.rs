//! The shared connection: a fred pool, the loaded scripts, the health check and the optional
//! client-side cache.
//!
//! # Failing fast without a timer per command
//! A per-command timer (fred's `default_command_timeout`, or `tokio::time::timeout`) costs a third
//! of the throughput of a bare client on the check path. Instead every command is sent with fred's
//! per-command `fail_fast` option and the pool runs fred's unresponsive-connection detection:
//!
//! - while a pooled client is disconnected or reconnecting, a command fails at once
//!   (`ProviderConnection`); psm also keeps a "down" flag per client, set by fred's error
//!   broadcast the moment a connection drops and cleared when it is re-established, so no command
//!   is queued behind a pending reconnect;
//! - a command in flight when its connection closes fails at once (fail-fast commands are never
//!   kept for a replay by fred);
//! - a connection that stays silent with a command in flight for `socket_timeout` minus one check
//!   interval is closed by fred, which fails that command: a silently dead server is noticed within
//!   `socket_timeout`;
//! - TCP keepalive is on, and the first reconnect attempt starts after 1 ms.
//!
//! With `retry_on_timeout`, psm itself retries an idempotent call once when its connection broke
//! while the call was in flight, after waiting (at most half of `socket_timeout`) for a reconnect.
//! Scans additionally bound each page with a timer (they are not on the check path).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::{Client, Pool, WithOptions},
    error::{Error as FredError, ErrorKind as FredKind},
    interfaces::{ClientLike, EventInterface, KeysInterface, LuaInterface},
    socket2::TcpKeepalive,
    types::{ClusterHash, CustomCommand},
    types::{
        Key, Value,
        config::{
            Config, ConnectionConfig, Options, PerformanceConfig, ReconnectPolicy, ServerConfig,
            TcpConfig, UnresponsiveConfig,
        },
    },
};
use parking_lot::RwLock;
use psm_core::{Clock, Error, ErrorKind, Result, SystemClock};
use tokio::task::JoinHandle;

use crate::{
    PROVIDER,
    client_cache::ClientCache,
    config::RedisConfig,
    error::{self, map},
    keys::Keys,
    scripts::{self, Source},
};

/// How long a reservation in a user index is protected from pruning (cluster mode), and how long
/// an eviction mark keeps its victim from counting towards the limit.
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

/// One pooled client, whether psm saw its connection drop, and how often it reconnected.
#[derive(Debug)]
struct Slot {
    client: WithOptions<Client>,
    down: Arc<AtomicBool>,
    reconnects: Arc<AtomicU64>,
}

impl Slot {
    fn up(&self) -> bool {
        !self.down.load(Ordering::Acquire) && self.client.is_connected()
    }
}

/// A picked pooled client: its index and reconnect count when picked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picked {
    index: usize,
    reconnects: u64,
}

/// A loaded script.
#[derive(Debug)]
struct Loaded {
    name: &'static str,
    sha: fred::bytes_utils::Str,
    text: fred::bytes_utils::Str,
}

/// One live connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) pool: Pool,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    scripts: Vec<Loaded>,
    tasks: Vec<JoinHandle<()>>,
    pub(crate) timeout: Duration,
    retry: bool,
    cluster: bool,
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
        let client_cache = config.client_cache.map(|c| Arc::new(ClientCache::new(&c)));
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
        let connect = tokio::time::timeout(
            self.config.socket_connect_timeout + self.config.socket_timeout,
            pool.init(),
        )
        .await;
        match connect {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                return Err(map(&e, "connect", false));
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(unreachable("connect"));
            }
        }
        let opts = Options {
            fail_fast: true,
            ..Options::default()
        };
        let mut tasks = Vec::new();
        let slots: Box<[Slot]> = pool
            .clients()
            .iter()
            .map(|c| {
                let down = Arc::new(AtomicBool::new(false));
                let reconnects = Arc::new(AtomicU64::new(0));
                tasks.extend(watch_client(c, &down, &reconnects));
                Slot {
                    client: c.with_options(&opts),
                    down,
                    reconnects,
                }
            })
            .collect();
        let mut conn = Conn {
            pool,
            slots,
            next: AtomicUsize::new(0),
            scripts: Vec::with_capacity(scripts::ALL.len()),
            tasks,
            timeout: self.config.socket_timeout,
            retry: self.config.retry_on_timeout,
            cluster: self.config.cluster,
        };
        for s in &scripts::ALL {
            let text = scripts::full_text(s);
            // The sha is the same on every node; a node that lacks the script answers EVALSHA
            // with NOSCRIPT and gets it through EVAL (see `Conn::run`).
            let loaded = conn
                .bounded(
                    "script_load",
                    conn.pool.script_load::<String, _>(text.clone()),
                )
                .await;
            let sha = match loaded {
                Ok(sha) => sha,
                Err(e) => {
                    let _ = conn.pool.quit().await;
                    return Err(e);
                }
            };
            conn.scripts.push(Loaded {
                name: s.name,
                sha: sha.into(),
                text: text.into(),
            });
        }
        if let Some(interval) = self.config.health_check_interval {
            for slot in conn.slots.iter() {
                conn.tasks
                    .push(spawn_heartbeat(slot.client.clone(), interval, conn.timeout));
            }
        }
        if let Some(cache) = &self.client_cache {
            match cache.start(&self.config).await {
                Ok(t) => conn.tasks.extend(t),
                Err(e) => {
                    let _ = conn.pool.quit().await;
                    return Err(e);
                }
            }
        }
        *self.conn.write() = Some(Arc::new(conn));
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
            let _ = tokio::time::timeout(self.config.socket_timeout, conn.pool.quit()).await;
        }
        Ok(())
    }
}

/// Keeps `down` in step with the connection of `client`: set the moment fred reports a broken
/// connection, cleared when fred has connected again.
fn watch_client(
    client: &Client,
    down: &Arc<AtomicBool>,
    reconnects: &Arc<AtomicU64>,
) -> [JoinHandle<()>; 2] {
    let mut errors = client.error_rx();
    let d = Arc::clone(down);
    let c = client.clone();
    let on_error = tokio::spawn(async move {
        loop {
            match errors.recv().await {
                Ok(_) => d.store(true, Ordering::Release),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    d.store(!c.is_connected(), Ordering::Release);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut events = client.reconnect_rx();
    let (d, n) = (Arc::clone(down), Arc::clone(reconnects));
    let on_reconnect = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    n.fetch_add(1, Ordering::AcqRel);
                    d.store(false, Ordering::Release);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    [on_error, on_reconnect]
}

/// PINGs `client` every `interval` so an idle connection is checked too (the ping itself is
/// bounded by the unresponsive detection).
fn spawn_heartbeat(
    client: WithOptions<Client>,
    interval: Duration,
    bound: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let _ = tokio::time::timeout(bound, client.ping::<()>(None)).await;
        }
    })
}

/// `ProviderConnection` for a call that found no usable connection.
pub(crate) fn unreachable(op: &'static str) -> Error {
    Error::new(ErrorKind::ProviderConnection, "redis server unreachable")
        .with_detail("provider", PROVIDER)
        .with_detail("operation", op)
}

/// Whether `e` says the connection broke (so the command may or may not have run).
fn broken_connection(e: &FredError) -> bool {
    matches!(e.kind(), FredKind::IO | FredKind::Canceled) || error::lost_connection(e.details())
}

/// Whether a call may be retried once after a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The call is idempotent (or made so by a request token): retry with `retry_on_timeout`.
    Idempotent,
    /// Never retried: a second run could report a different outcome.
    Never,
}

impl Conn {
    /// A connected pooled client (round robin), or `ProviderConnection` at once when every
    /// pooled connection is down: nothing waits for a reconnect.
    #[inline]
    pub(crate) fn client(&self, op: &'static str) -> Result<&WithOptions<Client>> {
        self.pick(op).map(|(_, c)| c)
    }

    /// [`client`](Self::client), with what a retry needs to know about the pick.
    #[inline]
    pub(crate) fn pick(&self, op: &'static str) -> Result<(Picked, &WithOptions<Client>)> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let index = (start + i) % n;
            let slot = &self.slots[index];
            if !slot.down.load(Ordering::Acquire) {
                let picked = Picked {
                    index,
                    reconnects: slot.reconnects.load(Ordering::Acquire),
                };
                return Ok((picked, &slot.client));
            }
        }
        Err(unreachable(op))
    }

    /// Whether every pooled client is connected (used to tell a timeout from an outage).
    pub(crate) fn healthy(&self) -> bool {
        self.slots.iter().all(Slot::up)
    }

    /// Maps a fred error of `op`.
    pub(crate) fn err(&self, e: &FredError, op: &'static str) -> Error {
        map(e, op, self.healthy())
    }

    /// After a first attempt on `picked` failed with `e`: a client for the second attempt when
    /// the call should be sent again (its connection broke, `retry_on_timeout` is on, the call is
    /// idempotent, and within half of `socket_timeout` the picked client reconnected or another
    /// pooled client is up), else the mapped error.
    #[cold]
    pub(crate) async fn retry_after(
        &self,
        e: &FredError,
        op: &'static str,
        retry: Retry,
        picked: Picked,
    ) -> Result<&WithOptions<Client>> {
        if !self.retry || retry == Retry::Never || !broken_connection(e) {
            return Err(self.err(e, op));
        }
        let deadline = tokio::time::Instant::now() + self.timeout / 2;
        loop {
            let failed = &self.slots[picked.index];
            if failed.reconnects.load(Ordering::Acquire) > picked.reconnects && failed.up() {
                return Ok(&failed.client);
            }
            if let Some(other) = self
                .slots
                .iter()
                .enumerate()
                .find(|(i, s)| *i != picked.index && s.up())
            {
                return Ok(&other.1.client);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.err(e, op));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs `fut` within `socket_timeout` (for calls that are not on the check path).
    pub(crate) async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, FredError>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| self.err(&e, op)),
            Err(_) if self.healthy() => Err(Error::new(
                ErrorKind::OperationTimeout,
                "redis command timed out",
            )
            .with_detail("provider", PROVIDER)
            .with_detail("operation", op)),
            Err(_) => Err(unreachable(op)),
        }
    }

    /// Runs `script` with EVALSHA, falling back to EVAL when the server lost its script cache.
    /// `args` builds the keys and arguments; it is called again only for a fallback or a retry,
    /// so nothing is cloned on the common path.
    pub(crate) async fn run(
        &self,
        script: &Source,
        op: &'static str,
        retry: Retry,
        args: impl Fn() -> (Vec<Key>, Vec<Value>),
    ) -> Result<Value> {
        let Some(s) = self.scripts.iter().find(|l| l.name == script.name) else {
            return Err(error::reply(op));
        };
        let (picked, client) = match self.pick(op) {
            Ok(p) => p,
            Err(e) => {
                tokio::task::yield_now().await;
                return Err(e);
            }
        };
        let e = match self.run_on(client, s, &args).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let client = self.retry_after(&e, op, retry, picked).await?;
        self.run_on(client, s, &args)
            .await
            .map_err(|e| self.err(&e, op))
    }

    /// EVALSHA (EVAL on NOSCRIPT) as custom commands, so fred's per-command options (fail fast)
    /// apply; in cluster mode the first key picks the node.
    async fn run_on<C: ClientLike>(
        &self,
        client: &C,
        s: &Loaded,
        args: &impl Fn() -> (Vec<Key>, Vec<Value>),
    ) -> std::result::Result<Value, FredError> {
        /// The command routed by the slot of its first key (fred hashes custom commands by
        /// their first string argument, which would be the sha).
        fn command(
            name: &'static str,
            head: &fred::bytes_utils::Str,
            (keys, args): (Vec<Key>, Vec<Value>),
        ) -> (CustomCommand, Vec<Value>) {
            let slot = keys
                .first()
                .map(|k| fred::util::redis_keyslot(k.as_bytes()))
                .unwrap_or(0);
            let mut v = Vec::with_capacity(2 + keys.len() + args.len());
            v.push(Value::String(head.clone()));
            v.push(Value::Integer(keys.len() as i64));
            v.extend(keys.into_iter().map(|k| Value::Bytes(k.into_bytes())));
            v.extend(args);
            (
                CustomCommand::new_static(name, ClusterHash::Custom(slot), false),
                v,
            )
        }
        let (cmd, argv) = command("EVALSHA", &s.sha, args());
        match client.custom::<Value, Value>(cmd, argv).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let (cmd, argv) = command("EVAL", &s.text, args());
                client.custom::<Value, Value>(cmd, argv).await
            }
            r => r,
        }
    }

    /// A fail-fast client whose commands go to `server` (one layer of options: nested
    /// `WithOptions` would let the inner layer drop the node).
    pub(crate) fn on_node(
        &self,
        op: &'static str,
        server: &fred::types::config::Server,
    ) -> Result<WithOptions<Client>> {
        let client: &Client = self.client(op)?;
        Ok(client.with_options(&Options {
            cluster_node: Some(server.clone()),
            fail_fast: true,
            ..Options::default()
        }))
    }

    /// Every key matching `pattern` (SCAN pages of 1,000 on the server, or on every master in
    /// cluster mode), each page bounded by `socket_timeout`. Never `KEYS`.
    pub(crate) async fn scan(&self, pattern: &str, op: &'static str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let client = self.client(op)?;
        let nodes: Vec<Option<fred::types::config::Server>> = if self.cluster {
            let masters = fred::interfaces::ClusterInterface::cached_cluster_state(client)
                .map(|s| s.unique_primary_nodes())
                .unwrap_or_default();
            if masters.is_empty() {
                return Err(unreachable(op));
            }
            masters.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for node in nodes {
            let mut cursor = "0".to_owned();
            loop {
                let client = self.client(op)?;
                let page = match &node {
                    Some(server) => {
                        let c = self.on_node(op, server)?;
                        self.bounded(
                            op,
                            c.scan_page::<(String, Vec<Value>), _, _>(
                                cursor.clone(),
                                pattern,
                                Some(1000),
                                None,
                            ),
                        )
                        .await?
                    }
                    None => {
                        self.bounded(
                            op,
                            client.scan_page::<(String, Vec<Value>), _, _>(
                                cursor.clone(),
                                pattern,
                                Some(1000),
                                None,
                            ),
                        )
                        .await?
                    }
                };
                let (next, keys) = page;
                for k in keys {
                    match k {
                        Value::String(s) => out.push(s.to_string()),
                        Value::Bytes(b) => {
                            if let Ok(s) = String::from_utf8(b.to_vec()) {
                                out.push(s);
                            }
                        }
                        _ => return Err(error::reply(op)),
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// UNLINKs `keys` (one key per command in cluster mode, batches of 512 otherwise); returns
    /// how many existed.
    pub(crate) async fn unlink_all(&self, keys: Vec<String>, op: &'static str) -> Result<u64> {
        let mut removed = 0u64;
        if self.cluster {
            for chunk in keys.chunks(256) {
                let dels = chunk.iter().map(|k| async move {
                    self.bounded(op, self.client(op)?.unlink::<u64, _>(k.as_str()))
                        .await
                });
                for r in futures::future::join_all(dels).await {
                    removed += r?;
                }
            }
        } else {
            for chunk in keys.chunks(512) {
                let n: u64 = self
                    .bounded(op, self.client(op)?.unlink(chunk.to_vec()))
                    .await?;
                removed += n;
            }
        }
        Ok(removed)
    }
}

/// Calls `$body` (an expression using the client `$c`) once, and once more after a reconnect when
/// the connection broke and the call is idempotent. No timer on the common path.
macro_rules! call {
    ($conn:expr, $op:expr, |$c:ident| $body:expr) => {{
        let conn: &$crate::conn::Conn = $conn;
        match conn.pick($op) {
            // Failing at once must still yield: a caller retrying in a loop would otherwise
            // starve the tasks that notice the reconnect.
            Err(e) => {
                tokio::task::yield_now().await;
                Err(e)
            }
            Ok((picked, first)) => {
                let first = {
                    let $c = first;
                    $body.await
                };
                match first {
                    Ok(v) => Ok(v),
                    Err(e) => match conn
                        .retry_after(&e, $op, $crate::conn::Retry::Idempotent, picked)
                        .await
                    {
                        Ok($c) => $body.await.map_err(|e| conn.err(&e, $op)),
                        Err(err) => Err(err),
                    },
                }
            }
        }
    }};
}
pub(crate) use call;

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

/// How often fred checks connections for an unanswered command: a tenth of `socket_timeout`,
/// between 10 and 100 ms.
pub(crate) fn unresponsive_interval(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// fred's connection settings: connect timeout, unresponsive detection (a command unanswered for
/// `socket_timeout` closes its connection), TCP keepalive.
pub(crate) fn connection_config(config: &RedisConfig) -> ConnectionConfig {
    let interval = unresponsive_interval(config.socket_timeout);
    ConnectionConfig {
        connection_timeout: config.socket_connect_timeout,
        internal_command_timeout: config.socket_timeout,
        max_command_attempts: 1,
        unresponsive: UnresponsiveConfig {
            max_timeout: Some(config.socket_timeout.saturating_sub(interval).max(interval)),
            interval,
        },
        tcp: TcpConfig {
            nodelay: Some(true),
            keepalive: Some(
                TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(2)),
            ),
            ..TcpConfig::default()
        },
        ..ConnectionConfig::default()
    }
}

/// Reconnect forever: the first attempt after 1 ms, then 10 ms, then every 100 ms, so the store
/// recovers quickly once the server is back and a client does not sit "connected" on a dead
/// connection.
pub(crate) fn reconnect_policy() -> ReconnectPolicy {
    let mut p = ReconnectPolicy::new_exponential(0, 1, 100, 10);
    p.set_jitter(0);
    p
}

/// fred's performance settings: no per-command timer (see the module docs).
pub(crate) fn performance_config(broadcast_capacity: usize) -> PerformanceConfig {
    PerformanceConfig {
        default_command_timeout: Duration::ZERO,
        broadcast_channel_capacity: broadcast_capacity,
        ..PerformanceConfig::default()
    }
}

fn build_pool(config: &RedisConfig) -> Result<Pool> {
    Pool::new(
        fred_config(config)?,
        Some(performance_config(64)),
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
