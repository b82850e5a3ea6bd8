//! [`SessionTable`]: the sharded session engine behind the embedded adapters.

mod locks;
mod maintenance;
mod read;
mod records;
#[cfg(test)]
mod review_tests;
mod shard;
mod stored_id;
#[cfg(test)]
mod tests;
mod users;
mod write;

use std::{
    fmt,
    hash::BuildHasher,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use foldhash::fast::RandomState;
use psm_core::{
    DynClock, NewSession, Page, PermissionCheck, PermissionList, PermissionRef, Result,
    SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, SystemClock, Timestamp, Ttl,
    UserId,
};

pub use self::records::SessionRecord;
use self::{shard::SessionShard, users::UserShard};
use crate::{config::TableConfig, intern::hash_permission, stats::TableStats};

/// The session table: sessions with permissions, ttl and per-user limits, in this process's memory.
///
/// It is the engine of the memory adapter and the in-memory index of the file adapter. It does no
/// I/O, starts no task and reads time only from its [`Clock`](psm_core::Clock); every method is
/// synchronous and returns quickly (a check takes one shard read lock and allocates nothing).
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees and changes the same sessions and
/// counters. The data lives until [`clear_all_sessions`](Self::clear_all_sessions) or until the last
/// clone is dropped. [`downgrade`](Self::downgrade) gives a handle that does not keep it alive.
///
/// # Expiry
/// A session is expired when `now >= expires_at`, with `now` from the table's clock. Expiry is
/// lazy: an expired session behaves exactly like a missing one in every session call from the
/// moment it expires, and its memory is reclaimed by [`cleanup`](Self::cleanup) or when a write
/// meets it. Only the durability calls ([`export`](Self::export), [`restore`](Self::restore),
/// [`remove`](Self::remove), [`user_session_ids`](Self::user_session_ids), [`len`](Self::len)) see
/// expired sessions that are still stored.
///
/// # Quota
/// [`TableConfig::max_sessions`] caps the number of live sessions, exactly, also under concurrency:
/// a new session beyond it first purges expired sessions and then fails with
/// `StorageQuotaExceeded`. Replacing an existing session is not a new session, and a
/// `create_session_now` that evicts makes its own room.
///
/// [`restore`](Self::restore) is the exception: rebuilding a table from a journal reinstates every
/// stored session, never refused by the quota. A table reopened with a lower `max_sessions` may
/// then hold more sessions than the quota until sessions go (invalidated, expired and purged);
/// while it is over quota, new sessions are refused as usual (replacements are not new).
///
/// # Listing order
/// `list_sessions_now` for one user is ordered by `created_at`, then id (served from a per-user
/// index). Without a user, sessions are listed shard by shard (a shard is picked by a seeded hash of
/// the id), by id within a shard: stable while nothing is written, so paging visits every live
/// session exactly once, but meaningless as an order. Each page costs one pass over the table
/// (a count per shard) plus a sort of the shard the page falls in, and never locks more than one
/// shard at a time.
///
/// # Memory
/// Permission strings are interned per shard, so a session holds a small sorted array of `u32`
/// ids (inline for up to five permissions) and a check is a hash lookup plus an integer search
/// under the one shard read lock, reading one 64-byte cache line of the session (the id, the
/// sorted ids and the expiry; the rest of the record lives in a parallel slab). A session with
/// five permissions, empty metadata and a 30-byte id costs about 150 bytes in total, indexes
/// included (measured by `cargo bench -p psm-memory --bench memory`).
#[derive(Clone)]
pub struct SessionTable {
    inner: Arc<Inner>,
}

/// A handle to a [`SessionTable`] that does not keep its data alive (for background work such as
/// a sweeper, which should end with the table).
#[derive(Clone)]
pub struct WeakSessionTable {
    inner: Weak<Inner>,
}

/// The shared state behind every clone.
pub(crate) struct Inner {
    config: TableConfig,
    clock: DynClock,
    hasher: RandomState,
    /// `shards.len() - 1`; the shard count is a power of two.
    mask: usize,
    shards: Box<[SessionShard]>,
    users: Box<[UserShard]>,
    /// Stored sessions (live or expired) plus reservations in flight; the quota counter.
    stored: AtomicUsize,
    /// The quota actually enforced (also caps the table below `u32::MAX` sessions).
    capacity: usize,
    counters: Counters,
    started: Timestamp,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    expired: AtomicU64,
    peak: AtomicU64,
    /// Operations not tied to one shard (listing, sweeping, per-user calls).
    ops: AtomicU64,
}

impl SessionTable {
    /// A table with `config`, reading time from the system clock.
    pub fn new(config: TableConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A table with `config`, reading time from `clock` (for example a
    /// [`ManualClock`](psm_core::ManualClock) in tests).
    pub fn with_clock(config: TableConfig, clock: DynClock) -> Self {
        let n = config.effective_shards();
        let capacity = config
            .max_sessions
            .unwrap_or(usize::MAX)
            .min(u32::MAX as usize - 1);
        let started = clock.now();
        let inner = Inner {
            clock,
            hasher: RandomState::default(),
            mask: n - 1,
            shards: (0..n).map(|_| SessionShard::new()).collect(),
            users: (0..n).map(|_| UserShard::default()).collect(),
            stored: AtomicUsize::new(0),
            capacity,
            counters: Counters::default(),
            started,
            config,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The configuration the table was built with.
    pub fn config(&self) -> &TableConfig {
        &self.inner.config
    }

    /// The clock the table reads time from.
    pub fn clock(&self) -> &DynClock {
        &self.inner.clock
    }

    /// A handle that does not keep the table alive.
    pub fn downgrade(&self) -> WeakSessionTable {
        WeakSessionTable {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The table's counters (the seed's `get_memory_stats` without the adapter's own fields).
    /// Counts are a snapshot taken shard by shard.
    pub fn stats(&self) -> TableStats {
        self.inner.stats()
    }

    /// Removes every session (the seed's `clear_all_sessions`) and returns how many live ones it
    /// removed. Interned permission strings are kept.
    pub fn clear_all_sessions(&self) -> u64 {
        self.inner.clear_all()
    }

    /// Removes every expired session now and returns how many (the seed's
    /// `cleanup_expired_sessions`).
    pub fn cleanup(&self) -> u64 {
        self.inner.count_misc();
        self.inner.cleanup()
    }

    /// [`cleanup`](Self::cleanup) as a background sweeper runs it: not counted as an operation
    /// served.
    pub fn sweep(&self) -> u64 {
        self.inner.cleanup()
    }

    /// Synchronous `store_permissions`: an upsert that replaces an existing session whole.
    ///
    /// # Errors
    /// `StorageQuotaExceeded` when the session is new and the table already holds `max_sessions`
    /// live sessions.
    pub fn store_permissions_now(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        self.inner.count_shard(self.inner.hash(id.as_str()));
        self.inner.store(id, session)
    }

    /// Synchronous `create_session`: creates a session under a per-user limit, atomically, and
    /// returns the ids it evicted (oldest first).
    ///
    /// # Errors
    /// `SessionExists` for a live session with this id, `SessionLimitReached` at the limit with
    /// [`LimitPolicy::Reject`](psm_core::LimitPolicy::Reject), `StorageQuotaExceeded` when the quota
    /// is full and nothing was evicted.
    pub fn create_session_now(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        self.inner.count_shard(self.inner.hash(id.as_str()));
        self.inner.create(id, session, limit)
    }

    /// Synchronous `check_permission`: the fast path (no allocation, one shard read lock).
    #[inline]
    pub fn check_permission_now(&self, id: &SessionIdRef, p: &PermissionRef) -> bool {
        self.inner.check(id, p)
    }

    /// Synchronous `check_permissions`.
    pub fn check_permissions_now(&self, id: &SessionIdRef, ps: &PermissionList) -> PermissionCheck {
        self.inner.check_all(id, ps)
    }

    /// Synchronous `get_permissions`: a copy of the live session, permissions in stored order.
    pub fn get_permissions_now(&self, id: &SessionIdRef) -> Option<SessionData> {
        self.inner.get(id).map(|(data, _, _)| data)
    }

    /// Synchronous `get_session_info`, naming [`TableConfig::provider`] as the provider.
    pub fn get_session_info_now(&self, id: &SessionIdRef) -> Option<SessionInfo> {
        self.inner.get(id).map(|(data, expires, now)| {
            SessionInfo::new(data, expires, now, self.inner.config.provider)
        })
    }

    /// Synchronous `invalidate_session`: `true` if a live session was removed.
    pub fn invalidate_session_now(&self, id: &SessionIdRef) -> bool {
        self.inner.count_shard(self.inner.hash(id.as_str()));
        self.inner.remove_session(id) == Some(true)
    }

    /// Synchronous `update_permissions`: `false` (changing nothing) for a missing or expired session.
    pub fn update_permissions_now(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> bool {
        self.inner.count_shard(self.inner.hash(id.as_str()));
        self.inner.update(id, &permissions, ttl)
    }

    /// Synchronous `extend_session_ttl`: renews a live session to now + `ttl`.
    pub fn extend_session_ttl_now(&self, id: &SessionIdRef, ttl: Ttl) -> bool {
        self.inner.count_shard(self.inner.hash(id.as_str()));
        self.inner.extend(id, ttl)
    }

    /// Synchronous `list_sessions` (see the type docs for the order without a user).
    pub fn list_sessions_now(&self, user: Option<&UserId>, page: Page) -> Vec<SessionId> {
        self.inner.count_misc();
        match user {
            Some(user) => self.inner.list_user(user, page),
            None => self.inner.list_all(page),
        }
    }

    /// Synchronous `invalidate_user_sessions`: removes every session of `user`, returning how many
    /// live ones.
    pub fn invalidate_user_sessions_now(&self, user: &UserId) -> u64 {
        self.inner.count_misc();
        self.inner.invalidate_user(user)
    }
}

impl WeakSessionTable {
    /// The table, if some [`SessionTable`] handle still holds it.
    pub fn upgrade(&self) -> Option<SessionTable> {
        self.inner.upgrade().map(|inner| SessionTable { inner })
    }
}

impl Default for SessionTable {
    fn default() -> Self {
        Self::new(TableConfig::default())
    }
}

impl fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("config", &self.inner.config)
            .field(
                "stored_sessions",
                &self.inner.stored.load(Ordering::Relaxed),
            )
            .field("interned_permissions", &self.inner.interned())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WeakSessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSessionTable")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl Inner {
    /// The hash of an id's bytes (the shards hash stored ids the same way).
    pub(crate) fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s.as_bytes())
    }

    /// The shard of a hash: bits 32 and up, which hashbrown uses neither for the bucket (low bits)
    /// nor for the control byte (top seven bits) within realistic table sizes.
    pub(crate) fn shard_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.mask
    }

    pub(crate) fn user_shard(&self, user: &UserId) -> usize {
        self.shard_of(self.hash(user.as_str()))
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now().as_unix_micros()
    }

    /// The hash of a permission string, as the shards' interners expect it.
    pub(crate) fn perm_hash(&self, s: &str) -> u64 {
        hash_permission(&self.hasher, s)
    }

    /// Counts an operation on the shard of `hash` (no contended global counter on hot paths).
    pub(crate) fn count_shard(&self, hash: u64) {
        if let Some(s) = self.shards.get(self.shard_of(hash)) {
            self.count_on(s);
        }
    }

    /// Counts an operation on `shard`, without a locked instruction (see [`SessionShard::count_op`]).
    pub(crate) fn count_on(&self, shard: &SessionShard) {
        if self.config.enable_monitoring {
            shard.count_op();
        }
    }

    /// Interned permission strings, summed over the shards (a string held in several shards
    /// counts once per shard).
    pub(crate) fn interned(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.table.read().interner.len())
            .sum()
    }

    /// Counts an operation that is not tied to one shard.
    pub(crate) fn count_misc(&self) {
        if self.config.enable_monitoring {
            self.counters.ops.fetch_add(1, Ordering::Relaxed);
        }
    }
}
