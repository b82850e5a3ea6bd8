//! [`MemoryCache`]: byte values with ttl and tags in memory, a [`CacheTable`] behind the `Cache`
//! port.

use std::{fmt, sync::Arc};

use psm_core::{Cache, CacheKey, CacheTag, DynClock, Result, SystemClock, Ttl, async_trait};
use psm_tables::CacheTable;

use crate::PROVIDER;

/// An in-process cache: values up to 4 MiB, ttl by the cache's clock, tag-based invalidation.
///
/// An expired value is invisible at once and its memory is reclaimed on the next write that meets
/// it, on a periodic sweep (every 1,024 writes) or by [`MemoryCache::purge_expired`].
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same values.
#[derive(Clone)]
pub struct MemoryCache {
    clock: DynClock,
    table: CacheTable,
}

impl MemoryCache {
    /// An empty cache reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty cache reading time from `clock`.
    pub fn with_clock(clock: DynClock) -> Self {
        Self {
            clock,
            table: CacheTable::new(),
        }
    }

    /// Removes every expired value now; returns how many.
    pub fn purge_expired(&self) -> u64 {
        self.table.purge_expired(self.clock.now())
    }

    /// The number of values held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the cache holds no value.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("values", &self.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        Ok(self.table.get(key, self.clock.now()))
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        self.table.set(key, value, ttl, tags, self.clock.now())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.table.delete(key, self.clock.now()))
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        Ok(self.table.delete_tag(tag, self.clock.now()))
    }
}
