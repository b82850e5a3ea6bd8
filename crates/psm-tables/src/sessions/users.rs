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
///
/// Ordinary writes insert in place, so the entries stay sorted. [`UserIndex::append`] (used by
/// `restore`, which may meet a user's sessions in any order) only pushes and marks the index
/// unsorted; it is sorted once, at the next read that needs the order. Restoring a user's `n`
/// sessions in any order therefore costs `O(n log n)`, not `O(n^2)`.
#[derive(Default)]
pub(crate) struct UserIndex {
    entries: Vec<(i64, Handle)>,
    /// Whether `entries` may be out of order (after an `append`).
    unsorted: bool,
}

impl UserIndex {
    pub(crate) fn insert(&mut self, created: i64, h: Handle) {
        self.reserve_one();
        if self.unsorted {
            self.entries.push((created, h));
            return;
        }
        let at = self.entries.partition_point(|&(c, _)| c <= created);
        self.entries.insert(at, (created, h));
    }

    /// Adds an entry in `O(1)`, leaving the sort to the next ordered read.
    pub(crate) fn append(&mut self, created: i64, h: Handle) {
        self.reserve_one();
        if self.entries.last().is_some_and(|&(c, _)| c > created) {
            self.unsorted = true;
        }
        self.entries.push((created, h));
    }

    fn reserve_one(&mut self) {
        if self.entries.len() == self.entries.capacity() && self.entries.len() < 16 {
            // Most users hold a handful of sessions: grow those exactly instead of doubling.
            self.entries.reserve_exact(1);
        }
    }

    /// Sorts the entries by `created_at` if an `append` left them out of order.
    fn settle(&mut self) {
        if self.unsorted {
            self.entries.sort_unstable();
            self.unsorted = false;
        }
    }

    /// Removes the entry of the session created at `created` with handle `h`.
    pub(crate) fn remove(&mut self, created: i64, h: Handle) -> bool {
        self.settle();
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

    /// The entries ordered by `created_at` (sessions created in the same microsecond in no
    /// particular order).
    pub(crate) fn entries(&mut self) -> &[(i64, Handle)] {
        self.settle();
        &self.entries
    }

    /// The entries in no particular order (for the consistency checks of the tests).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, Handle)> + '_ {
        self.entries.iter().copied()
    }

    /// The handles in no particular order.
    pub(crate) fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.entries.iter().map(|&(_, h)| h)
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
    fn appended_entries_are_sorted_at_the_next_ordered_read() {
        let mut i = UserIndex::default();
        i.append(10, 1);
        i.append(30, 2);
        assert!(!i.unsorted, "in-order appends keep the index sorted");
        i.append(20, 3);
        i.insert(25, 4);
        i.append(5, 5);
        assert!(i.unsorted);
        assert_eq!(i.handles().count(), 5);
        assert_eq!(i.entries(), [(5, 5), (10, 1), (20, 3), (25, 4), (30, 2)]);
        assert!(!i.unsorted);
        i.append(1, 6);
        assert!(i.remove(20, 3), "remove sorts first");
        assert_eq!(i.entries(), [(1, 6), (5, 5), (10, 1), (25, 4), (30, 2)]);
        // Many entries in reverse order: each append is O(1) and one sort orders them.
        let mut big = UserIndex::default();
        for n in (0..10_000).rev() {
            big.append(n, n as u64);
        }
        assert!(big.entries().windows(2).all(|w| w[0].0 < w[1].0));
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
