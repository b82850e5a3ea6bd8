//! Client-side caching of session permission sets, invalidated by RESP3 client tracking.
//!
//! A dedicated RESP3 connection runs `CLIENT TRACKING ON BCAST PREFIX <key_prefix>s:` (on every
//! master in cluster mode); the server then pushes the name of every session key that anyone
//! changes, deletes or expires, and the entry is dropped.
//!
//! - A value read before an invalidation is never inserted after it, per key: a fill first puts a
//!   ticket in the key's slot, an invalidation removes the slot, and the insert only replaces its
//!   own ticket.
//! - The cache serves reads only while tracking is known to work: it is emptied and bypassed when
//!   the tracking connection drops, errors, stops answering its PING (sent every second), or when
//!   invalidation messages were lost because the listener lagged behind (then it is emptied and
//!   keeps going); it is emptied again when tracking is re-enabled after a reconnect.
//! - Entries older than `max_age` are read again even without an invalidation, and the cache holds
//!   at most `max_entries` sessions and about `max_bytes` bytes.

use std::{
    hash::{BuildHasher, Hash},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::Client,
    interfaces::{ClientLike, EventInterface, TrackingInterface},
    types::{ClientState, RespVersion, client::Invalidation, config::Options},
};
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock};
use psm_core::Result;
use tokio::{
    sync::broadcast::{Receiver, error::RecvError},
    task::JoinHandle,
};

use crate::{
    config::{ClientCacheConfig, RedisConfig},
    conn::{connection_config, fred_config, now_micros, performance_config, reconnect_policy},
    error::map,
    keys::Keys,
};

const SHARDS: usize = 16;
/// How often the idle tracking connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Capacity of fred's invalidation channel (a lagging listener empties the cache).
const INVALIDATION_CAPACITY: usize = 4096;
/// Approximate fixed cost of one entry and of one permission, in bytes.
const ENTRY_OVERHEAD: usize = 96;
const PERM_OVERHEAD: usize = 32;

type Hasher = foldhash::fast::FixedState;

/// A cached session: its permissions (empty and `missing` for a session that does not exist),
/// expiry, and when it was read.
#[derive(Debug)]
pub(crate) struct Entry {
    perms: HashSet<Box<str>, Hasher>,
    expires: Option<i64>,
    missing: bool,
    read_at: i64,
    bytes: usize,
}

impl Entry {
    pub(crate) fn new(perms: impl IntoIterator<Item = Box<str>>, expires: Option<i64>) -> Self {
        let perms: HashSet<Box<str>, Hasher> = perms.into_iter().collect();
        let bytes = ENTRY_OVERHEAD + perms.iter().map(|p| p.len() + PERM_OVERHEAD).sum::<usize>();
        Self {
            perms,
            expires,
            missing: false,
            read_at: now_micros(),
            bytes,
        }
    }

    pub(crate) fn missing() -> Self {
        Self {
            perms: HashSet::default(),
            expires: None,
            missing: true,
            read_at: now_micros(),
            bytes: ENTRY_OVERHEAD,
        }
    }

    /// Whether the session holds `p` now.
    pub(crate) fn grants_now(&self, p: &str) -> bool {
        self.grants(p, now_micros())
    }

    /// Whether the session holds `p` at `now`.
    fn grants(&self, p: &str, now: i64) -> bool {
        !self.missing && self.expires.is_none_or(|e| now < e) && self.perms.contains(p)
    }
}

/// A key's slot: a fill in progress (its ticket) or a cached entry.
#[derive(Debug)]
enum Slot {
    Filling(u64),
    Ready(Arc<Entry>),
}

#[derive(Debug, Default)]
struct ShardMap {
    map: HashMap<Box<str>, Slot, Hasher>,
    bytes: usize,
}

impl ShardMap {
    fn remove(&mut self, sid: &str) {
        if let Some(Slot::Ready(e)) = self.map.remove(sid) {
            self.bytes -= e.bytes + sid.len();
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: RwLock<ShardMap>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of the client-side cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ClientCacheStats {
    /// Checks answered locally.
    pub hits: u64,
    /// Checks that went to Redis.
    pub misses: u64,
    /// Invalidation messages received (and local invalidations).
    pub invalidations: u64,
    /// Times the cache was emptied because invalidation messages may have been lost (the
    /// listener lagged behind, or the tracking connection failed).
    pub resets: u64,
    /// Sessions cached now.
    pub entries: u64,
    /// Approximate bytes held now.
    pub bytes: u64,
    /// Whether the tracking connection is up (the cache is bypassed otherwise).
    pub active: bool,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct ClientCache {
    shards: Box<[Shard]>,
    hasher: Hasher,
    max_per_shard: usize,
    max_bytes_per_shard: usize,
    max_age_micros: i64,
    tickets: AtomicU64,
    invalidations: AtomicU64,
    resets: AtomicU64,
    /// Tracking is on for the current tracking connection.
    tracking: AtomicBool,
    /// The cache may serve reads.
    active: AtomicBool,
    tracker: Mutex<Option<Client>>,
}

impl ClientCache {
    pub(crate) fn new(c: &ClientCacheConfig) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: Hasher::default(),
            max_per_shard: c.max_entries.div_ceil(SHARDS).max(1),
            max_bytes_per_shard: (c.max_bytes / SHARDS).max(1),
            max_age_micros: i64::try_from(c.max_age.as_micros()).unwrap_or(i64::MAX),
            tickets: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            tracking: AtomicBool::new(false),
            active: AtomicBool::new(false),
            tracker: Mutex::new(None),
        }
    }

    #[inline]
    fn shard(&self, sid: &str) -> &Shard {
        let mut h = self.hasher.build_hasher();
        sid.hash(&mut h);
        let i = std::hash::Hasher::finish(&h) as usize % SHARDS;
        &self.shards[i]
    }

    /// Whether the cache may serve reads now.
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The fresh cached entry of `sid` at `now`, counting a hit or a miss.
    #[inline]
    fn lookup(&self, sid: &str, now: i64) -> Option<Arc<Entry>> {
        if !self.usable() {
            return None;
        }
        let shard = self.shard(sid);
        let found = match shard.map.read().map.get(sid) {
            Some(Slot::Ready(e)) if now - e.read_at < self.max_age_micros => Some(Arc::clone(e)),
            _ => None,
        };
        let counter = if found.is_some() {
            &shard.hits
        } else {
            &shard.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The answer for (`sid`, `perm`) if the session is cached.
    #[inline]
    pub(crate) fn check(&self, sid: &str, perm: &str) -> Option<bool> {
        let now = now_micros();
        self.lookup(sid, now).map(|e| e.grants(perm, now))
    }

    /// The cached entry of `sid`, if any (counts a hit or a miss).
    pub(crate) fn entry(&self, sid: &str) -> Option<Arc<Entry>> {
        self.lookup(sid, now_micros())
    }

    /// Announces a fill of `sid` before its Redis read; the ticket goes to
    /// [`finish_fill`](Self::finish_fill).
    pub(crate) fn begin_fill(&self, sid: &str) -> u64 {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed) + 1;
        if self.usable() {
            let mut m = self.shard(sid).map.write();
            m.remove(sid);
            if m.map.len() < self.max_per_shard.saturating_mul(2) {
                m.map.insert(sid.into(), Slot::Filling(ticket));
            }
        }
        ticket
    }

    /// Inserts `entry` for `sid` if the fill's ticket is still in place (no invalidation, clear
    /// or later fill of `sid` since [`begin_fill`](Self::begin_fill)), evicting arbitrary entries
    /// to stay within the entry and byte bounds. An entry bigger than a shard's byte budget is not
    /// cached.
    pub(crate) fn finish_fill(&self, sid: &str, ticket: u64, entry: Arc<Entry>) {
        let shard = self.shard(sid);
        let mut m = shard.map.write();
        if !matches!(m.map.get(sid), Some(Slot::Filling(t)) if *t == ticket) {
            return;
        }
        let size = entry.bytes + sid.len();
        if !self.usable() || size > self.max_bytes_per_shard {
            m.map.remove(sid);
            return;
        }
        while m.map.len() > self.max_per_shard || m.bytes + size > self.max_bytes_per_shard {
            let Some(victim) = m
                .map
                .iter()
                .find(|(k, s)| matches!(s, Slot::Ready(_)) && k.as_ref() != sid)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            m.remove(&victim);
        }
        if m.bytes + size > self.max_bytes_per_shard {
            m.map.remove(sid);
            return;
        }
        m.bytes += size;
        m.map.insert(sid.into(), Slot::Ready(entry));
    }

    /// Drops `sid` (a local write or an invalidation message), cancelling a fill in progress.
    pub(crate) fn invalidate(&self, sid: &str) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.shard(sid).map.write().remove(sid);
    }

    /// Drops everything, cancelling every fill in progress.
    pub(crate) fn clear(&self) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        for s in &*self.shards {
            s.map.write().clear();
        }
    }

    /// Stops serving reads and empties the cache: invalidations may have been lost.
    fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.clear();
    }

    /// Empties the cache and keeps serving: messages were lost but the connection is fine.
    fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.clear();
    }

    pub(crate) fn stats(&self) -> ClientCacheStats {
        let mut st = ClientCacheStats {
            invalidations: self.invalidations.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            active: self.usable(),
            ..ClientCacheStats::default()
        };
        for s in &*self.shards {
            st.hits += s.hits.load(Ordering::Relaxed);
            st.misses += s.misses.load(Ordering::Relaxed);
            let m = s.map.read();
            st.entries += m
                .map
                .values()
                .filter(|v| matches!(v, Slot::Ready(_)))
                .count() as u64;
            st.bytes += m.bytes as u64;
        }
        st
    }

    /// Connects the tracking client and starts the invalidation listener, the reconnect and
    /// error watchers and the PING heartbeat.
    pub(crate) async fn start(
        self: &Arc<Self>,
        config: &RedisConfig,
    ) -> Result<Vec<JoinHandle<()>>> {
        let mut fc = fred_config(config)?;
        fc.version = RespVersion::RESP3;
        let client = Client::new(
            fc,
            Some(performance_config(INVALIDATION_CAPACITY)),
            Some(connection_config(config)),
            Some(reconnect_policy()),
        );
        let keys = Keys::new(&config.key_prefix);
        let prefix = format!("{}s:", config.key_prefix);
        let timeout = config.socket_timeout;
        let mut tasks = Vec::new();

        tasks.push(tokio::spawn(listen(
            Arc::clone(self),
            client.invalidation_rx(),
            keys,
        )));

        let connected =
            tokio::time::timeout(config.socket_connect_timeout + timeout, client.init()).await;
        match connected {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                for t in &tasks {
                    t.abort();
                }
                let _ = client.quit().await;
                return Err(map(&e, "client_tracking", false));
            }
            Err(_) => {
                for t in &tasks {
                    t.abort();
                }
                let _ = client.quit().await;
                return Err(crate::conn::unreachable("client_tracking"));
            }
        }
        let tracked = tokio::time::timeout(
            timeout,
            client.start_tracking(prefix.clone(), true, false, false, false),
        )
        .await;
        match tracked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                for t in &tasks {
                    t.abort();
                }
                let _ = client.quit().await;
                return Err(map(&e, "client_tracking", true));
            }
            Err(_) => {
                for t in &tasks {
                    t.abort();
                }
                let _ = client.quit().await;
                return Err(crate::conn::unreachable("client_tracking"));
            }
        }
        self.clear();
        self.tracking.store(true, Ordering::Release);
        self.active.store(true, Ordering::Release);

        // A lost connection means lost invalidations: bypass and empty the cache until tracking
        // is on again.
        let (me, c) = (Arc::clone(self), client.clone());
        let mut reconnects = client.reconnect_rx();
        tasks.push(tokio::spawn(async move {
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        me.tracking.store(false, Ordering::Release);
                        me.deactivate();
                        return;
                    }
                }
                me.tracking.store(false, Ordering::Release);
                me.deactivate();
                let on = tokio::time::timeout(
                    timeout,
                    c.start_tracking(prefix.clone(), true, false, false, false),
                )
                .await;
                if matches!(on, Ok(Ok(()))) {
                    me.clear();
                    me.tracking.store(true, Ordering::Release);
                    me.active.store(true, Ordering::Release);
                }
            }
        }));
        let (me, c) = (Arc::clone(self), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            loop {
                ticker.tick().await;
                if c.state() != ClientState::Connected && me.tracking.swap(false, Ordering::AcqRel)
                {
                    me.deactivate();
                }
            }
        }));
        let me = Arc::clone(self);
        let mut errors = client.error_rx();
        tasks.push(tokio::spawn(async move {
            loop {
                match errors.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        me.tracking.store(false, Ordering::Release);
                        me.deactivate();
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }));
        // The tracking connection is idle: without a PING a silently dead connection would never
        // be noticed. A PING that fails or goes unanswered bypasses the cache; fred's unresponsive
        // detection then closes the connection and the reconnect re-enables tracking.
        let me = Arc::clone(self);
        let pinger = client.with_options(&Options {
            fail_fast: true,
            ..Options::default()
        });
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PING_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let ok = matches!(
                    tokio::time::timeout(timeout, pinger.ping::<()>(None)).await,
                    Ok(Ok(()))
                );
                if !ok {
                    if me.usable() {
                        me.deactivate();
                    }
                } else if me.tracking.load(Ordering::Acquire) && !me.usable() {
                    // Same connection, tracking still on: no invalidation was lost (the cache
                    // was emptied when it was bypassed).
                    me.active.store(true, Ordering::Release);
                }
            }
        }));
        *self.tracker.lock() = Some(client);
        Ok(tasks)
    }

    /// Stops tracking and disconnects the tracking client.
    pub(crate) async fn stop(&self) {
        self.tracking.store(false, Ordering::Release);
        self.active.store(false, Ordering::Release);
        self.clear();
        let client = self.tracker.lock().take();
        if let Some(c) = client {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.quit()).await;
        }
    }
}

/// The invalidation listener: drops the named sessions (everything on a flush). When it lagged
/// behind fred's channel, messages were lost: it empties the cache and goes on. When the channel
/// closes, the cache is bypassed for good.
async fn listen(cache: Arc<ClientCache>, mut rx: Receiver<Invalidation>, keys: Keys) {
    loop {
        match rx.recv().await {
            Ok(inv) => {
                if inv.keys.is_empty() {
                    cache.clear();
                }
                for k in &inv.keys {
                    match k.as_str().and_then(|k| keys.session_id_of(k)) {
                        Some(sid) => cache.invalidate(sid),
                        None => cache.clear(),
                    }
                }
            }
            Err(RecvError::Lagged(_)) => cache.reset(),
            Err(RecvError::Closed) => {
                cache.tracking.store(false, Ordering::Release);
                cache.deactivate();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fred::types::{Key, config::Server};

    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> Arc<ClientCache> {
        let c = Arc::new(ClientCache::new(&ClientCacheConfig {
            max_entries,
            max_bytes,
            max_age: Duration::from_secs(60),
        }));
        c.tracking.store(true, Ordering::Release);
        c.active.store(true, Ordering::Release);
        c
    }

    fn fill(c: &ClientCache, sid: &str, perms: &[&str]) {
        let t = c.begin_fill(sid);
        c.finish_fill(
            sid,
            t,
            Arc::new(Entry::new(perms.iter().map(|p| (*p).into()), None)),
        );
    }

    fn invalidation(keys: &[&str]) -> Invalidation {
        Invalidation {
            keys: keys.iter().map(|k| Key::from(*k)).collect(),
            server: Server::new("127.0.0.1", 6379),
        }
    }

    #[tokio::test]
    async fn a_lagging_listener_empties_the_cache_and_keeps_listening() {
        let c = cache(1000, 1 << 20);
        let (tx, rx) = tokio::sync::broadcast::channel(2);
        fill(&c, "a", &["read"]);
        fill(&c, "b", &["read"]);
        // Four messages into a channel of two before the listener runs: it lags.
        for k in ["p:s:{x1}", "p:s:{x2}", "p:s:{x3}", "p:s:{x4}"] {
            tx.send(invalidation(&[k])).unwrap();
        }
        let task = tokio::spawn(listen(Arc::clone(&c), rx, Keys::new("p:")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.check("a", "read"), None, "a lag must empty the cache");
        assert!(c.stats().resets >= 1);
        assert!(c.usable(), "a lag alone keeps the cache active");
        // Still listening after the lag.
        fill(&c, "b", &["read"]);
        assert_eq!(c.check("b", "read"), Some(true));
        tx.send(invalidation(&["p:s:{b}"])).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            c.check("b", "read"),
            None,
            "the listener must go on after a lag"
        );
        // A closed channel bypasses the cache.
        drop(tx);
        task.await.unwrap();
        assert!(
            !c.usable(),
            "a closed invalidation channel must bypass the cache"
        );
    }

    #[test]
    fn an_invalidation_during_a_fill_cancels_that_key_only() {
        let c = cache(1000, 1 << 20);
        let ta = c.begin_fill("a");
        let tb = c.begin_fill("b");
        c.invalidate("a");
        c.finish_fill("a", ta, Arc::new(Entry::new(["read".into()], None)));
        c.finish_fill("b", tb, Arc::new(Entry::new(["read".into()], None)));
        assert_eq!(
            c.check("a", "read"),
            None,
            "a stale read must not be cached"
        );
        assert_eq!(
            c.check("b", "read"),
            Some(true),
            "another key's invalidation must not cancel this fill"
        );
        // A later fill of the same key supersedes an earlier one.
        let t1 = c.begin_fill("c");
        let t2 = c.begin_fill("c");
        c.finish_fill("c", t2, Arc::new(Entry::new(["new".into()], None)));
        c.finish_fill("c", t1, Arc::new(Entry::new(["old".into()], None)));
        assert_eq!(c.check("c", "new"), Some(true));
        assert_eq!(c.check("c", "old"), Some(false));
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let bound = 64 * 1024;
        let c = cache(1_000_000, bound);
        let perms: Vec<String> = (0..20).map(|i| format!("permission:{i:04}")).collect();
        let refs: Vec<&str> = perms.iter().map(String::as_str).collect();
        for i in 0..2000 {
            fill(&c, &format!("s{i}"), &refs);
        }
        let st = c.stats();
        assert!(st.bytes as usize <= bound, "{st:?}");
        assert!(st.entries > 10, "the cache must still hold entries: {st:?}");
        // A session bigger than a shard's budget is not cached at all.
        let huge: Vec<String> = (0..2000).map(|i| format!("p{i:08}")).collect();
        let huge: Vec<&str> = huge.iter().map(String::as_str).collect();
        fill(&c, "huge", &huge);
        assert_eq!(c.check("huge", "p00000001"), None);
        assert!(c.stats().bytes as usize <= bound);
    }
}
