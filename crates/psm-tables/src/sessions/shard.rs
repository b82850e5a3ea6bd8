//! One shard of the session map: two parallel slabs of session records plus a hash index.
//!
//! A session is split by use. Its hot record ([`Hot`], exactly one 64-byte cache line, aligned to
//! one) holds what a check reads: the id (to confirm the hash probe), the sorted permission ids and
//! the expiry. Its cold record ([`Cold`], same slot in a parallel slab) holds the rest, which only
//! writes, `get_permissions`, listings and statistics read. A check therefore touches one line of
//! session data, and the hot slab (64 bytes a session) spans fewer pages than whole records would.
//! Ids over 30 bytes and sets over five permissions are boxed: one extra miss each on a check.
//!
//! The hash index holds only `u32` slab slots (5 bytes a bucket with hashbrown's control byte), and
//! the slabs grow by at most an eighth at a time, so the per-session overhead of the map stays small
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
use crate::{
    intern::Interner,
    perm_set::{Order, PermSet},
};

/// The expiry of a session that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

/// What a check reads, in one cache line: 32 bytes of id, 24 of permissions, 8 of expiry.
/// Timestamps are microseconds since the Unix epoch.
#[repr(C, align(64))]
pub(crate) struct Hot {
    pub(crate) id: StoredId,
    pub(crate) perms: PermSet,
    /// [`NEVER`] when the session has no ttl.
    pub(crate) expires: i64,
}

impl Hot {
    /// RULES: a session is expired when `now >= expires_at`.
    pub(crate) fn is_live(&self, now: i64) -> bool {
        self.expires == NEVER || now < self.expires
    }

    pub(crate) fn has_ttl(&self) -> bool {
        self.expires != NEVER
    }
}

/// The rest of a session (40 bytes), read off the check path.
pub(crate) struct Cold {
    pub(crate) created: i64,
    pub(crate) updated: i64,
    /// Shared with the user's index entry and the user's other sessions.
    pub(crate) user: Arc<UserId>,
    /// `None` when the metadata is empty (the common case), so it costs no allocation.
    pub(crate) metadata: Option<Box<Metadata>>,
    /// The stored order of the permissions when they are inline in [`Hot`].
    pub(crate) order: Order,
}

/// A whole session, as stored by `insert` and returned by `remove`.
pub(crate) struct Session {
    pub(crate) hot: Hot,
    pub(crate) cold: Cold,
}

/// A stored session, borrowed from both slabs.
#[derive(Clone, Copy)]
pub(crate) struct SessionRef<'a> {
    pub(crate) hot: &'a Hot,
    pub(crate) cold: &'a Cold,
}

/// A stored session, mutably borrowed from both slabs.
pub(crate) struct SessionMut<'a> {
    pub(crate) hot: &'a mut Hot,
    pub(crate) cold: &'a mut Cold,
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

/// The sessions of one shard: slot `i` of `hot` and of `cold` are the two halves of one session,
/// and either both are occupied or neither is.
#[derive(Default)]
pub(crate) struct ShardTable {
    /// Slab slots, hashed by the session id.
    index: HashTable<u32>,
    hot: Vec<Option<Hot>>,
    cold: Vec<Option<Cold>>,
    /// Vacant slab slots, reused before the slabs grow.
    free: Vec<u32>,
    /// The permission strings of this shard's sessions; their ids refer to it.
    pub(crate) interner: Interner,
}

impl ShardTable {
    /// The slot and hot record of session `id` (`hash` is the id's hash), live or not.
    pub(crate) fn find(&self, hash: u64, id: &str) -> Option<(u32, &Hot)> {
        let hot = &self.hot;
        let slot = *self.index.find(hash, |&slot| {
            occupied(hot, slot).is_some_and(|s| s.id.eq_str(id))
        })?;
        occupied(hot, slot).map(|s| (slot, s))
    }

    /// The slot and whole record of session `id`, live or not.
    pub(crate) fn find_full(&self, hash: u64, id: &str) -> Option<(u32, SessionRef<'_>)> {
        let (slot, _) = self.find(hash, id)?;
        self.get(slot).map(|s| (slot, s))
    }

    /// The permission set of `ps` (whose string hashes are `hashes`), interning new strings.
    pub(crate) fn intern(
        &mut self,
        ps: &PermissionList,
        hashes: &[u64],
        hasher: &RandomState,
    ) -> (PermSet, Order) {
        PermSet::new(&self.interner.intern_all(ps, hashes, hasher))
    }

    /// The record of session `id`, mutable.
    pub(crate) fn find_mut(&mut self, hash: u64, id: &str) -> Option<SessionMut<'_>> {
        let (slot, _) = self.find(hash, id)?;
        let hot = self.hot.get_mut(slot as usize)?.as_mut()?;
        let cold = self.cold.get_mut(slot as usize)?.as_mut()?;
        Some(SessionMut { hot, cold })
    }

    /// The hot record in `slot`, if occupied.
    pub(crate) fn get_hot(&self, slot: u32) -> Option<&Hot> {
        occupied(&self.hot, slot)
    }

    /// The record in `slot`, if occupied.
    pub(crate) fn get(&self, slot: u32) -> Option<SessionRef<'_>> {
        Some(SessionRef {
            hot: occupied(&self.hot, slot)?,
            cold: occupied(&self.cold, slot)?,
        })
    }

    /// Stores a session whose id is not in the table yet and returns its slot.
    ///
    /// The caller guarantees the store holds fewer than `u32::MAX` sessions (the quota caps it),
    /// so a slot number always fits.
    pub(crate) fn insert(&mut self, hash: u64, session: Session, hasher: &RandomState) -> u32 {
        let Session { hot, cold } = session;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(vacant) = self.hot.get_mut(slot as usize) {
                    *vacant = Some(hot);
                }
                if let Some(vacant) = self.cold.get_mut(slot as usize) {
                    *vacant = Some(cold);
                }
                slot
            }
            None => {
                if self.hot.len() == self.hot.capacity() {
                    // Grow by an eighth (at least 16) instead of doubling: doubled slabs of
                    // 104 bytes a session would waste up to half their memory right after growing.
                    let more = (self.hot.len() / 8).max(16);
                    self.hot.reserve_exact(more);
                    self.cold.reserve_exact(more);
                }
                let slot = u32::try_from(self.hot.len()).unwrap_or(u32::MAX);
                self.hot.push(Some(hot));
                self.cold.push(Some(cold));
                slot
            }
        };
        let slabs = &self.hot;
        self.index.insert_unique(hash, slot, |&s| {
            occupied(slabs, s).map_or(0, |x| hasher.hash_one(x.id.as_bytes()))
        });
        slot
    }

    /// Removes and returns the session in `slot`.
    pub(crate) fn remove(&mut self, slot: u32, hasher: &RandomState) -> Option<Session> {
        let hash = hasher.hash_one(self.get_hot(slot)?.id.as_bytes());
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        let hot = self.hot.get_mut(slot as usize)?.take()?;
        let cold = self.cold.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(Session { hot, cold })
    }

    /// Every stored session with its slot (live or not), in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, SessionRef<'_>)> {
        self.hot
            .iter()
            .zip(&self.cold)
            .enumerate()
            .filter_map(|(slot, (h, c))| {
                Some((
                    u32::try_from(slot).ok()?,
                    SessionRef {
                        hot: h.as_ref()?,
                        cold: c.as_ref()?,
                    },
                ))
            })
    }

    /// Every stored hot record with its slot (live or not), in slab order.
    pub(crate) fn iter_hot(&self) -> impl Iterator<Item = (u32, &Hot)> {
        self.hot
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| Some((u32::try_from(slot).ok()?, h.as_ref()?)))
    }

    /// Drops every session and frees their memory; interned permission strings are kept.
    pub(crate) fn clear(&mut self) {
        let interner = std::mem::take(&mut self.interner);
        *self = Self {
            interner,
            ..Self::default()
        };
    }

    /// Makes room for `additional` more sessions without growing the slabs or the index.
    pub(crate) fn reserve(&mut self, additional: usize, hasher: &RandomState) {
        let vacant = additional.saturating_sub(self.free.len());
        self.hot.reserve_exact(vacant);
        self.cold.reserve_exact(vacant);
        let slabs = &self.hot;
        self.index.reserve(additional, |&s| {
            occupied(slabs, s).map_or(0, |x| hasher.hash_one(x.id.as_bytes()))
        });
    }

    /// The number of stored sessions (live or not).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

fn occupied<T>(slab: &[Option<T>], slot: u32) -> Option<&T> {
    slab.get(slot as usize).and_then(Option::as_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        let (perms, order) = PermSet::new(&[0]);
        Session {
            hot: Hot {
                id: StoredId::new(psm_core::SessionIdRef::parse(id).unwrap()),
                perms,
                expires: NEVER,
            },
            cold: Cold {
                created: 0,
                updated: 0,
                user: Arc::new(UserId::parse("u").unwrap()),
                metadata: None,
                order,
            },
        }
    }

    #[test]
    fn hot_record_is_one_cache_line_and_cold_record_compact() {
        assert_eq!(std::mem::size_of::<Hot>(), 64);
        assert_eq!(std::mem::align_of::<Hot>(), 64);
        assert_eq!(std::mem::size_of::<Option<Hot>>(), 64);
        assert_eq!(std::mem::size_of::<Option<Cold>>(), 40);
        // A check reads the id, the permissions and the expiry: all inside the first line.
        assert_eq!(std::mem::offset_of!(Hot, expires), 56);
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
        assert!(t.remove(slot, &hasher).unwrap().hot.id.eq_str("s500"));
        assert!(t.find(hasher.hash_one("s500".as_bytes()), "s500").is_none());
        assert!(t.remove(slot, &hasher).is_none());
        let again = t.insert(hasher.hash_one("new".as_bytes()), session("new"), &hasher);
        assert_eq!(again, slot, "a vacant slot is reused before the slab grows");
        for id in ids.iter().filter(|i| *i != "s500") {
            assert!(t.find(hasher.hash_one(id.as_bytes()), id).is_some(), "{id}");
        }
        assert_eq!(t.iter().count(), 1000);
        assert!(t.hot.capacity() <= 1000 + 1000 / 8 + 16);
        assert_eq!(t.hot.capacity(), t.cold.capacity());
        assert_eq!(t.iter_hot().count(), 1000);
    }

    #[test]
    fn reserve_makes_room_without_growing_later() {
        let hasher = RandomState::default();
        let mut t = ShardTable::default();
        t.insert(
            hasher.hash_one("first".as_bytes()),
            session("first"),
            &hasher,
        );
        t.reserve(500, &hasher);
        let (hot, cold) = (t.hot.capacity(), t.cold.capacity());
        assert!(hot >= 501 && cold >= 501);
        for i in 0..500 {
            let id = format!("s{i}");
            t.insert(hasher.hash_one(id.as_bytes()), session(&id), &hasher);
        }
        assert_eq!((t.hot.capacity(), t.cold.capacity()), (hot, cold));
        assert_eq!(t.len(), 501);
        assert!(
            t.find(hasher.hash_one("first".as_bytes()), "first")
                .is_some()
        );
    }
}
