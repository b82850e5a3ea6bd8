//! Taking several locks at once, always in the one global order.
//!
//! # Lock order
//! Every path that holds more than one lock takes them in this order, which rules out deadlock:
//! 1. user shards (`Inner::users`), in ascending index;
//! 2. session shards (`Inner::shards`), in ascending index.
//!
//! There is no third class: each shard's permission interner lives inside the shard's table and is
//! guarded by the shard's lock.
//!
//! Paths holding a user shard may read session shards one at a time (each released before the next)
//! instead, since holding one lock of a class never waits for a lower one. No path takes a user
//! shard while holding a session shard: writers find a session's owner with a short read (`peek`),
//! release it, lock the owner's user shard and the session shard, and retry if the owner changed.

use parking_lot::{MutexGuard, RwLockWriteGuard};

use super::{Inner, shard::ShardTable, users::UserMap};

/// Held user shards, ascending and distinct.
pub(crate) struct UserLocks<'a> {
    guards: Vec<(usize, MutexGuard<'a, UserMap>)>,
}

impl UserLocks<'_> {
    pub(crate) fn holds(&self, shard: usize) -> bool {
        self.position(shard).is_some()
    }

    pub(crate) fn map(&self, shard: usize) -> Option<&UserMap> {
        self.position(shard).map(|i| &*self.guards[i].1)
    }

    pub(crate) fn map_mut(&mut self, shard: usize) -> Option<&mut UserMap> {
        self.position(shard).map(|i| &mut *self.guards[i].1)
    }

    /// Every held map (used when clearing the whole store).
    pub(crate) fn maps_mut(&mut self) -> impl Iterator<Item = &mut UserMap> {
        self.guards.iter_mut().map(|(_, g)| &mut **g)
    }

    fn position(&self, shard: usize) -> Option<usize> {
        self.guards.binary_search_by_key(&shard, |(i, _)| *i).ok()
    }
}

/// Held session shards (write), ascending and distinct.
pub(crate) struct ShardLocks<'a> {
    guards: Vec<(usize, RwLockWriteGuard<'a, ShardTable>)>,
}

impl ShardLocks<'_> {
    pub(crate) fn get(&self, shard: usize) -> Option<&ShardTable> {
        self.position(shard).map(|i| &*self.guards[i].1)
    }

    pub(crate) fn get_mut(&mut self, shard: usize) -> Option<&mut ShardTable> {
        self.position(shard).map(|i| &mut *self.guards[i].1)
    }

    /// Every held table with its shard index.
    pub(crate) fn tables_mut(&mut self) -> impl Iterator<Item = (usize, &mut ShardTable)> {
        self.guards.iter_mut().map(|(i, g)| (*i, &mut **g))
    }

    fn position(&self, shard: usize) -> Option<usize> {
        self.guards.binary_search_by_key(&shard, |(i, _)| *i).ok()
    }
}

impl Inner {
    /// Locks the given user shards in ascending order (duplicates and out-of-range indexes ignored).
    pub(crate) fn lock_users(&self, shards: impl IntoIterator<Item = usize>) -> UserLocks<'_> {
        let mut idx: Vec<usize> = shards
            .into_iter()
            .filter(|&i| i < self.users.len())
            .collect();
        idx.sort_unstable();
        idx.dedup();
        UserLocks {
            guards: idx
                .into_iter()
                .map(|i| (i, self.users[i].map.lock()))
                .collect(),
        }
    }

    /// Write-locks the given session shards in ascending order (duplicates and out-of-range indexes
    /// ignored).
    pub(crate) fn lock_shards(&self, shards: impl IntoIterator<Item = usize>) -> ShardLocks<'_> {
        let mut idx: Vec<usize> = shards
            .into_iter()
            .filter(|&i| i < self.shards.len())
            .collect();
        idx.sort_unstable();
        idx.dedup();
        ShardLocks {
            guards: idx
                .into_iter()
                .map(|i| (i, self.shards[i].table.write()))
                .collect(),
        }
    }
}
