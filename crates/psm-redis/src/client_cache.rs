//! Client-side caching of session permission sets, invalidated by RESP3 client tracking.
//!
//! A dedicated RESP3 connection runs `CLIENT TRACKING ON BCAST PREFIX <key_prefix>s:` (on every
//! master in cluster mode); the server then pushes the name of every session key that anyone
//! changes, deletes or expires, and the entry is dropped. A value read before an invalidation is
//! never inserted after it: inserts carry the invalidation epoch read before the Redis read and are
//! refused once it moved. While the tracking connection is down the cache is bypassed, and it is
//! emptied on every (re)connect.

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
    types::{RespVersion, config::ReconnectPolicy},
};
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock};
use psm_core::Result;
use tokio::task::JoinHandle;

use crate::{
    config::RedisConfig,
    conn::{connection_config, fred_config, now_micros},
    error::map,
    keys::Keys,
};

const SHARDS: usize = 16;

type Hasher = foldhash::fast::FixedState;

/// A cached session: its permissions (empty and `missing` for a session that does not exist) and
/// expiry.
#[derive(Debug)]
pub(crate) struct Entry {
    perms: HashSet<Box<str>, Hasher>,
    expires: Option<i64>,
    missing: bool,
}

impl Entry {
    pub(crate) fn new(perms: impl IntoIterator<Item = Box<str>>, expires: Option<i64>) -> Self {
        Self {
            perms: perms.into_iter().collect(),
            expires,
            missing: false,
        }
    }

    pub(crate) fn missing() -> Self {
        Self {
            perms: HashSet::default(),
            expires: None,
            missing: true,
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

#[derive(Debug, Default)]
struct Shard {
    map: RwLock<HashMap<Box<str>, Arc<Entry>, Hasher>>,
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
    /// Sessions cached now.
    pub entries: u64,
    /// Whether the tracking connection is up (the cache is bypassed otherwise).
    pub active: bool,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct ClientCache {
    shards: Box<[Shard]>,
    hasher: Hasher,
    max_per_shard: usize,
    epoch: AtomicU64,
    active: Arc<AtomicBool>,
    tracker: Mutex<Option<Client>>,
}

impl ClientCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: Hasher::default(),
            max_per_shard: max_entries.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
            active: Arc::new(AtomicBool::new(false)),
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

    /// The answer for (`sid`, `perm`) if the session is cached.
    #[inline]
    pub(crate) fn check(&self, sid: &str, perm: &str) -> Option<bool> {
        if !self.usable() {
            return None;
        }
        let shard = self.shard(sid);
        let found = shard
            .map
            .read()
            .get(sid)
            .map(|e| e.grants(perm, now_micros()));
        let counter = if found.is_some() {
            &shard.hits
        } else {
            &shard.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The cached entry of `sid`, if any (counts a hit or a miss).
    pub(crate) fn entry(&self, sid: &str) -> Option<Arc<Entry>> {
        if !self.usable() {
            return None;
        }
        let shard = self.shard(sid);
        let found = shard.map.read().get(sid).cloned();
        let counter = if found.is_some() {
            &shard.hits
        } else {
            &shard.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The epoch to read before a Redis read whose result may be inserted.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Inserts `entry` unless an invalidation happened since `epoch` was read.
    pub(crate) fn insert(&self, sid: &str, entry: Arc<Entry>, epoch: u64) {
        if !self.usable() {
            return;
        }
        let shard = self.shard(sid);
        let mut map = shard.map.write();
        // Checked under the shard lock: an invalidation bumps the epoch before taking it.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if map.len() >= self.max_per_shard
            && !map.contains_key(sid)
            && let Some(k) = map.keys().next().cloned()
        {
            map.remove(&k);
        }
        map.insert(sid.into(), entry);
    }

    /// Drops `sid` (a local write or an invalidation message).
    pub(crate) fn invalidate(&self, sid: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.shard(sid).map.write().remove(sid);
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for s in &*self.shards {
            s.map.write().clear();
        }
    }

    pub(crate) fn stats(&self) -> ClientCacheStats {
        let mut st = ClientCacheStats {
            invalidations: self.epoch.load(Ordering::Relaxed),
            active: self.usable(),
            ..ClientCacheStats::default()
        };
        for s in &*self.shards {
            st.hits += s.hits.load(Ordering::Relaxed);
            st.misses += s.misses.load(Ordering::Relaxed);
            st.entries += s.map.read().len() as u64;
        }
        st
    }

    /// Connects the tracking client and starts the invalidation listener.
    pub(crate) async fn start(
        self: &Arc<Self>,
        config: &RedisConfig,
    ) -> Result<Vec<JoinHandle<()>>> {
        let mut fc = fred_config(config)?;
        fc.version = RespVersion::RESP3;
        let client = Client::new(
            fc,
            None,
            Some(connection_config(config)),
            Some(ReconnectPolicy::new_constant(0, 100)),
        );
        let keys = Keys::new(&config.key_prefix);
        let prefix = format!("{}s:", config.key_prefix);
        let mut tasks = Vec::new();

        // Invalidations: drop the named sessions (or everything on a flush).
        let me = Arc::clone(self);
        let mut rx = client.invalidation_rx();
        tasks.push(tokio::spawn(async move {
            while let Ok(inv) = rx.recv().await {
                if inv.keys.is_empty() {
                    me.clear();
                }
                for k in &inv.keys {
                    match k.as_str().and_then(|k| keys.session_id_of(k)) {
                        Some(sid) => me.invalidate(sid),
                        None => me.clear(),
                    }
                }
            }
        }));

        client
            .init()
            .await
            .map_err(|e| map(&e, "client_tracking", false))?;
        client
            .start_tracking(prefix.clone(), true, false, false, false)
            .await
            .map_err(|e| map(&e, "client_tracking", true))?;
        self.clear();
        self.active.store(true, Ordering::Release);

        // A lost connection means lost invalidations: bypass and empty the cache until tracking
        // is on again.
        let (me, c) = (Arc::clone(self), client.clone());
        let mut reconnects = client.reconnect_rx();
        tasks.push(tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                me.active.store(false, Ordering::Release);
                me.clear();
                if c.start_tracking(prefix.clone(), true, false, false, false)
                    .await
                    .is_ok()
                {
                    me.clear();
                    me.active.store(true, Ordering::Release);
                }
            }
        }));
        let (me, c) = (Arc::clone(self), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            loop {
                ticker.tick().await;
                if !c.is_connected() && me.active.swap(false, Ordering::AcqRel) {
                    me.clear();
                }
            }
        }));
        let me = Arc::clone(self);
        let mut errors = client.error_rx();
        tasks.push(tokio::spawn(async move {
            while errors.recv().await.is_ok() {
                me.active.store(false, Ordering::Release);
                me.clear();
            }
        }));
        *self.tracker.lock() = Some(client);
        Ok(tasks)
    }

    /// Stops tracking and disconnects the tracking client.
    pub(crate) async fn stop(&self) {
        self.active.store(false, Ordering::Release);
        self.clear();
        let client = self.tracker.lock().take();
        if let Some(c) = client {
            let _ = c.quit().await;
        }
    }
}
