//! Reads: checks, records and listings. Each holds at most one shard lock at a time.

use std::sync::Arc;

use psm_core::{
    Metadata, Page, Permission, PermissionCheck, PermissionList, PermissionRef, SessionData,
    SessionId, SessionIdRef, Timestamp, UserId,
};

use super::{Inner, shard::Hot, stored_id::StoredId, users::split};

/// What `get` copies out under the shard lock.
struct Snapshot {
    user: Arc<UserId>,
    permissions: Vec<Permission>,
    metadata: Option<Box<Metadata>>,
    created: i64,
    updated: i64,
    expires: Option<i64>,
}

impl Inner {
    /// Whether `s` is live, reading the clock only for sessions that can expire.
    fn live(&self, s: &Hot) -> bool {
        !s.has_ttl() || s.is_live(self.now())
    }

    /// The hot path: one shard read lock (its two atomic instructions are the only locked ones),
    /// then the shard's interner lookup (a permission the shard never stored is false), a hash
    /// probe and a binary search over `u32` ids. Both hashes are computed before the lock.
    pub(crate) fn check(&self, id: &SessionIdRef, p: &PermissionRef) -> bool {
        let hash = self.hash(id.as_str());
        let perm_hash = self.perm_hash(p.as_str());
        let Some(shard) = self.shards.get(self.shard_of(hash)) else {
            return false;
        };
        self.count_on(shard);
        let table = shard.table.read();
        let Some(pid) = table.interner.lookup(perm_hash, p.as_str()) else {
            return false;
        };
        table
            .find(hash, id.as_str())
            .is_some_and(|(_, s)| self.live(s) && s.perms.contains(pid))
    }

    pub(crate) fn check_all(&self, id: &SessionIdRef, ps: &PermissionList) -> PermissionCheck {
        let hash = self.hash(id.as_str());
        let Some(shard) = self.shards.get(self.shard_of(hash)) else {
            return PermissionCheck::all_false(ps);
        };
        self.count_on(shard);
        let table = shard.table.read();
        match table.find(hash, id.as_str()) {
            Some((_, s)) if self.live(s) => PermissionCheck::from_entries(
                ps.iter()
                    .map(|p| {
                        let held = table
                            .interner
                            .lookup(self.perm_hash(p.as_str()), p.as_str())
                            .is_some_and(|i| s.perms.contains(i));
                        (p.clone(), held)
                    })
                    .collect(),
            ),
            _ => PermissionCheck::all_false(ps),
        }
    }

    /// A copy of the live session `id`, its expiry and the `now` it was judged live at.
    pub(crate) fn get(
        &self,
        id: &SessionIdRef,
    ) -> Option<(SessionData, Option<Timestamp>, Timestamp)> {
        let hash = self.hash(id.as_str());
        let shard = self.shards.get(self.shard_of(hash))?;
        self.count_on(shard);
        let now = self.now();
        let snap = {
            let table = shard.table.read();
            let (_, s) = table.find_full(hash, id.as_str())?;
            if !s.hot.is_live(now) {
                return None;
            }
            Snapshot {
                user: Arc::clone(&s.cold.user),
                permissions: table
                    .interner
                    .resolve(s.hot.perms.stored_order(&s.cold.order)),
                metadata: s.cold.metadata.clone(),
                created: s.cold.created,
                updated: s.cold.updated,
                expires: s.hot.has_ttl().then_some(s.hot.expires),
            }
        };
        // Cannot fail: the list was a valid, deduplicated, non-empty permission list when stored.
        let permissions = PermissionList::from_permissions(snap.permissions).ok()?;
        let data = SessionData {
            user_id: (*snap.user).clone(),
            permissions,
            created_at: Timestamp::from_unix_micros(snap.created),
            updated_at: Timestamp::from_unix_micros(snap.updated),
            metadata: snap.metadata.map_or_else(Metadata::empty, |m| *m),
        };
        Some((
            data,
            snap.expires.map(Timestamp::from_unix_micros),
            Timestamp::from_unix_micros(now),
        ))
    }

    /// One user's live sessions by `(created_at, id)`, from the per-user index.
    pub(crate) fn list_user(&self, user: &UserId, page: Page) -> Vec<SessionId> {
        let user_shard = self.user_shard(user);
        let mut users = self.lock_users([user_shard]);
        let Some(index) = users.map_mut(user_shard).and_then(|m| m.get_mut(user)) else {
            return Vec::new();
        };
        let now = self.now();
        let entries = index.entries();
        let mut skip = page.offset_usize();
        let mut out = Vec::with_capacity(page.limit().min(entries.len()));
        let mut i = 0;
        while i < entries.len() && out.len() < page.limit() {
            // A run of sessions created in the same microsecond, ordered by id below.
            let created = entries[i].0;
            let run = entries[i..]
                .iter()
                .take_while(|&&(c, _)| c == created)
                .count();
            let mut ids: Vec<SessionId> = Vec::new();
            for &(_, h) in &entries[i..i + run] {
                let (s, slot) = split(h);
                let Some(shard) = self.shards.get(s) else {
                    continue;
                };
                let table = shard.table.read();
                match table.get_hot(slot) {
                    Some(session) if session.is_live(now) => {
                        if run == 1 && skip > 0 {
                            // Skipped without copying the id (the common case for deep pages).
                            skip -= 1;
                        } else if let Some(id) = session.id.to_session_id() {
                            ids.push(id);
                        }
                    }
                    _ => {}
                }
            }
            ids.sort_unstable();
            for id in ids {
                if skip > 0 {
                    skip -= 1;
                } else if out.len() < page.limit() {
                    out.push(id);
                }
            }
            i += run;
        }
        out
    }

    /// Every live session, shard by shard and by id within a shard (the documented global order).
    pub(crate) fn list_all(&self, page: Page) -> Vec<SessionId> {
        let now = self.now();
        let mut skip = page.offset_usize();
        let mut out = Vec::with_capacity(page.limit().min(1024));
        for shard in self.shards.iter() {
            let table = shard.table.read();
            let live = || table.iter_hot().map(|(_, s)| s).filter(|s| s.is_live(now));
            if skip > 0 {
                let count = live().count();
                if count <= skip {
                    skip -= count;
                    continue;
                }
            }
            let mut ids: Vec<&StoredId> = live().map(|s| &s.id).collect();
            ids.sort_unstable_by(|a, b| a.cmp_id(b));
            let wanted = page.limit() - out.len();
            out.extend(
                ids.into_iter()
                    .skip(skip)
                    .take(wanted)
                    .filter_map(StoredId::to_session_id),
            );
            skip = 0;
            if out.len() == page.limit() {
                break;
            }
        }
        out
    }
}
