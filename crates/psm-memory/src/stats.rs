//! The seed's `get_memory_stats` record.

use psm_tables::TableStats;
use serde::Serialize;

/// Statistics of a [`MemoryStore`](crate::MemoryStore), with the seed's field names.
///
/// Session counts are a snapshot taken shard by shard, so under concurrent writes they describe
/// no single instant exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Always `"memory"`.
    pub provider: &'static str,
    /// Whole seconds since the store was built, by the store's clock.
    pub uptime_seconds: u64,
    /// Sessions held in memory, including expired ones not yet swept.
    pub total_sessions: u64,
    /// Live (unexpired) sessions.
    pub active_sessions: u64,
    /// Live sessions that have an expiry.
    pub sessions_with_ttl: u64,
    /// Distinct users with at least one live session.
    pub unique_users: u64,
    /// The most sessions held at once (including expired ones not yet swept).
    pub peak_session_count: u64,
    /// Sessions stored since the store was built (each `store_permissions` and `create_session`
    /// that succeeded, replacements included).
    pub total_sessions_created: u64,
    /// Expired sessions removed (by the sweeper, `cleanup`, or a write that met them).
    pub total_sessions_expired: u64,
    /// Session operations served; counted only with `enable_monitoring`.
    ///
    /// Exact on one thread but approximate under concurrency: the per-shard counters are bumped
    /// with a plain load and store instead of an atomic read-modify-write (which would be a full
    /// memory barrier on the check path), so concurrent operations on one shard can lose counts.
    pub total_operations: u64,
    /// `max_sessions`, if set.
    pub storage_limit: Option<u64>,
    /// The sweeper period in seconds (0 when disabled).
    pub cleanup_interval: u64,
}

impl MemoryStats {
    /// The table's counters plus the adapter's own fields.
    pub(crate) fn new(table: TableStats, cleanup_interval: u64) -> Self {
        let TableStats {
            uptime_seconds,
            total_sessions,
            active_sessions,
            sessions_with_ttl,
            unique_users,
            peak_session_count,
            total_sessions_created,
            total_sessions_expired,
            total_operations,
            storage_limit,
        } = table;
        Self {
            provider: crate::PROVIDER,
            uptime_seconds,
            total_sessions,
            active_sessions,
            sessions_with_ttl,
            unique_users,
            peak_session_count,
            total_sessions_created,
            total_sessions_expired,
            total_operations,
            storage_limit,
            cleanup_interval,
        }
    }
}
