//! One shard of the session map: a slab of compact session records plus a hash index over it.
//!
//! The hash index holds only `u32` slab slots (5 bytes a bucket with hashbrown's control byte), and
//! the slab grows by at most an eighth at a time, so the per-session overhead of the map stays small
//! (see the crate docs for the memory budget). A slot is stable while its session lives, which lets
//! the per-user index refer to sessions by `(shard, slot)` handles instead of copies of their ids.

use std::{
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use parking_lot::RwLock;
use psm_core::{Metadata, PermissionList, UserId};

use super::stored_id::StoredId;
use crate::{intern::Interner, perm_set::PermSet};

/// The expiry of a session that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

/// A stored session (104 bytes); timestamps are microseconds since the Unix epoch.
///
/// `repr(C)` keeps what a check reads (id, permissions, expiry) together at the front, so a check
/// touches one or two adjacent cache lines of the record.
#[repr(C)]
pub(crate) struct Session {
    pub(crate) id: StoredId,
    pub(crate) perms: PermSet,
    /// [`NEVER`] when the session has no ttl.
    pub(crate) expires: i64,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    /// Shared with the user's index entry and the user's other sessions.
    pub(crate) user: Arc<UserId>,
    /// `None` when the metadata is empty (the common case), so it costs no allocation.
    pub(crate) metadata: Option<Box<Metadata>>,
}

impl Session {
    /// RULES: a session is expired when `now >= expires_at`.
    pub(crate) fn is_live(&self, now: i64) -> bool {
        self.expires == NEVER || now < self.expires
    }

    pub(crate) fn has_ttl(&self) -> bool {
        self.expires != NEVER
    }
}

/// A shard: its lock and its operation counter share a cache line, so counting an operation costs
/// no extra cache miss on the check path. Aligned so two shards never share a line.
#[repr(align(128))]
pub(crate) struct SessionShard {
    pub(crate) table: RwLock<ShardTable>,
    /// Operations served by this shard. Bumped with a plain load and store rather than a
    /// `fetch_add`: a locked read-modify-write is a full barrier on x86 and would serialise the
    /// cache misses of consecutive checks. Concurrent bumps may therefore lose a count.
    ops: AtomicU64,
}

impl SessionShard {
    pub(crate) fn new() -> Self {
        Self {
            table: RwLock::new(ShardTable::default()),
            ops: AtomicU64::new(0),
        }
    }

    /// Counts one operation (approximate under concurrency, exact on one thread; see `ops`).
    pub(crate) fn count_op(&self) {
        let n = self.ops.load(Ordering::Relaxed);
        self.ops.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Operations counted so far.
    pub(crate) fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

/// The sessions of one shard.
#[derive(Default)]
pub(crate) struct ShardTable {
    /// Slab slots, hashed by the session id.
    index: HashTable<u32>,
    slab: Vec<Option<Session>>,
    /// Vacant slab slots, reused before the slab grows.
    free: Vec<u32>,
    /// The permission strings of this shard's sessions; their ids refer to it.
    pub(crate) interner: Interner,
}

impl ShardTable {
    /// The slot and record of session `id` (`hash` is the id's hash), live or not.
    pub(crate) fn find(&self, hash: u64, id: &str) -> Option<(u32, &Session)> {
        let slab = &self.slab;
        let slot = *self.index.find(hash, |&slot| {
            occupied(slab, slot).is_some_and(|s| s.id.eq_str(id))
        })?;
        occupied(slab, slot).map(|s| (slot, s))
    }

    /// The permission set of `ps` (whose string hashes are `hashes`), interning new strings.
    pub(crate) fn intern(
        &mut self,
        ps: &PermissionList,
        hashes: &[u64],
        hasher: &RandomState,
    ) -> PermSet {
        PermSet::new(&self.interner.intern_all(ps, hashes, hasher))
    }

    /// The record of session `id`, mutable.
    pub(crate) fn find_mut(&mut self, hash: u64, id: &str) -> Option<&mut Session> {
        let (slot, _) = self.find(hash, id)?;
        self.get_mut(slot)
    }

    /// The record in `slot`, if occupied.
    pub(crate) fn get(&self, slot: u32) -> Option<&Session> {
        occupied(&self.slab, slot)
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Session> {
        self.slab.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Stores a session whose id is not in the table yet and returns its slot.
    ///
    /// The caller guarantees the store holds fewer than `u32::MAX` sessions (the quota caps it),
    /// so a slot number always fits.
    pub(crate) fn insert(&mut self, hash: u64, session: Session, hasher: &RandomState) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(vacant) = self.slab.get_mut(slot as usize) {
                    *vacant = Some(session);
                }
                slot
            }
            None => {
                if self.slab.len() == self.slab.capacity() {
                    // Grow by an eighth (at least 16) instead of doubling: a doubled slab of 88-byte
                    // records would waste up to half its memory right after growing.
                    self.slab.reserve_exact((self.slab.len() / 8).max(16));
                }
                let slot = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
                self.slab.push(Some(session));
                slot
            }
        };
        let slab = &self.slab;
        self.index.insert_unique(hash, slot, |&s| {
            occupied(slab, s).map_or(0, |x| hasher.hash_one(x.id.as_bytes()))
        });
        slot
    }

    /// Removes and returns the session in `slot`.
    pub(crate) fn remove(&mut self, slot: u32, hasher: &RandomState) -> Option<Session> {
        let hash = hasher.hash_one(self.get(slot)?.id.as_bytes());
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        let session = self.slab.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(session)
    }

    /// Every stored session with its slot (live or not), in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| Some((u32::try_from(slot).ok()?, s.as_ref()?)))
    }

    /// Drops every session and frees their memory; interned permission strings are kept.
    pub(crate) fn clear(&mut self) {
        let interner = std::mem::take(&mut self.interner);
        *self = Self {
            interner,
            ..Self::default()
        };
    }

    /// The number of stored sessions (live or not).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

fn occupied(slab: &[Option<Session>], slot: u32) -> Option<&Session> {
    slab.get(slot as usize).and_then(Option::as_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: StoredId::new(psm_core::SessionIdRef::parse(id).unwrap()),
            user: Arc::new(UserId::parse("u").unwrap()),
            perms: PermSet::new(&[0]),
            metadata: None,
            created: 0,
            updated: 0,
            expires: NEVER,
        }
    }

    #[test]
    fn record_is_compact() {
        assert_eq!(std::mem::size_of::<Session>(), 104);
        assert_eq!(std::mem::size_of::<Option<Session>>(), 104);
    }

    #[test]
    fn insert_find_remove_and_slot_reuse() {
        let hasher = RandomState::default();
        let mut t = ShardTable::default();
        let ids: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        for id in &ids {
            t.insert(hasher.hash_one(id.as_bytes()), session(id), &hasher);
        }
        assert_eq!(t.len(), 1000);
        let (slot, _) = t.find(hasher.hash_one("s500".as_bytes()), "s500").unwrap();
        assert!(t.remove(slot, &hasher).unwrap().id.eq_str("s500"));
        assert!(t.find(hasher.hash_one("s500".as_bytes()), "s500").is_none());
        assert!(t.remove(slot, &hasher).is_none());
        let again = t.insert(hasher.hash_one("new".as_bytes()), session("new"), &hasher);
        assert_eq!(again, slot, "a vacant slot is reused before the slab grows");
        for id in ids.iter().filter(|i| *i != "s500") {
            assert!(t.find(hasher.hash_one(id.as_bytes()), id).is_some(), "{id}");
        }
        assert_eq!(t.iter().count(), 1000);
        assert!(t.slab.capacity() <= 1000 + 1000 / 8 + 16);
    }
}
