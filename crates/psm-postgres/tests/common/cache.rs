//! A tiny in-test `Cache` (the crate may not depend on another adapter), on the real clock.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use parking_lot::Mutex;
use psm_core::{Cache, CacheKey, CacheTag, Result, Ttl, async_trait, check_cache_value};

type Entry = (Vec<u8>, Instant, Vec<CacheTag>);

#[derive(Debug, Default)]
pub struct TestCache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
    pub gets: AtomicU64,
    pub hits: AtomicU64,
}

impl TestCache {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Cache for TestCache {
    fn provider_name(&self) -> &str {
        "test"
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let map = self.entries.lock();
        let hit = map
            .get(key)
            .filter(|(_, until, _)| Instant::now() < *until)
            .map(|(v, _, _)| v.clone());
        // Generation lookups (`…:gen:<tag>`) are bookkeeping, not result hits.
        if hit.is_some() && !key.as_str().contains(":gen:") {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        Ok(hit)
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        check_cache_value(value)?;
        self.entries.lock().insert(
            key.clone(),
            (
                value.to_vec(),
                Instant::now() + ttl.as_duration(),
                tags.to_vec(),
            ),
        );
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.entries.lock().remove(key).is_some())
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        let mut map = self.entries.lock();
        let before = map.len();
        map.retain(|_, (_, _, tags)| !tags.contains(tag));
        Ok((before - map.len()) as u64)
    }
}
