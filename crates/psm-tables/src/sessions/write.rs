//! Writes: upsert, limited create, restore, invalidation, updates.

use std::sync::{Arc, atomic::Ordering};

use psm_core::{
    Error, ErrorKind, LimitPolicy, Metadata, NewSession, PermissionList, Result, SessionId,
    SessionIdRef, SessionLimit, Timestamp, Ttl, UserId,
};

use super::{
    Inner, SessionRecord,
    locks::{ShardLocks, UserLocks},
    shard::{Cold, Hot, NEVER, Session},
    stored_id::StoredId,
    users::{Handle, handle, split, user_arc},
};

/// A validated session, ready to store. Permission hashes are computed before any lock is taken;
/// the strings are interned into the session's shard under its write lock.
struct Prepared {
    user: UserId,
    permissions: PermissionList,
    perm_hashes: Vec<u64>,
    metadata: Option<Box<Metadata>>,
    times: Times,
}

/// Where a stored session's timestamps come from.
#[derive(Clone, Copy)]
enum Times {
    /// Created and updated at the write's `now`; expiring `ttl` later (never without one).
    Now(Option<Ttl>),
    /// Exactly these (a restored record); `expires` is [`NEVER`] for no expiry.
    Exact {
        created: i64,
        updated: i64,
        expires: i64,
    },
}

/// Whether an upsert of a new session is held to `max_sessions`.
#[derive(Clone, Copy)]
enum Quota {
    /// A live write: refused when the quota is full (after purging expired sessions).
    Enforce,
    /// A restore: always takes a place, so the table may hold more than `max_sessions`.
    Ignore,
}

/// A session id with its hash and shard, computed once per call.
#[derive(Clone, Copy)]
struct Key<'a> {
    id: &'a SessionIdRef,
    hash: u64,
    shard: usize,
}

/// What `peek` saw: the owner's user shard and whether the session was live.
#[derive(Clone, Copy)]
struct Peek {
    owner_shard: usize,
    live: bool,
}

/// A session found under the write locks.
#[derive(Clone, Copy)]
struct Current {
    slot: u32,
    live: bool,
    owner_shard: usize,
}

impl Inner {
    fn key<'a>(&self, id: &'a SessionIdRef) -> Key<'a> {
        let hash = self.hash(id.as_str());
        Key {
            id,
            hash,
            shard: self.shard_of(hash),
        }
    }

    fn prepare(&self, new: NewSession) -> Prepared {
        self.prepare_parts(
            new.user_id,
            new.permissions,
            new.metadata,
            Times::Now(new.ttl),
        )
    }

    fn prepare_parts(
        &self,
        user: UserId,
        permissions: PermissionList,
        metadata: Metadata,
        times: Times,
    ) -> Prepared {
        let perm_hashes = self.perm_hashes(&permissions);
        let metadata = (!metadata.is_empty()).then(|| Box::new(metadata));
        Prepared {
            user,
            permissions,
            perm_hashes,
            metadata,
            times,
        }
    }

    fn perm_hashes(&self, ps: &PermissionList) -> Vec<u64> {
        ps.iter_str().map(|s| self.perm_hash(s)).collect()
    }

    /// A short read of session `id`: who owns it and whether it is live. Released before returning.
    fn peek(&self, k: Key<'_>) -> Option<Peek> {
        let table = self.shards.get(k.shard)?.table.read();
        let (_, s) = table.find_full(k.hash, k.id.as_str())?;
        Some(Peek {
            owner_shard: self.user_shard(&s.cold.user),
            live: s.hot.is_live(self.now()),
        })
    }

    fn current(&self, shards: &ShardLocks<'_>, k: Key<'_>, now: i64) -> Option<Current> {
        let (slot, s) = shards.get(k.shard)?.find_full(k.hash, k.id.as_str())?;
        Some(Current {
            slot,
            live: s.hot.is_live(now),
            owner_shard: self.user_shard(&s.cold.user),
        })
    }

    /// Builds the record of a new session (created at `now` unless its times are exact) and adds
    /// it to its user's index.
    fn insert(
        &self,
        users: &mut UserLocks<'_>,
        shards: &mut ShardLocks<'_>,
        k: Key<'_>,
        p: Prepared,
        now: i64,
    ) {
        let user_shard = self.user_shard(&p.user);
        let (Some(map), Some(table)) = (users.map_mut(user_shard), shards.get_mut(k.shard)) else {
            // Callers lock both before inserting; without them nothing is stored.
            return;
        };
        let user = user_arc(map, &p.user);
        let (created, updated, expires) = match p.times {
            Times::Now(ttl) => {
                let expires = ttl.map_or(NEVER, |t| {
                    Timestamp::from_unix_micros(now)
                        .plus_ttl(t)
                        .as_unix_micros()
                });
                (now, now, expires)
            }
            Times::Exact {
                created,
                updated,
                expires,
            } => (created, updated, expires),
        };
        let (perms, order) = table.intern(&p.permissions, &p.perm_hashes, &self.hasher);
        let session = Session {
            hot: Hot {
                id: StoredId::new(k.id),
                perms,
                expires,
            },
            cold: Cold {
                created,
                updated,
                user: Arc::clone(&user),
                metadata: p.metadata,
                order,
            },
        };
        let slot = table.insert(k.hash, session, &self.hasher);
        if let Some(index) = map.get_mut(&*user) {
            match p.times {
                Times::Now(_) => {
                    index.insert(created, handle(k.shard, slot));
                    self.counters.created.fetch_add(1, Ordering::Relaxed);
                }
                // A restore may meet a user's sessions in any order: sort them once, later.
                Times::Exact { .. } => index.append(created, handle(k.shard, slot)),
            }
        }
    }

    /// Removes the session in `shard`/`slot` from the shard and from its user's index (both locked).
    pub(crate) fn remove_at(
        &self,
        users: &mut UserLocks<'_>,
        shards: &mut ShardLocks<'_>,
        shard: usize,
        slot: u32,
    ) -> Option<Session> {
        let session = shards.get_mut(shard)?.remove(slot, &self.hasher)?;
        let cold = &session.cold;
        if let Some(map) = users.map_mut(self.user_shard(&cold.user))
            && let Some(index) = map.get_mut(&*cold.user)
        {
            index.remove(cold.created, handle(shard, slot));
            if index.is_empty() {
                map.remove(&*cold.user);
            }
        }
        Some(session)
    }

    /// `store_permissions`: an upsert.
    pub(crate) fn store(&self, id: &SessionIdRef, new: NewSession) -> Result<()> {
        self.upsert(id, self.prepare(new), Quota::Enforce)
    }

    /// `restore`: an upsert of a record exactly as given.
    pub(crate) fn restore(&self, record: SessionRecord) -> Result<()> {
        let SessionRecord {
            id,
            user_id,
            permissions,
            metadata,
            created_at,
            updated_at,
            expires_at,
        } = record;
        let times = Times::Exact {
            created: created_at.as_unix_micros(),
            updated: updated_at.as_unix_micros(),
            expires: expires_at.map_or(NEVER, Timestamp::as_unix_micros),
        };
        let p = self.prepare_parts(user_id, permissions, metadata, times);
        self.upsert(&id, p, Quota::Ignore)
    }

    /// Inserts `p` under `id`, replacing whatever is stored there.
    fn upsert(&self, id: &SessionIdRef, p: Prepared, quota: Quota) -> Result<()> {
        let k = self.key(id);
        let user_shard = self.user_shard(&p.user);
        let mut purged = false;
        loop {
            let peek = self.peek(k);
            let mut users = self.lock_users(
                [Some(user_shard), peek.map(|p| p.owner_shard)]
                    .into_iter()
                    .flatten(),
            );
            let mut shards = self.lock_shards([k.shard]);
            let now = self.now();
            let current = self.current(&shards, k, now);
            if let Some(c) = current
                && !users.holds(c.owner_shard)
            {
                // The owner changed since the peek and its user shard is not locked: retry.
                continue;
            }
            // A new session needs a place under the quota; a replacement reuses the old one's. The
            // place is taken under the shard lock, so a concurrent upsert of the same id sees either
            // no session and no reservation, or the session (never a spurious quota error).
            let reservation = match (current, quota) {
                (Some(_), _) => None,
                // A restore reinstates what was stored: it may go above the quota, never fails on it.
                (None, Quota::Ignore) => match self.force_reserve() {
                    Some(r) => Some(r),
                    None => {
                        return Err(Error::new(
                            ErrorKind::StorageQuotaExceeded,
                            "the table holds the most sessions it can index",
                        )
                        .with_detail("max", u32::MAX - 1));
                    }
                },
                (None, Quota::Enforce) => match self.try_reserve() {
                    Some(r) => Some(r),
                    None if !purged => {
                        // Expired sessions do not count: purge them (which takes the locks) and retry.
                        drop(shards);
                        drop(users);
                        self.cleanup();
                        purged = true;
                        continue;
                    }
                    None => return Err(self.quota_error()),
                },
            };
            if let Some(c) = current {
                self.remove_at(&mut users, &mut shards, k.shard, c.slot);
                if !c.live {
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.insert(&mut users, &mut shards, k, p, now);
            if let Some(r) = reservation {
                r.commit();
            }
            self.note_peak();
            return Ok(());
        }
    }

    /// `create_session`: never overwrites a live session; enforces the per-user limit atomically by
    /// holding the user's shard across count, eviction and insertion.
    pub(crate) fn create(
        &self,
        id: &SessionIdRef,
        new: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        let p = self.prepare(new);
        let k = self.key(id);
        let user_shard = self.user_shard(&p.user);
        let mut reservation = None;
        let mut quota_error = None;
        loop {
            let peek = self.peek(k);
            match peek {
                Some(Peek { live: true, .. }) => return Err(exists(id)),
                None if reservation.is_none() && quota_error.is_none() => match self.reserve() {
                    Ok(r) => reservation = Some(r),
                    // Evicting may still make room; decided under the locks.
                    Err(e) => quota_error = Some(e),
                },
                _ => {}
            }
            let mut users = self.lock_users(
                [Some(user_shard), peek.map(|p| p.owner_shard)]
                    .into_iter()
                    .flatten(),
            );
            let mut needed = vec![k.shard];
            if let Some(index) = users.map(user_shard).and_then(|m| m.get(&p.user)) {
                needed.extend(index.handles().map(|h| split(h).0));
            }
            let mut shards = self.lock_shards(needed);
            let now = self.now();
            let current = self.current(&shards, k, now);
            match current {
                Some(c) if !users.holds(c.owner_shard) => continue,
                Some(c) if c.live => return Err(exists(id)),
                // It vanished since the peek: try for a quota reservation first.
                None if reservation.is_none() && quota_error.is_none() => continue,
                _ => {}
            }
            let current_handle = current.map(|c| handle(k.shard, c.slot));
            let (live, expired) =
                self.user_sessions(&users, &shards, user_shard, &p.user, now, current_handle);

            // Decide everything before changing anything, so a failure changes nothing.
            let excess = (live.len() + 1).saturating_sub(limit.max_usize());
            if excess > 0 && limit.policy == LimitPolicy::Reject {
                return Err(Error::new(
                    ErrorKind::SessionLimitReached,
                    "the user has reached the session limit",
                )
                .with_detail("max", limit.max));
            }
            let freed = usize::from(current.is_some()) + expired.len() + excess;
            let places = usize::from(reservation.is_some()) + freed;
            if places == 0 {
                return Err(quota_error.take().unwrap_or_else(|| self.quota_error()));
            }

            if let Some(c) = current {
                self.remove_at(&mut users, &mut shards, k.shard, c.slot);
            }
            for &h in &expired {
                let (s, slot) = split(h);
                self.remove_at(&mut users, &mut shards, s, slot);
            }
            let expired_count = expired.len() + usize::from(current.is_some());
            self.counters
                .expired
                .fetch_add(expired_count as u64, Ordering::Relaxed);
            let mut evicted = Vec::with_capacity(excess);
            for &h in &live[..excess] {
                let (s, slot) = split(h);
                let removed = self.remove_at(&mut users, &mut shards, s, slot);
                if let Some(id) = removed.and_then(|old| old.hot.id.to_session_id()) {
                    evicted.push(id);
                }
            }
            self.insert(&mut users, &mut shards, k, p, now);
            // One place is taken by the new session; the rest are returned to the quota.
            if let Some(r) = reservation.take() {
                r.commit();
            }
            self.release(places - 1);
            self.note_peak();
            return Ok(evicted);
        }
    }

    /// The user's live sessions ordered by `(created_at, id)`, and the expired ones (excluding
    /// `skip`), as handles. Every shard involved is locked by the caller.
    fn user_sessions(
        &self,
        users: &UserLocks<'_>,
        shards: &ShardLocks<'_>,
        user_shard: usize,
        user: &UserId,
        now: i64,
        skip: Option<Handle>,
    ) -> (Vec<Handle>, Vec<Handle>) {
        let Some(index) = users.map(user_shard).and_then(|m| m.get(user)) else {
            return (Vec::new(), Vec::new());
        };
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for h in index.handles() {
            if Some(h) == skip {
                continue;
            }
            let (s, slot) = split(h);
            if let Some(session) = shards.get(s).and_then(|t| t.get(slot)) {
                if session.hot.is_live(now) {
                    live.push((session.cold.created, &session.hot.id, h));
                } else {
                    expired.push(h);
                }
            }
        }
        live.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp_id(b.1)));
        (live.into_iter().map(|(_, _, h)| h).collect(), expired)
    }

    /// Removes session `id`, live or expired: `Some(live)` if something was stored
    /// (`invalidate_session` is `Some(true)`, `remove` any `Some`).
    pub(crate) fn remove_session(&self, id: &SessionIdRef) -> Option<bool> {
        let k = self.key(id);
        loop {
            let peek = self.peek(k)?;
            let mut users = self.lock_users([peek.owner_shard]);
            let mut shards = self.lock_shards([k.shard]);
            let now = self.now();
            let c = self.current(&shards, k, now)?;
            if !users.holds(c.owner_shard) {
                continue;
            }
            self.remove_at(&mut users, &mut shards, k.shard, c.slot);
            self.release(1);
            if !c.live {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
            }
            return Some(c.live);
        }
    }

    /// `invalidate_user_sessions`: removes every session of `user`; returns how many were live.
    pub(crate) fn invalidate_user(&self, user: &UserId) -> u64 {
        let user_shard = self.user_shard(user);
        let mut users = self.lock_users([user_shard]);
        let Some(index) = users.map_mut(user_shard).and_then(|m| m.remove(user)) else {
            return 0;
        };
        let mut shards = self.lock_shards(index.handles().map(|h| split(h).0));
        let now = self.now();
        let (mut live, mut expired) = (0u64, 0u64);
        for h in index.handles() {
            let (s, slot) = split(h);
            // The user's index is already gone, so only the shard needs updating.
            if let Some(session) = shards.get_mut(s).and_then(|t| t.remove(slot, &self.hasher)) {
                if session.hot.is_live(now) {
                    live += 1;
                } else {
                    expired += 1;
                }
            }
        }
        drop(shards);
        drop(users);
        self.release(usize::try_from(live + expired).unwrap_or(usize::MAX));
        self.counters.expired.fetch_add(expired, Ordering::Relaxed);
        live
    }

    /// `update_permissions`: replaces the permissions of a live session.
    pub(crate) fn update(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
        ttl: Option<Ttl>,
    ) -> bool {
        let perm_hashes = self.perm_hashes(permissions);
        let hash = self.hash(id.as_str());
        let Some(shard) = self.shards.get(self.shard_of(hash)) else {
            return false;
        };
        let mut table = shard.table.write();
        let now = self.now();
        // Interned only for a live session, so a failed update leaves the interner unchanged.
        if !table
            .find(hash, id.as_str())
            .is_some_and(|(_, s)| s.is_live(now))
        {
            return false;
        }
        let (perms, order) = table.intern(permissions, &perm_hashes, &self.hasher);
        match table.find_mut(hash, id.as_str()) {
            Some(s) => {
                s.hot.perms = perms;
                s.cold.order = order;
                s.cold.updated = now;
                if let Some(ttl) = ttl {
                    s.hot.expires = Timestamp::from_unix_micros(now)
                        .plus_ttl(ttl)
                        .as_unix_micros();
                }
                true
            }
            _ => false,
        }
    }

    /// `extend_session_ttl`: renews a live session to now + `ttl`; never revives an expired one.
    pub(crate) fn extend(&self, id: &SessionIdRef, ttl: Ttl) -> bool {
        let hash = self.hash(id.as_str());
        let Some(shard) = self.shards.get(self.shard_of(hash)) else {
            return false;
        };
        let mut table = shard.table.write();
        let now = self.now();
        match table.find_mut(hash, id.as_str()) {
            Some(s) if s.hot.is_live(now) => {
                s.hot.expires = Timestamp::from_unix_micros(now)
                    .plus_ttl(ttl)
                    .as_unix_micros();
                s.cold.updated = now;
                true
            }
            _ => false,
        }
    }
}

fn exists(id: &SessionIdRef) -> Error {
    Error::new(
        ErrorKind::SessionExists,
        "a live session with this id already exists",
    )
    .with_detail("session", id.redacted())
}
