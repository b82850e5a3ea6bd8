//! [`FileCache`]: the file family's `Cache`, kept in memory.

use psm_core::{Cache, CacheKey, CacheTag, Result, Ttl, async_trait};

use crate::{FileStorage, storage::PROVIDER};

/// The cache of one storage directory, **kept in memory only**.
///
/// A cache holds copies of data that lives elsewhere (user lookups, query results), and the
/// `Cache` contract lets it lose entries at any time; persisting it would put an fsync on every
/// `set` to protect nothing. So the file family's cache is the in-memory cache table: it starts
/// empty when the directory is opened and follows the directory's open/closed state.
///
/// # Clone
/// Cloning is cheap and shares the entries.
#[derive(Debug, Clone)]
pub struct FileCache {
    storage: FileStorage,
}

impl FileCache {
    pub(crate) fn new(storage: FileStorage) -> Self {
        Self { storage }
    }
}

#[async_trait]
impl Cache for FileCache {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.cache.get(key, inner.now()))
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        inner.tables.cache.set(key, value, ttl, tags, inner.now())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.cache.delete(key, inner.now()))
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.cache.delete_tag(tag, inner.now()))
    }
}
