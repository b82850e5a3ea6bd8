//! The per-user session index: each user's sessions as `(created_at, handle)` pairs.
//!
//! A handle names a session by `(shard, slot)` in 8 bytes instead of repeating its id. Entries are
//! sorted by `created_at`; sessions created in the same microsecond keep insertion order here and
//! are ordered by id when read (listing and eviction read the ids anyway).

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use psm_core::UserId;

/// `(shard << 32) | slot`.
pub(crate) type Handle = u64;

pub(crate) fn handle(shard: usize, slot: u32) -> Handle {
    ((shard as u64) << 32) | u64::from(slot)
}

pub(crate) fn split(h: Handle) -> (usize, u32) {
    // Shard numbers are below 2^16 and slots fit in the low 32 bits by construction.
    ((h >> 32) as usize, (h & u64::from(u32::MAX)) as u32)
}

/// One user's sessions.
#[derive(Default)]
pub(crate) struct UserIndex {
    entries: Vec<(i64, Handle)>,
}

impl UserIndex {
    pub(crate) fn insert(&mut self, created: i64, h: Handle) {
        if self.entries.len() == self.entries.capacity() && self.entries.len() < 16 {
            // Most users hold a handful of sessions: grow those exactly instead of doubling.
            self.entries.reserve_exact(1);
        }
        let at = self.entries.partition_point(|&(c, _)| c <= created);
        self.entries.insert(at, (created, h));
    }

    /// Removes the entry of the session created at `created` with handle `h`.
    pub(crate) fn remove(&mut self, created: i64, h: Handle) -> bool {
        let start = self.entries.partition_point(|&(c, _)| c < created);
        let found = self.entries[start..]
            .iter()
            .take_while(|&&(c, _)| c == created)
            .position(|&(_, x)| x == h);
        match found {
            Some(offset) => {
                self.entries.remove(start + offset);
                true
            }
            None => false,
        }
    }

    pub(crate) fn entries(&self) -> &[(i64, Handle)] {
        &self.entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The users of one user shard. The key is shared (`Arc`) with the users' session records.
pub(crate) type UserMap = HashMap<Arc<UserId>, UserIndex>;

/// A user shard behind its lock, aligned so two shards never share a cache line.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct UserShard {
    pub(crate) map: Mutex<UserMap>,
}

/// The shared id of `user`, adding the user (with an empty index) when it has none yet.
pub(crate) fn user_arc(map: &mut UserMap, user: &UserId) -> Arc<UserId> {
    if let Some((k, _)) = map.get_key_value(user) {
        return Arc::clone(k);
    }
    let k = Arc::new(user.clone());
    map.insert(Arc::clone(&k), UserIndex::default());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        for (shard, slot) in [(0, 0), (65_535, u32::MAX), (7, 12_345)] {
            assert_eq!(split(handle(shard, slot)), (shard, slot));
        }
    }

    #[test]
    fn entries_stay_sorted_by_creation_and_remove_exactly() {
        let mut i = UserIndex::default();
        i.insert(20, 1);
        i.insert(10, 2);
        i.insert(20, 3);
        i.insert(30, 4);
        assert_eq!(i.entries(), [(10, 2), (20, 1), (20, 3), (30, 4)]);
        assert!(i.remove(20, 3));
        assert!(!i.remove(20, 3));
        assert!(!i.remove(10, 1), "the handle must match too");
        assert_eq!(i.entries(), [(10, 2), (20, 1), (30, 4)]);
        assert_eq!(i.entries.capacity(), 4, "small indexes grow exactly");
    }

    #[test]
    fn user_arc_is_shared() {
        let mut m = UserMap::default();
        let u = UserId::parse("alice").unwrap();
        let a = user_arc(&mut m, &u);
        let b = user_arc(&mut m, &u);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(m.len(), 1);
    }
}
