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

/// A [`TestCache`] whose next write of a key containing `needle` stops until the test lets it
/// go: the way to force a fetch's write to land after an invalidation.
#[derive(Debug, Default)]
pub struct GatedCache {
    pub inner: TestCache,
    gate: Mutex<Option<Gate>>,
    /// Writes of gated keys that went through.
    pub gated_writes: AtomicU64,
}

#[derive(Debug)]
struct Gate {
    needle: String,
    reached: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
}

/// The test's side of an armed gate.
#[derive(Debug)]
pub struct Armed {
    /// Fires when the write has reached the gate.
    pub reached: tokio::sync::oneshot::Receiver<()>,
    /// Send to let the write go on.
    pub release: tokio::sync::oneshot::Sender<()>,
}

impl GatedCache {
    /// Stops the next write of a key containing `needle`.
    pub fn arm(&self, needle: &str) -> Armed {
        let (reached_tx, reached) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        *self.gate.lock() = Some(Gate {
            needle: needle.to_owned(),
            reached: reached_tx,
            release: release_rx,
        });
        Armed { reached, release }
    }
}

#[async_trait]
impl Cache for GatedCache {
    fn provider_name(&self) -> &str {
        "gated"
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        let gate = {
            let mut slot = self.gate.lock();
            match &*slot {
                Some(g) if key.as_str().contains(&g.needle) => slot.take(),
                _ => None,
            }
        };
        if let Some(g) = gate {
            let _ = g.reached.send(());
            let _ = g.release.await;
            self.gated_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.set(key, value, ttl, tags).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        self.inner.delete(key).await
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        self.inner.delete_tag(tag).await
    }
}
