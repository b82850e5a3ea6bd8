//! The shared connection: a fred pool, the loaded scripts, the health check and the optional
//! client-side cache.
//!
//! # Failing fast without a timer on the check path
//! A per-command timer (fred's per-command timeout, or `tokio::time::timeout`) costs between a
//! quarter and a half of the throughput of a bare client on the check path. Instead every command
//! is sent with fred's per-command `fail_fast` option and the pool runs fred's
//! unresponsive-connection detection:
//!
//! - while a pooled client is disconnected or reconnecting, a command fails at once
//!   (`ProviderConnection`); psm also keeps a "down" flag per client, set by fred's error
//!   broadcast the moment a connection drops and cleared when it is re-established, so new calls
//!   go to another pooled connection or fail at once;
//! - a command in flight when its connection closes fails at once (fail-fast commands are never
//!   kept for a replay by fred);
//! - a connection that stays silent with a command in flight for `socket_timeout` minus one check
//!   interval is closed by fred, which fails that command: a silently dead server is noticed within
//!   `socket_timeout`;
//! - TCP keepalive is on, and the first reconnect attempt starts after 1 ms.
//!
//! One gap is left by fred itself: a command handed to a client in the instant after its
//! connection broke, before fred's state says so, waits in the client's queue behind the
//! reconnect, and fred's reconnect loop does not read that queue until a connection holds again —
//! for the whole outage. (Ending the loop instead, with a finite reconnect policy, fails the queue
//! but leaks fred 10.1's queued-command counter, after which the client stops flushing lone
//! commands.) psm closes the gap per kind of command:
//!
//! - reads ([`read!`], the check path) race the answer against the client's "broke" notification,
//!   sent with the down flag: a read queued on a broken connection fails (and is retried like any
//!   broken read) the moment psm sees the break. A read still queued is sent after the reconnect
//!   and its answer dropped, which changes nothing;
//! - writes ([`call!`], scripts, `UNLINK`, `INCR`) carry fred's per-command timeout of
//!   `socket_timeout`: a write still queued when its timeout is seen fails, and fred drops it
//!   unsent, so it is not replayed after the outage. As with any networked store, a write that
//!   fails right at its deadline, or whose caller stopped waiting for it, may still have run: a
//!   failed write's outcome is unknown, which is why the writes psm retries are idempotent.
//!
//! With `retry_on_timeout`, psm itself retries an idempotent call once when its connection broke
//! while the call was in flight, after waiting for a reconnect; the wait and the second attempt
//! (sent with fred's timeout set to what is left) end by `socket_timeout` after the first attempt
//! was sent, so a retried call, answered or failed, never takes longer than one call could.
//! Scans and `INFO` additionally bound each page with a timer (they are not on the check path).
//!
//! # One connection at a time
//! Calls go to the first healthy pooled connection; the others are standbys that take over the
//! moment it is marked down. One pipelined connection batches concurrent commands into far fewer
//! writes and reads than the same commands spread over several (a bare fred `Pool` ends up doing
//! the same: it advances its round-robin counter four times per command, so with four clients
//! nearly every command lands on one connection).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
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
use tokio::{sync::Notify, task::JoinHandle};

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
pub(crate) struct Slot {
    /// Fail fast, no timer: reads, each raced against `broke` (see [`Slot::guard`]).
    client: WithOptions<Client>,
    /// Fail fast, with fred's per-command timeout of `socket_timeout`: writes.
    timed: WithOptions<Client>,
    /// The pooled client itself, for second attempts with a shorter timeout.
    base: Client,
    down: Arc<AtomicBool>,
    /// Notified (after `down` is set) when psm sees the connection break.
    broke: Arc<Notify>,
    reconnects: Arc<AtomicU64>,
}

impl Slot {
    fn up(&self) -> bool {
        !self.down.load(Ordering::Acquire) && self.client.is_connected()
    }

    /// The client for reads (no timer: run them through [`guard`](Self::guard)).
    #[inline]
    pub(crate) fn reader(&self) -> &WithOptions<Client> {
        &self.client
    }

    /// The client for writes (fred's per-command timeout: a write still queued when it expires
    /// is failed and never sent).
    #[inline]
    pub(crate) fn writer(&self) -> &WithOptions<Client> {
        &self.timed
    }

    /// Runs `read`, a read sent through [`reader`](Self::reader), until it is answered or psm
    /// sees this connection break; then it fails like a read on a closed connection. The
    /// notification is armed before the down flag is checked, and the flag is set before it is
    /// sent, so a break is never missed.
    #[inline]
    pub(crate) async fn guard<T>(
        &self,
        mut read: Pin<Box<impl Future<Output = std::result::Result<T, FredError>>>>,
    ) -> std::result::Result<T, FredError> {
        let broke = self.broke.notified();
        tokio::pin!(broke);
        broke.as_mut().enable();
        if self.down.load(Ordering::Acquire) {
            return Err(seen_broken());
        }
        tokio::select! {
            biased;
            r = read.as_mut() => r,
            () = broke => Err(seen_broken()),
        }
    }

    /// A fail-fast client with fred's per-command timeout of `left`: for a second attempt, which
    /// may use only what is left of the first attempt's `socket_timeout`.
    #[cold]
    pub(crate) fn within(&self, left: Duration) -> WithOptions<Client> {
        self.base.with_options(&Options {
            fail_fast: true,
            timeout: Some(left),
            ..Options::default()
        })
    }

    /// Awaits `write`, a write sent through [`writer`](Self::writer) (fred's own timeout bounds
    /// it).
    #[inline]
    pub(crate) async fn plain<T>(
        &self,
        write: Pin<Box<impl Future<Output = std::result::Result<T, FredError>>>>,
    ) -> std::result::Result<T, FredError> {
        write.await
    }
}

/// The error of a read abandoned because its connection broke.
fn seen_broken() -> FredError {
    FredError::new(FredKind::IO, "Connection closed (seen by psm)")
}

/// A picked pooled client: its index, its reconnect count when picked, and when the call was sent
/// (a retry must end by `socket_timeout` after it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picked {
    index: usize,
    reconnects: u64,
    sent: tokio::time::Instant,
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
        let fast = Options {
            fail_fast: true,
            ..Options::default()
        };
        let timed = Options {
            fail_fast: true,
            timeout: Some(self.config.socket_timeout),
            ..Options::default()
        };
        let mut tasks = Vec::new();
        let slots: Box<[Slot]> = pool
            .clients()
            .iter()
            .map(|c| {
                let down = Arc::new(AtomicBool::new(false));
                let broke = Arc::new(Notify::new());
                let reconnects = Arc::new(AtomicU64::new(0));
                tasks.push(watch_client(c, &down, &broke, &reconnects));
                Slot {
                    client: c.with_options(&fast),
                    timed: c.with_options(&timed),
                    base: c.clone(),
                    down,
                    broke,
                    reconnects,
                }
            })
            .collect();
        let mut conn = Conn {
            pool,
            slots,
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

/// How often a connection marked down is looked at when no reconnect event clears it.
const DOWN_RECHECK: Duration = Duration::from_millis(50);

/// Keeps `down` in step with the connection of `client`: set the moment fred reports a broken
/// connection (then `broke` wakes the reads waiting on it), cleared when fred has connected again.
///
/// One task reads both of fred's channels, breaks first: fred reports a break before the
/// reconnect that follows it, so a break handled late can never overwrite the reconnect and leave
/// a healthy connection marked down (two tasks, one per channel, could). A connection marked down
/// that fred reports connected at two looks [`DOWN_RECHECK`] apart is cleared too, for an error
/// that no reconnect follows.
fn watch_client(
    client: &Client,
    down: &Arc<AtomicBool>,
    broke: &Arc<Notify>,
    reconnects: &Arc<AtomicU64>,
) -> JoinHandle<()> {
    use tokio::sync::broadcast::error::RecvError;
    let mut errors = client.error_rx();
    let mut events = client.reconnect_rx();
    let (d, b, n) = (Arc::clone(down), Arc::clone(broke), Arc::clone(reconnects));
    let c = client.clone();
    tokio::spawn(async move {
        let mut recheck = tokio::time::interval(DOWN_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_connected = false;
        loop {
            let is_down = d.load(Ordering::Acquire);
            tokio::select! {
                biased;
                r = errors.recv() => {
                    match r {
                        Ok(_) => d.store(true, Ordering::Release),
                        Err(RecvError::Lagged(_)) => d.store(!c.is_connected(), Ordering::Release),
                        Err(RecvError::Closed) => return,
                    }
                    // Every error fred broadcasts is about a connection; a read woken needlessly
                    // is only retried.
                    b.notify_waiters();
                    seen_connected = false;
                    recheck.reset();
                }
                r = events.recv() => match r {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        n.fetch_add(1, Ordering::AcqRel);
                        d.store(false, Ordering::Release);
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = recheck.tick(), if is_down => {
                    if c.is_connected() {
                        if seen_connected {
                            d.store(false, Ordering::Release);
                        }
                        seen_connected = true;
                    } else {
                        seen_connected = false;
                    }
                }
            }
        }
    })
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

/// A second attempt needs at least this much of the first attempt's `socket_timeout` left;
/// with less, the first attempt's error is returned.
const MIN_SECOND_ATTEMPT: Duration = Duration::from_millis(2);

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
    /// The read client of the first connected pooled connection (see the module docs: one
    /// pipelined connection at a time), or `ProviderConnection` at once when every pooled
    /// connection is down: nothing waits for a reconnect. Only for reads bounded by a timer
    /// ([`bounded`](Self::bounded)); other reads go through [`read!`], writes through [`call!`] or
    /// [`writer`](Self::writer).
    #[inline]
    pub(crate) fn client(&self, op: &'static str) -> Result<&WithOptions<Client>> {
        self.pick(op).map(|(_, s)| s.reader())
    }

    /// The write client of the first connected pooled connection (fred's per-command timeout of
    /// `socket_timeout`), or `ProviderConnection` at once.
    #[inline]
    pub(crate) fn writer(&self, op: &'static str) -> Result<&WithOptions<Client>> {
        self.pick(op).map(|(_, s)| s.writer())
    }

    /// The first connected pooled connection, with what a retry needs to know about the pick.
    #[inline]
    pub(crate) fn pick(&self, op: &'static str) -> Result<(Picked, &Slot)> {
        for (index, slot) in self.slots.iter().enumerate() {
            // The down flag only (fred checks its own state again when the command is sent; a
            // slot picked in the instant between a reconnect and fred's state saying so fails
            // fast, and its call is retried).
            if !slot.down.load(Ordering::Acquire) {
                let picked = Picked {
                    index,
                    reconnects: slot.reconnects.load(Ordering::Acquire),
                    sent: tokio::time::Instant::now(),
                };
                return Ok((picked, slot));
            }
        }
        Err(unreachable(op))
    }

    /// Whether a pooled client is connected (used to tell a timeout from an outage: calls go to
    /// the first connected one, so a standby that is down says nothing about a call's timeout).
    pub(crate) fn healthy(&self) -> bool {
        self.slots.iter().any(Slot::up)
    }

    /// Maps a fred error of `op`.
    pub(crate) fn err(&self, e: &FredError, op: &'static str) -> Error {
        map(e, op, self.healthy())
    }

    /// After a first attempt on `picked` failed with `e`: the pooled connection for the second
    /// attempt and the time left for it, when the call should be sent again (its connection broke,
    /// `retry_on_timeout` is on, the call is idempotent, and within half of `socket_timeout` the
    /// picked connection reconnected or another one is up, with time left before
    /// `socket_timeout` has passed since the first attempt was sent), else the mapped error.
    #[cold]
    pub(crate) async fn retry_after(
        &self,
        e: &FredError,
        op: &'static str,
        retry: Retry,
        picked: Picked,
    ) -> Result<(&Slot, Duration)> {
        if !self.retry || retry == Retry::Never || !broken_connection(e) {
            return Err(self.err(e, op));
        }
        let end = picked.sent + self.timeout;
        let wait_until = end.min(tokio::time::Instant::now() + self.timeout / 2);
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left < MIN_SECOND_ATTEMPT {
                return Err(self.err(e, op));
            }
            let failed = &self.slots[picked.index];
            if failed.reconnects.load(Ordering::Acquire) > picked.reconnects && failed.up() {
                return Ok((failed, left));
            }
            if let Some((_, other)) = self
                .slots
                .iter()
                .enumerate()
                .find(|(i, s)| *i != picked.index && s.up())
            {
                return Ok((other, left));
            }
            if tokio::time::Instant::now() >= wait_until {
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

    /// Awaits `fut`, a write sent once through [`writer`](Self::writer) (bounded by fred's
    /// per-command timeout, never by a timer of psm's: a timer that dropped the call could leave
    /// the write queued to land after the outage), and maps its error.
    pub(crate) async fn write_once<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = std::result::Result<T, FredError>>,
    ) -> Result<T> {
        fut.await.map_err(|e| self.err(&e, op))
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
        let (picked, slot) = match self.pick(op) {
            Ok(p) => p,
            Err(e) => {
                tokio::task::yield_now().await;
                return Err(e);
            }
        };
        let e = match self.run_on(slot.writer(), s, &args).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let (slot, left) = self.retry_after(&e, op, retry, picked).await?;
        self.run_on(&slot.within(left), s, &args)
            .await
            .map_err(|e| self.err(&e, op))
    }

    /// EVALSHA (EVAL on NOSCRIPT) as custom commands, so fred's per-command options (fail fast,
    /// the write timeout) apply; in cluster mode the first key picks the node.
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
                    self.write_once(op, self.writer(op)?.unlink::<u64, _>(k.as_str()))
                        .await
                });
                for r in futures::future::join_all(dels).await {
                    removed += r?;
                }
            }
        } else {
            for chunk in keys.chunks(512) {
                let n: u64 = self
                    .write_once(op, self.writer(op)?.unlink(chunk.to_vec()))
                    .await?;
                removed += n;
            }
        }
        Ok(removed)
    }
}

/// Runs `$body` (an expression using the client `$c`) through one pooled connection once, and once
/// more after a reconnect when the connection broke and the call is idempotent. `$run` is how
/// the future is awaited on the connection: the read guard or plain awaiting.
///
/// fred's command futures are several kilobytes (an `HMGET` is 6.6 KB), and a future is copied
/// whole each time it is moved: the command future is boxed where it is made (moved once, as a
/// bare client's is), and the retry is a boxed cold path, so the caller's own future (which
/// `async_trait` boxes and copies again) stays small.
macro_rules! attempt_twice {
    ($conn:expr, $op:expr, $client:ident, $run:ident, |$c:ident| $body:expr) => {{
        let conn: &$crate::conn::Conn = $conn;
        match conn.pick($op) {
            // Failing at once must still yield: a caller retrying in a loop would otherwise
            // starve the tasks that notice the reconnect.
            Err(e) => {
                tokio::task::yield_now().await;
                Err(e)
            }
            Ok((picked, slot)) => {
                let first = {
                    let $c = slot.$client();
                    slot.$run(Box::pin($body)).await
                };
                match first {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        Box::pin(async {
                            let (slot, left) = conn
                                .retry_after(&e, $op, $crate::conn::Retry::Idempotent, picked)
                                .await?;
                            let second = slot.within(left);
                            let $c = &second;
                            slot.$run(Box::pin($body))
                                .await
                                .map_err(|e| conn.err(&e, $op))
                        })
                        .await
                    }
                }
            }
        }
    }};
}
pub(crate) use attempt_twice;

/// A read: `$body` (an expression using the client `$c`) raced against its connection breaking
/// (see [`Slot::guard`]), retried once after a reconnect when the connection broke. No timer.
macro_rules! read {
    ($conn:expr, $op:expr, |$c:ident| $body:expr) => {
        $crate::conn::attempt_twice!($conn, $op, reader, guard, |$c| $body)
    };
}
pub(crate) use read;

/// An idempotent write: `$body` (an expression using the client `$c`) with fred's per-command
/// timeout, retried once after a reconnect when the connection broke.
macro_rules! call {
    ($conn:expr, $op:expr, |$c:ident| $body:expr) => {
        $crate::conn::attempt_twice!($conn, $op, writer, plain, |$c| $body)
    };
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
/// `socket_timeout` closes its connection), TCP keepalive. `TCP_NODELAY` stays off, as in fred's
/// defaults: concurrent commands pipelined on one connection are coalesced into fewer segments
/// (with it on, 64 concurrent checks ran at 70–80% of a bare client's rate instead of 80–90%). A
/// command held back waits only for the acknowledgement of the data before it, which the server
/// sends with its next reply; a lone request/response is never delayed.
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
