//! [`CacheTable`]: byte values with ttl and tags.

use std::{fmt, sync::Arc};

use hashbrown::{HashMap, HashSet};
use parking_lot::RwLock;
use psm_core::{CacheKey, CacheTag, Result, Timestamp, Ttl, check_cache_value};

/// Writes between two sweeps of expired values, so keys that are never read again do not pile up.
const SWEEP_EVERY: u32 = 1024;

/// A cache of byte values up to 4 MiB with ttl and tag-based invalidation (the logic of the `Cache`
/// port, synchronous, with time passed in).
///
/// An expired value is invisible at once and its memory is reclaimed on the next write that meets
/// it, on a periodic sweep (every 1,024 writes) or by [`CacheTable::purge_expired`].
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same values.
#[derive(Clone, Default)]
pub struct CacheTable {
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

impl CacheTable {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key` if it is live at `now`.
    pub fn get(&self, key: &CacheKey, now: Timestamp) -> Option<Vec<u8>> {
        let now = now.as_unix_micros();
        let state = self.state.read();
        state
            .entries
            .get(key)
            .filter(|e| now < e.expires)
            .map(|e| e.value.to_vec())
    }

    /// Stores `value` under `key` until `now + ttl`, member of `tags` (duplicates ignored),
    /// replacing the key's value and tags.
    ///
    /// # Errors
    /// `Validation` for a value over 4 MiB; nothing changes then.
    pub fn set(
        &self,
        key: &CacheKey,
        value: &[u8],
        ttl: Ttl,
        tags: &[CacheTag],
        now: Timestamp,
    ) -> Result<()> {
        check_cache_value(value)?;
        let expires = now.plus_ttl(ttl).as_unix_micros();
        let now = now.as_unix_micros();
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

    /// Removes `key`; `true` if its value was live at `now`.
    pub fn delete(&self, key: &CacheKey, now: Timestamp) -> bool {
        let now = now.as_unix_micros();
        self.state
            .write()
            .remove(key)
            .is_some_and(|e| now < e.expires)
    }

    /// Removes every value tagged `tag`; returns how many were live at `now`.
    pub fn delete_tag(&self, tag: &CacheTag, now: Timestamp) -> u64 {
        let now = now.as_unix_micros();
        let mut state = self.state.write();
        let Some(keys) = state.tags.remove(tag) else {
            return 0;
        };
        let mut live = 0;
        for key in &keys {
            if state.remove(key).is_some_and(|e| now < e.expires) {
                live += 1;
            }
        }
        live
    }

    /// Removes every value expired at `now`; returns how many.
    pub fn purge_expired(&self, now: Timestamp) -> u64 {
        self.state.write().purge(now.as_unix_micros())
    }

    /// The number of values held, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.state.read().entries.len()
    }

    /// Whether the cache holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for CacheTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheTable")
            .field("values", &self.len())
            .finish_non_exhaustive()
    }
}

impl CacheTable {
    /// Removes everything (a durable adapter reloading from disk starts from an empty table).
    pub fn clear(&self) {
        *self.state.write() = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use psm_core::{Clock, ErrorKind, MAX_CACHE_VALUE_BYTES, ManualClock};

    use super::*;

    fn key(s: &str) -> CacheKey {
        CacheKey::parse(s).unwrap()
    }

    fn tag(s: &str) -> CacheTag {
        CacheTag::parse(s).unwrap()
    }

    #[test]
    fn ttl_tags_and_size_limit() {
        let clock = ManualClock::at_2024();
        let c = CacheTable::new();
        let shared = c.clone();
        let ttl = Ttl::from_secs(10).unwrap();
        c.set(&key("a"), b"1", ttl, &[tag("t"), tag("t")], clock.now())
            .unwrap();
        c.set(&key("b"), b"2", ttl, &[tag("t"), tag("u")], clock.now())
            .unwrap();
        c.set(&key("c"), b"3", ttl, &[], clock.now()).unwrap();
        assert_eq!(
            shared.get(&key("a"), clock.now()).as_deref(),
            Some(&b"1"[..]),
            "clones share state"
        );
        // Overwriting replaces the tags.
        c.set(&key("b"), b"2", ttl, &[tag("u")], clock.now())
            .unwrap();
        assert_eq!(c.delete_tag(&tag("t"), clock.now()), 1);
        assert!(c.get(&key("a"), clock.now()).is_none());
        assert!(c.get(&key("b"), clock.now()).is_some());
        let big = vec![0u8; MAX_CACHE_VALUE_BYTES + 1];
        assert_eq!(
            c.set(&key("c"), &big, ttl, &[], clock.now())
                .unwrap_err()
                .kind(),
            ErrorKind::Validation
        );
        assert_eq!(
            c.get(&key("c"), clock.now()).as_deref(),
            Some(&b"3"[..]),
            "a rejected set changes nothing"
        );
        clock.advance(Duration::from_secs(10));
        assert!(c.get(&key("b"), clock.now()).is_none());
        assert!(
            !c.delete(&key("c"), clock.now()),
            "an expired value is not a live removal"
        );
        assert_eq!(c.purge_expired(clock.now()), 1);
        assert!(c.is_empty());
        assert!(c.state.read().tags.is_empty());
    }
}
