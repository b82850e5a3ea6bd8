//! [`MemoryCache`]: byte values with ttl and tags, in memory.

use std::{fmt, sync::Arc};

use hashbrown::{HashMap, HashSet};
use parking_lot::RwLock;
use psm_core::{
    Cache, CacheKey, CacheTag, Result, SystemClock, Ttl, async_trait, check_cache_value,
};

use crate::store::PROVIDER;

/// Writes between two sweeps of expired values, so keys that are never read again do not pile up.
const SWEEP_EVERY: u32 = 1024;

/// An in-process cache: values up to 4 MiB, ttl by the cache's clock, tag-based invalidation.
///
/// An expired value is invisible at once and its memory is reclaimed on the next write that meets
/// it, on a periodic sweep (every 1,024 writes) or by [`MemoryCache::purge_expired`].
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same values.
#[derive(Clone)]
pub struct MemoryCache {
    clock: psm_core::DynClock,
    state: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<CacheKey, Entry>,
    tags: HashMap<CacheTag, HashSet<CacheKey>>,
    writes_since_sweep: u32,
}

struct Entry {
    value: Box<[u8]>,
    /// Microseconds since the Unix epoch.
    expires: i64,
    tags: Box<[CacheTag]>,
}

impl State {
    /// Removes `key` and its tag memberships.
    fn remove(&mut self, key: &CacheKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        for tag in entry.tags.iter() {
            if let Some(keys) = self.tags.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
        Some(entry)
    }

    fn purge(&mut self, now: i64) -> u64 {
        let expired: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.expires)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.remove(k);
        }
        expired.len() as u64
    }
}

impl MemoryCache {
    /// An empty cache reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty cache reading time from `clock`.
    pub fn with_clock(clock: psm_core::DynClock) -> Self {
        Self {
            clock,
            state: Arc::default(),
        }
    }

    /// Removes every expired value now; returns how many.
    pub fn purge_expired(&self) -> u64 {
        let now = self.now();
        self.state.write().purge(now)
    }

    /// The number of values held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.state.read().entries.len()
    }

    /// Whether the cache holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> i64 {
        self.clock.now().as_unix_micros()
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
        let now = self.now();
        let state = self.state.read();
        Ok(state
            .entries
            .get(key)
            .filter(|e| now < e.expires)
            .map(|e| e.value.to_vec()))
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        check_cache_value(value)?;
        let now = self.now();
        let expires = psm_core::Timestamp::from_unix_micros(now)
            .plus_ttl(ttl)
            .as_unix_micros();
        let mut tag_list: Vec<CacheTag> = Vec::with_capacity(tags.len());
        for t in tags {
            if !tag_list.contains(t) {
                tag_list.push(t.clone());
            }
        }
        let entry = Entry {
            value: value.into(),
            expires,
            tags: tag_list.into_boxed_slice(),
        };
        let mut state = self.state.write();
        state.remove(key);
        for tag in entry.tags.iter() {
            state
                .tags
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        state.entries.insert(key.clone(), entry);
        state.writes_since_sweep += 1;
        if state.writes_since_sweep >= SWEEP_EVERY {
            state.writes_since_sweep = 0;
            state.purge(now);
        }
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        let now = self.now();
        Ok(self
            .state
            .write()
            .remove(key)
            .is_some_and(|e| now < e.expires))
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        let now = self.now();
        let mut state = self.state.write();
        let Some(keys) = state.tags.remove(tag) else {
            return Ok(0);
        };
        let mut live = 0;
        for key in &keys {
            if state.remove(key).is_some_and(|e| now < e.expires) {
                live += 1;
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use psm_core::{ErrorKind, MAX_CACHE_VALUE_BYTES, ManualClock};

    use super::*;

    fn key(s: &str) -> CacheKey {
        CacheKey::parse(s).unwrap()
    }

    fn tag(s: &str) -> CacheTag {
        CacheTag::parse(s).unwrap()
    }

    #[tokio::test]
    async fn ttl_tags_and_size_limit() {
        let clock = ManualClock::at_2024();
        let c = MemoryCache::with_clock(Arc::new(clock.clone()));
        let shared = c.clone();
        let ttl = Ttl::from_secs(10).unwrap();
        c.set(&key("a"), b"1", ttl, &[tag("t"), tag("t")])
            .await
            .unwrap();
        c.set(&key("b"), b"2", ttl, &[tag("t"), tag("u")])
            .await
            .unwrap();
        c.set(&key("c"), b"3", ttl, &[]).await.unwrap();
        assert_eq!(
            shared.get(&key("a")).await.unwrap().as_deref(),
            Some(&b"1"[..]),
            "clones share state"
        );
        // Overwriting replaces the tags.
        c.set(&key("b"), b"2", ttl, &[tag("u")]).await.unwrap();
        assert_eq!(c.delete_tag(&tag("t")).await.unwrap(), 1);
        assert!(c.get(&key("a")).await.unwrap().is_none());
        assert!(c.get(&key("b")).await.unwrap().is_some());
        let big = vec![0u8; MAX_CACHE_VALUE_BYTES + 1];
        assert_eq!(
            c.set(&key("c"), &big, ttl, &[]).await.unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert_eq!(
            c.get(&key("c")).await.unwrap().as_deref(),
            Some(&b"3"[..]),
            "a rejected set changes nothing"
        );
        clock.advance(Duration::from_secs(10));
        assert!(c.get(&key("b")).await.unwrap().is_none());
        assert!(
            !c.delete(&key("c")).await.unwrap(),
            "an expired value is not a live removal"
        );
        assert_eq!(c.purge_expired(), 1);
        assert!(c.is_empty());
        assert!(c.state.read().tags.is_empty());
    }
}
