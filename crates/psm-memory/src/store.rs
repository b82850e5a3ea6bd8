//! [`MemoryStore`]: the in-process `PermissionStore`, a [`SessionTable`] plus a sweeper.

use std::{fmt, sync::Arc};

use parking_lot::Mutex;
use psm_core::{
    DynClock, NewSession, Page, PermissionCheck, PermissionList, PermissionRef, Result,
    SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, SystemClock, Ttl, UserId,
};
use psm_tables::SessionTable;
use tokio::task::JoinHandle;

use crate::{config::MemoryConfig, stats::MemoryStats};

/// The in-process permission store: sessions with permissions, ttl and per-user limits.
///
/// The sessions live in a [`SessionTable`] (crate `psm-tables`, shared with the file adapter);
/// this type adds the background sweeper, the seed's configuration and statistics, and the
/// [`PermissionStore`](psm_core::PermissionStore) implementation. The table's own docs describe
/// the layout, the quota, expiry and the listing order; [`table`](Self::table) reaches it.
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees and changes the same sessions, counters and
/// sweeper. The data lives until [`close`](psm_core::PermissionStore::close) or
/// [`clear_all_sessions`](Self::clear_all_sessions), or until the last clone is dropped.
///
/// # Expiry
/// A session is expired when `now >= expires_at`, with `now` from the store's [`Clock`](psm_core::Clock).
/// Expiry is lazy: an expired session behaves exactly like a missing one in every call from the
/// moment it expires, and its memory is reclaimed by the background sweeper, by
/// [`cleanup`](Self::cleanup), or when a write meets it.
///
/// # Sweeper
/// [`initialize`](psm_core::PermissionStore::initialize), called inside a Tokio runtime, starts a task
/// that runs [`cleanup`](Self::cleanup) every [`MemoryConfig::cleanup_interval`]. It holds only a weak
/// reference, stops on [`close`](psm_core::PermissionStore::close), and stops when the last clone is
/// dropped. Without a runtime (or with the interval disabled) nothing runs in the background and
/// [`cleanup`](Self::cleanup) is explicit.
///
/// # Quota
/// [`MemoryConfig::max_sessions`] caps the number of live sessions, exactly, also under concurrency:
/// a new session beyond it first purges expired sessions and then fails with
/// `StorageQuotaExceeded`. Replacing an existing session is not a new session, and a
/// `create_session` that evicts makes its own room.
///
/// # Listing order
/// `list_sessions` for one user is ordered by `created_at`, then id (served from a per-user index).
/// Without a user, sessions are listed shard by shard (a shard is picked by a seeded hash of the
/// id), by id within a shard: stable while nothing is written, so paging visits every live
/// session exactly once, but meaningless as an order.
///
/// # Memory
/// A session with five permissions, empty metadata and a 30-byte id costs about 150 bytes in
/// total, indexes included (measured by `cargo bench -p psm-memory --bench memory`); see the crate
/// docs for the layout.
#[derive(Clone)]
pub struct MemoryStore {
    table: SessionTable,
    shared: Arc<Shared>,
}

/// What the clones share besides the table.
struct Shared {
    config: MemoryConfig,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl MemoryStore {
    /// A store with `config`, reading time from the system clock.
    pub fn new(config: MemoryConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A store with `config`, reading time from `clock` (for example a
    /// [`ManualClock`](psm_core::ManualClock) in tests).
    pub fn with_clock(config: MemoryConfig, clock: DynClock) -> Self {
        Self {
            table: SessionTable::with_clock(config.table_config(), clock),
            shared: Arc::new(Shared {
                config,
                sweeper: Mutex::new(None),
            }),
        }
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &MemoryConfig {
        &self.shared.config
    }

    /// The session table the store serves from (shared, not a copy).
    pub fn table(&self) -> &SessionTable {
        &self.table
    }

    /// The seed's `get_memory_stats`. Counts are a snapshot taken shard by shard.
    pub fn memory_stats(&self) -> MemoryStats {
        let interval = self.config().effective_cleanup_interval();
        MemoryStats::new(self.table.stats(), interval.map_or(0, |d| d.as_secs()))
    }

    /// Removes every session (the seed's `clear_all_sessions`) and returns how many live ones it
    /// removed. Interned permission strings are kept.
    pub fn clear_all_sessions(&self) -> u64 {
        self.table.clear_all_sessions()
    }

    /// Removes every expired session now and returns how many (the seed's
    /// `cleanup_expired_sessions`; also what the sweeper runs).
    pub fn cleanup(&self) -> u64 {
        self.table.cleanup()
    }

    /// Synchronous `store_permissions`: an upsert that replaces an existing session whole.
    ///
    /// # Errors
    /// `StorageQuotaExceeded` when the session is new and the store already holds `max_sessions`
    /// live sessions.
    pub fn store_permissions_now(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        self.table.store_permissions_now(id, session)
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
        self.table.create_session_now(id, session, limit)
    }

    /// Synchronous `check_permission`: the fast path (no allocation, one shard read lock).
    #[inline]
    pub fn check_permission_now(&self, id: &SessionIdRef, p: &PermissionRef) -> bool {
        self.table.check_permission_now(id, p)
    }

    /// Synchronous `check_permissions`.
    pub fn check_permissions_now(&self, id: &SessionIdRef, ps: &PermissionList) -> PermissionCheck {
        self.table.check_permissions_now(id, ps)
    }

    /// Synchronous `get_permissions`: a copy of the live session, permissions in stored order.
    pub fn get_permissions_now(&self, id: &SessionIdRef) -> Option<SessionData> {
        self.table.get_permissions_now(id)
    }

    /// Synchronous `get_session_info`.
    pub fn get_session_info_now(&self, id: &SessionIdRef) -> Option<SessionInfo> {
        self.table.get_session_info_now(id)
    }

    /// Synchronous `invalidate_session`: `true` if a live session was removed.
    pub fn invalidate_session_now(&self, id: &SessionIdRef) -> bool {
        self.table.invalidate_session_now(id)
    }

    /// Synchronous `update_permissions`: `false` (changing nothing) for a missing or expired session.
    pub fn update_permissions_now(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> bool {
        self.table.update_permissions_now(id, permissions, ttl)
    }

    /// Synchronous `extend_session_ttl`: renews a live session to now + `ttl`.
    pub fn extend_session_ttl_now(&self, id: &SessionIdRef, ttl: Ttl) -> bool {
        self.table.extend_session_ttl_now(id, ttl)
    }

    /// Synchronous `list_sessions` (see the type docs for the order without a user).
    pub fn list_sessions_now(&self, user: Option<&UserId>, page: Page) -> Vec<SessionId> {
        self.table.list_sessions_now(user, page)
    }

    /// Synchronous `invalidate_user_sessions`: removes every session of `user`, returning how many
    /// live ones.
    pub fn invalidate_user_sessions_now(&self, user: &UserId) -> u64 {
        self.table.invalidate_user_sessions_now(user)
    }

    /// Starts the sweeper when a Tokio runtime is present and the interval is enabled (idempotent).
    pub(crate) fn start_sweeper(&self) {
        let Some(every) = self.config().effective_cleanup_interval() else {
            return;
        };
        let mut slot = self.shared.sweeper.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(handle) = crate::sweeper::spawn(self.table.downgrade(), every)
            && let Some(old) = slot.replace(handle)
        {
            old.abort();
        }
    }

    /// Stops the sweeper, if running.
    pub(crate) fn stop_sweeper(&self) {
        if let Some(h) = self.shared.sweeper.lock().take() {
            h.abort();
        }
    }

    /// Whether a sweeper task is running.
    #[cfg(test)]
    fn sweeper_running(&self) -> bool {
        self.shared
            .sweeper
            .lock()
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.shared.config)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The sweeper holds only a weak reference; stop it now instead of at its next tick.
        if let Some(h) = self.sweeper.get_mut().take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use psm_core::{ManualClock, PermissionStore};

    use super::*;

    fn sid(s: &str) -> &SessionIdRef {
        SessionIdRef::parse(s).unwrap()
    }

    fn session(user: &str, ttl: Option<u64>) -> NewSession {
        NewSession::new(
            UserId::parse(user).unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        )
        .with_ttl(ttl.map(|t| Ttl::from_secs(t).unwrap()))
    }

    fn store_with(config: MemoryConfig) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::at_2024();
        (
            MemoryStore::with_clock(config, Arc::new(clock.clone())),
            clock,
        )
    }

    #[test]
    fn forwards_to_a_shared_table_configured_from_the_memory_config() {
        let (a, _) = store_with(MemoryConfig {
            max_sessions: Some(3),
            shards: 3,
            enable_monitoring: false,
            ..MemoryConfig::default()
        });
        let b = a.clone();
        a.store_permissions_now(sid("s1"), session("u", None))
            .unwrap();
        assert!(b.check_permission_now(sid("s1"), PermissionRef::parse("read").unwrap()));
        assert!(b.table().export(sid("s1")).is_some(), "the table is shared");
        let table = a.table().config();
        assert_eq!(
            (
                table.max_sessions,
                table.shards,
                table.enable_monitoring,
                table.provider
            ),
            (Some(3), 3, false, "memory")
        );
        assert_eq!(
            a.get_session_info_now(sid("s1")).unwrap().provider,
            "memory"
        );
        assert!(b.invalidate_session_now(sid("s1")));
        assert!(a.get_permissions_now(sid("s1")).is_none());
    }

    #[test]
    fn stats_report_the_seed_fields() {
        let (s, clock) = store_with(MemoryConfig {
            max_sessions: Some(100),
            ..MemoryConfig::default()
        });
        s.store_permissions_now(sid("a"), session("u1", Some(10)))
            .unwrap();
        s.store_permissions_now(sid("b"), session("u2", None))
            .unwrap();
        clock.advance(Duration::from_secs(3661));
        let st = s.memory_stats();
        assert_eq!(st.provider, "memory");
        assert_eq!(st.uptime_seconds, 3661);
        assert_eq!((st.total_sessions, st.active_sessions), (2, 1));
        assert_eq!((st.unique_users, st.total_sessions_created), (1, 2));
        assert_eq!(st.total_operations, 2);
        assert_eq!(st.storage_limit, Some(100));
        assert_eq!(st.cleanup_interval, 60);
        let json = serde_json::to_value(&st).unwrap();
        for key in [
            "provider",
            "uptime_seconds",
            "total_sessions",
            "active_sessions",
            "sessions_with_ttl",
            "unique_users",
            "cleanup_interval",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let off = MemoryStore::new(MemoryConfig {
            cleanup_interval: None,
            ..MemoryConfig::default()
        });
        assert_eq!(off.memory_stats().cleanup_interval, 0);
    }

    #[test]
    fn cleanup_is_explicit_without_a_runtime() {
        let (s, clock) = store_with(MemoryConfig::default());
        s.store_permissions_now(sid("short"), session("u", Some(10)))
            .unwrap();
        s.store_permissions_now(sid("forever"), session("v", None))
            .unwrap();
        clock.advance(Duration::from_secs(10));
        assert!(!s.sweeper_running());
        assert_eq!(s.memory_stats().total_sessions, 2);
        assert_eq!(s.cleanup(), 1);
        assert_eq!(s.memory_stats().total_sessions, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_removes_expired_sessions_inside_a_runtime() {
        let config = MemoryConfig {
            cleanup_interval: Some(Duration::from_secs(5)),
            ..MemoryConfig::default()
        };
        let (s, clock) = store_with(config);
        s.initialize().await.unwrap();
        s.initialize().await.unwrap();
        assert!(s.sweeper_running());
        s.store_permissions_now(sid("a"), session("u", Some(1)))
            .unwrap();
        s.store_permissions_now(sid("b"), session("u", None))
            .unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(s.memory_stats().total_sessions, 2);
        // Let the sweeper's timer fire (Tokio's paused clock jumps to the next timer).
        tokio::time::sleep(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        assert_eq!(s.memory_stats().total_sessions, 1);
        assert_eq!(s.memory_stats().total_sessions_expired, 1);
        s.close().await.unwrap();
        s.close().await.unwrap();
        assert!(!s.sweeper_running());
        assert_eq!(s.memory_stats().total_sessions, 0, "close drops the data");
        s.initialize().await.unwrap();
        assert!(
            s.sweeper_running(),
            "initialize after close starts it again"
        );
    }

    #[tokio::test]
    async fn the_sweeper_never_keeps_the_store_alive() {
        let (s, _) = store_with(MemoryConfig::default());
        s.initialize().await.unwrap();
        let weak = s.table().downgrade();
        let clone = s.clone();
        drop(s);
        assert!(weak.upgrade().is_some(), "a clone still holds it");
        drop(clone);
        assert!(
            weak.upgrade().is_none(),
            "the sweeper holds only a weak reference"
        );
    }

    #[tokio::test]
    async fn a_disabled_interval_starts_no_sweeper() {
        let (s, _) = store_with(MemoryConfig {
            cleanup_interval: None,
            ..MemoryConfig::default()
        });
        s.initialize().await.unwrap();
        assert!(!s.sweeper_running());
    }

    #[test]
    fn debug_output_shows_no_session_ids() {
        let (s, _) = store_with(MemoryConfig::default());
        s.store_permissions_now(sid("secret_session_id"), session("u", None))
            .unwrap();
        let debug = format!("{s:?}");
        assert!(debug.contains("MemoryStore") && !debug.contains("secret_session_id"));
    }
}
