//! [`TableConfig`]: how a [`SessionTable`](crate::SessionTable) is built.

/// The default number of shards.
pub const DEFAULT_SHARDS: usize = 64;
/// The most shards a table uses; larger requests are clamped.
pub const MAX_SHARDS: usize = 1 << 16;
/// The provider name a table reports unless configured otherwise.
pub const DEFAULT_PROVIDER: &str = "memory";

/// Configuration of a [`SessionTable`](crate::SessionTable).
///
/// Build it with struct update syntax over [`Default`]: 64 shards, monitoring on, no session limit,
/// provider name `"memory"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The most live sessions the table holds; `None` is unlimited. A new session beyond it fails
    /// with `StorageQuotaExceeded` after expired sessions are purged. A
    /// [`restore`](crate::SessionTable::restore) is never refused by it, so a table rebuilt with a
    /// lower quota than it was filled under may hold more until sessions go.
    pub max_sessions: Option<usize>,
    /// Whether [`TableStats::total_operations`](crate::TableStats::total_operations) is counted.
    pub enable_monitoring: bool,
    /// The number of lock shards (default 64), rounded up to a power of two and clamped to
    /// 1 ..= 65,536. More shards mean less lock contention and a little more fixed memory.
    pub shards: usize,
    /// The provider name reported by
    /// [`get_session_info_now`](crate::SessionTable::get_session_info_now) and in quota errors
    /// (`"memory"` by default; a durable adapter sets its own, such as `"file"`).
    pub provider: &'static str,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            max_sessions: None,
            enable_monitoring: true,
            shards: DEFAULT_SHARDS,
            provider: DEFAULT_PROVIDER,
        }
    }
}

impl TableConfig {
    /// The shard count actually used: a power of two within 1 ..= [`MAX_SHARDS`].
    pub fn effective_shards(&self) -> usize {
        self.shards.clamp(1, MAX_SHARDS).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_shard_clamping() {
        let d = TableConfig::default();
        assert_eq!(
            (d.max_sessions, d.enable_monitoring, d.provider),
            (None, true, "memory")
        );
        assert_eq!(d.effective_shards(), 64);
        let with = |shards| {
            TableConfig {
                shards,
                ..TableConfig::default()
            }
            .effective_shards()
        };
        assert_eq!(with(0), 1);
        assert_eq!(with(1), 1);
        assert_eq!(with(100), 128);
        assert_eq!(with(usize::MAX), MAX_SHARDS);
    }
}
