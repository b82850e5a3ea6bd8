//! A shard's permission interner: each distinct permission string gets a `u32` id once.
//!
//! Sessions hold small arrays of ids instead of strings, so a check is an integer search and a
//! permission shared by many sessions is stored once per shard. Each session shard owns one
//! interner, read and written under the shard's own lock, and a session's ids refer to its shard's
//! interner (a session never moves between shards: the shard is chosen by a hash of its id). A
//! check therefore needs no lock besides the shard read lock it takes anyway; a store-wide interner
//! would cost a second lock, whose atomic read-modify-write instructions are full barriers on x86
//! and stop consecutive checks from overlapping their cache misses.
//!
//! The interner only grows: ids are never recycled, because a session may hold an id at any time
//! and recycling would need a pass over the shard. Its size is bounded by the number of distinct
//! permission strings ever stored in the shard.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use psm_core::{Permission, PermissionList};

/// A permission string ↔ `u32` table. Callers pass the string hashes (computed before taking the
/// shard lock, with the store's hasher) and, to insert, that hasher.
#[derive(Default)]
pub(crate) struct Interner {
    /// Ids, hashed by their string, so each string is kept once (in `strings`).
    ids: HashTable<u32>,
    /// The string of each id, indexed by id.
    strings: Vec<Permission>,
}

/// The hash of a permission string, as every interner expects it.
pub(crate) fn hash_permission(hasher: &RandomState, s: &str) -> u64 {
    hasher.hash_one(s.as_bytes())
}

impl Interner {
    /// The id of `s` (whose hash is `hash`), or `None` when no session of the shard ever held it
    /// (then no session of the shard holds it now).
    pub(crate) fn lookup(&self, hash: u64, s: &str) -> Option<u32> {
        let strings = &self.strings;
        self.ids
            .find(hash, |&id| {
                strings.get(id as usize).is_some_and(|p| p.as_str() == s)
            })
            .copied()
    }

    /// The ids of `ps` in order (`hashes` are their hashes), interning the ones not seen yet.
    pub(crate) fn intern_all(
        &mut self,
        ps: &PermissionList,
        hashes: &[u64],
        hasher: &RandomState,
    ) -> Vec<u32> {
        let mut ids = Vec::with_capacity(ps.len());
        for (p, &hash) in ps.iter().zip(hashes) {
            let id = match self.lookup(hash, p.as_str()) {
                Some(id) => id,
                None => {
                    // More than u32::MAX distinct permissions cannot fit in memory anyway
                    // (each is at least one byte plus its slot), so the id space never runs out.
                    let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
                    self.strings.push(p.clone());
                    let strings = &self.strings;
                    self.ids.insert_unique(hash, id, |&i| {
                        strings
                            .get(i as usize)
                            .map_or(0, |s| hash_permission(hasher, s.as_str()))
                    });
                    id
                }
            };
            ids.push(id);
        }
        ids
    }

    /// The permissions of `ids`, in order. Unknown ids (impossible for ids this interner issued)
    /// are skipped.
    pub(crate) fn resolve(&self, ids: impl IntoIterator<Item = u32>) -> Vec<Permission> {
        ids.into_iter()
            .filter_map(|id| self.strings.get(id as usize).cloned())
            .collect()
    }

    /// How many distinct permissions were interned.
    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }
}

#[cfg(test)]
mod tests {
    use psm_core::PermissionRef;

    use super::*;

    fn list(items: &[&str]) -> PermissionList {
        PermissionList::parse(items).unwrap()
    }

    fn hashes(h: &RandomState, ps: &PermissionList) -> Vec<u64> {
        ps.iter_str().map(|s| hash_permission(h, s)).collect()
    }

    fn lookup(i: &Interner, h: &RandomState, s: &str) -> Option<u32> {
        let p = PermissionRef::parse(s).unwrap();
        i.lookup(hash_permission(h, p.as_str()), p.as_str())
    }

    #[test]
    fn ids_are_stable_and_strings_round_trip() {
        let h = RandomState::default();
        let mut i = Interner::default();
        let (a, b) = (list(&["read", "write"]), list(&["write", "admin", "read"]));
        let a = i.intern_all(&a, &hashes(&h, &a), &h);
        let b = i.intern_all(&b, &hashes(&h, &b), &h);
        assert_eq!(a, [0, 1]);
        assert_eq!(b, [1, 2, 0]);
        assert_eq!(i.len(), 3);
        let names: Vec<String> = i.resolve(b).iter().map(ToString::to_string).collect();
        assert_eq!(names, ["write", "admin", "read"]);
    }

    #[test]
    fn lookup_never_interns() {
        let h = RandomState::default();
        let mut i = Interner::default();
        let read = list(&["read"]);
        i.intern_all(&read, &hashes(&h, &read), &h);
        assert_eq!(lookup(&i, &h, "Read"), None);
        assert_eq!(lookup(&i, &h, "read"), Some(0));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn many_permissions_survive_rehashing() {
        let h = RandomState::default();
        let mut i = Interner::default();
        let names: Vec<String> = (0..5000).map(|n| format!("perm:{n}")).collect();
        for chunk in names.chunks(1000) {
            let ps = PermissionList::parse(chunk).unwrap();
            i.intern_all(&ps, &hashes(&h, &ps), &h);
        }
        for (n, name) in names.iter().enumerate() {
            assert_eq!(lookup(&i, &h, name), Some(n as u32));
        }
    }
}
