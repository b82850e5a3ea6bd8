//! The store-wide permission interner: each distinct permission string gets a `u32` id once.
//!
//! Sessions then hold small arrays of ids instead of strings, so a check is an integer search and
//! a permission shared by many sessions is stored once. The interner only grows: ids are never
//! recycled, because a session may hold an id at any time and recycling would need a pass over
//! every session. Its size is bounded by the number of distinct permission strings ever stored.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use parking_lot::RwLock;
use psm_core::{Permission, PermissionList, PermissionRef};

/// A permission string ↔ `u32` table. The lock is a leaf: it is never held while another lock is
/// taken, so it cannot take part in a deadlock.
pub(crate) struct Interner {
    hasher: RandomState,
    inner: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// Ids, hashed by their string, so each string is kept once (in `strings`).
    ids: HashTable<u32>,
    /// The string of each id, indexed by id.
    strings: Vec<Permission>,
}

impl Table {
    fn find(&self, hash: u64, s: &str) -> Option<u32> {
        let strings = &self.strings;
        self.ids
            .find(hash, |&id| {
                strings.get(id as usize).is_some_and(|p| p.as_str() == s)
            })
            .copied()
    }
}

impl Interner {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::default(),
            inner: RwLock::new(Table::default()),
        }
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The id of `p`, or `None` when no session ever held it (then no session holds it now).
    pub(crate) fn lookup(&self, p: &PermissionRef) -> Option<u32> {
        let hash = self.hash(p.as_str());
        self.inner.read().find(hash, p.as_str())
    }

    /// The ids of `ps` in order, `None` for permissions never interned; one lock for the batch.
    pub(crate) fn lookup_all(&self, ps: &PermissionList) -> Vec<Option<u32>> {
        let hashes: Vec<u64> = ps.iter_str().map(|s| self.hash(s)).collect();
        let table = self.inner.read();
        ps.iter_str()
            .zip(hashes)
            .map(|(s, h)| table.find(h, s))
            .collect()
    }

    /// The ids of `ps` in order, interning the ones not seen yet.
    pub(crate) fn intern_all(&self, ps: &PermissionList) -> Vec<u32> {
        let hashes: Vec<u64> = ps.iter_str().map(|s| self.hash(s)).collect();
        {
            // Fast path: every permission is known already (the common case once a store is warm).
            let table = self.inner.read();
            let found: Option<Vec<u32>> = ps
                .iter_str()
                .zip(&hashes)
                .map(|(s, &h)| table.find(h, s))
                .collect();
            if let Some(ids) = found {
                return ids;
            }
        }
        let mut table = self.inner.write();
        let mut ids = Vec::with_capacity(ps.len());
        for (p, &hash) in ps.iter().zip(&hashes) {
            let id = match table.find(hash, p.as_str()) {
                Some(id) => id,
                None => {
                    // More than u32::MAX distinct permissions cannot fit in memory anyway
                    // (each is at least one byte plus its slot), so the id space never runs out.
                    let id = u32::try_from(table.strings.len()).unwrap_or(u32::MAX);
                    let Table {
                        ids: index,
                        strings,
                    } = &mut *table;
                    strings.push(p.clone());
                    let hasher = &self.hasher;
                    index.insert_unique(hash, id, |&i| {
                        strings
                            .get(i as usize)
                            .map_or(0, |s| hasher.hash_one(s.as_str()))
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
        let table = self.inner.read();
        ids.into_iter()
            .filter_map(|id| table.strings.get(id as usize).cloned())
            .collect()
    }

    /// How many distinct permissions were interned.
    pub(crate) fn len(&self) -> usize {
        self.inner.read().strings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> PermissionList {
        PermissionList::parse(items).unwrap()
    }

    #[test]
    fn ids_are_stable_and_strings_round_trip() {
        let i = Interner::new();
        let a = i.intern_all(&list(&["read", "write"]));
        let b = i.intern_all(&list(&["write", "admin", "read"]));
        assert_eq!(a, [0, 1]);
        assert_eq!(b, [1, 2, 0]);
        assert_eq!(i.len(), 3);
        let names: Vec<String> = i.resolve(b).iter().map(ToString::to_string).collect();
        assert_eq!(names, ["write", "admin", "read"]);
    }

    #[test]
    fn lookup_never_interns() {
        let i = Interner::new();
        i.intern_all(&list(&["read"]));
        let missing = PermissionRef::parse("Read").unwrap();
        assert_eq!(i.lookup(missing), None);
        assert_eq!(i.lookup(PermissionRef::parse("read").unwrap()), Some(0));
        assert_eq!(i.lookup_all(&list(&["x", "read"])), [None, Some(0)]);
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn many_permissions_survive_rehashing() {
        let i = Interner::new();
        let names: Vec<String> = (0..5000).map(|n| format!("perm:{n}")).collect();
        for chunk in names.chunks(1000) {
            i.intern_all(&PermissionList::parse(chunk).unwrap());
        }
        for (n, name) in names.iter().enumerate() {
            assert_eq!(
                i.lookup(PermissionRef::parse(name).unwrap()),
                Some(n as u32)
            );
        }
    }
}
