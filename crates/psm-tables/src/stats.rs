//! [`TableStats`]: the counters of a [`SessionTable`](crate::SessionTable).

/// Statistics of a [`SessionTable`](crate::SessionTable): the seed's `get_memory_stats` counters
/// without the adapter's own fields (provider name, sweeper period).
///
/// Session counts are a snapshot taken shard by shard, so under concurrent writes they describe
/// no single instant exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Whole seconds since the table was built, by the table's clock.
    pub uptime_seconds: u64,
    /// Sessions held, including expired ones not yet swept.
    pub total_sessions: u64,
    /// Live (unexpired) sessions.
    pub active_sessions: u64,
    /// Live sessions that have an expiry.
    pub sessions_with_ttl: u64,
    /// Distinct users with at least one live session.
    pub unique_users: u64,
    /// The most sessions held at once (including expired ones not yet swept).
    pub peak_session_count: u64,
    /// Sessions stored since the table was built (each `store_permissions_now` and
    /// `create_session_now` that succeeded, replacements included; not `restore`).
    pub total_sessions_created: u64,
    /// Expired sessions removed (by `cleanup`, or a write that met them).
    pub total_sessions_expired: u64,
    /// Session operations served; counted only with `enable_monitoring`.
    ///
    /// Exact on one thread but approximate under concurrency: the per-shard counters are bumped
    /// with a plain load and store instead of an atomic read-modify-write (which would be a full
    /// memory barrier on the check path), so concurrent operations on one shard can lose counts.
    pub total_operations: u64,
    /// `max_sessions`, if set.
    pub storage_limit: Option<u64>,
}
