//! Whole session records, for adapters that persist the table: export, restore, remove, walk.

use std::sync::Arc;

use psm_core::{
    Metadata, Permission, PermissionList, Result, SessionId, SessionIdRef, Timestamp, UserId,
};

use super::{
    Inner, SessionTable,
    shard::{SessionRef, ShardTable},
    users::split,
};

/// One session exactly as stored (what a durable adapter journals and restores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub id: SessionId,
    /// The owner.
    pub user_id: UserId,
    /// The permissions, in stored order.
    pub permissions: PermissionList,
    /// Caller metadata, exactly as stored.
    pub metadata: Metadata,
    /// When the session was stored (`store_permissions` resets it).
    pub created_at: Timestamp,
    /// When the session was last changed.
    pub updated_at: Timestamp,
    /// When the session expires; `None` means never.
    pub expires_at: Option<Timestamp>,
}

/// What a record copies out under the shard lock; turned into a [`SessionRecord`] after it.
struct RawRecord {
    id: Option<SessionId>,
    user: Arc<UserId>,
    permissions: Vec<Permission>,
    metadata: Option<Box<Metadata>>,
    created: i64,
    updated: i64,
    expires: Option<i64>,
}

impl RawRecord {
    fn copy(table: &ShardTable, s: SessionRef<'_>) -> Self {
        Self {
            id: s.hot.id.to_session_id(),
            user: Arc::clone(&s.cold.user),
            permissions: table
                .interner
                .resolve(s.hot.perms.stored_order(&s.cold.order)),
            metadata: s.cold.metadata.clone(),
            created: s.cold.created,
            updated: s.cold.updated,
            expires: s.hot.has_ttl().then_some(s.hot.expires),
        }
    }

    /// The record; `None` only if the stored data were not a valid session, which cannot happen
    /// (every id and permission list was valid when stored).
    fn finish(self) -> Option<SessionRecord> {
        Some(SessionRecord {
            id: self.id?,
            user_id: (*self.user).clone(),
            permissions: PermissionList::from_permissions(self.permissions).ok()?,
            metadata: self.metadata.map_or_else(Metadata::empty, |m| *m),
            created_at: Timestamp::from_unix_micros(self.created),
            updated_at: Timestamp::from_unix_micros(self.updated),
            expires_at: self.expires.map(Timestamp::from_unix_micros),
        })
    }
}

impl SessionTable {
    /// The stored record of `id`, live or expired; `None` when absent.
    pub fn export(&self, id: &SessionIdRef) -> Option<SessionRecord> {
        let inner = &self.inner;
        let hash = inner.hash(id.as_str());
        let raw = {
            let table = inner.shards.get(inner.shard_of(hash))?.table.read();
            let (_, s) = table.find_full(hash, id.as_str())?;
            RawRecord::copy(&table, s)
        };
        raw.finish()
    }

    /// Inserts or replaces `record` exactly: its timestamps and expiry as given (an expired record
    /// is stored expired), the session moved to the new owner's index if the user changed.
    ///
    /// Meant for rebuilding a table from a journal: it is not counted as a created session or as
    /// an operation, and a user's sessions may be restored in any order (the per-user index is
    /// sorted once, at its next ordered read, so restoring `n` sessions costs `O(n log n)`).
    ///
    /// It never refuses because of [`TableConfig::max_sessions`](crate::TableConfig::max_sessions)
    /// and purges nothing: it reinstates what was stored, so a table reopened with a lower quota
    /// may hold more sessions than `max_sessions` until sessions go (see the type's
    /// [quota](SessionTable#quota) docs). The quota counter stays exact.
    ///
    /// # Errors
    /// `StorageQuotaExceeded` only at the table's structural limit of `u32::MAX - 1` stored
    /// sessions.
    pub fn restore(&self, record: SessionRecord) -> Result<()> {
        self.inner.restore(record)
    }

    /// Makes room for about `additional` more sessions, spread over the shards, so that restoring
    /// a known number of records does not grow the shards step by step. Only a hint: the table
    /// grows as needed either way.
    pub fn reserve(&self, additional: usize) {
        let shards = self.inner.shards.len();
        // Ids spread evenly over the shards; an eighth more absorbs the unevenness.
        let per_shard = additional
            .div_ceil(shards)
            .saturating_add(additional / shards / 8);
        for shard in self.inner.shards.iter() {
            shard.table.write().reserve(per_shard, &self.inner.hasher);
        }
    }

    /// Removes `id` whether live or expired; `true` if something was stored.
    pub fn remove(&self, id: &SessionIdRef) -> bool {
        self.inner.remove_session(id).is_some()
    }

    /// Every stored session id of `user`, live or expired, in no particular order.
    pub fn user_session_ids(&self, user: &UserId) -> Vec<SessionId> {
        self.inner.user_session_ids(user)
    }

    /// Calls `f` with every live session (by the table's clock), one shard at a time: the shard's
    /// live sessions are copied out under its read lock, and `f` runs after the lock is released.
    ///
    /// So `f` may take as long as it likes and may do anything, including writing to this table,
    /// without stalling the shard's readers and writers. Each shard is seen as of its copy;
    /// sessions written concurrently (or by `f`) in shards not yet visited may or may not be seen.
    /// Memory holds at most one shard's copies at a time.
    pub fn for_each_live_session(&self, mut f: impl FnMut(SessionRecord)) {
        let mut raw = Vec::new();
        for shard in self.inner.shards.iter() {
            let now = self.inner.now();
            {
                let table = shard.table.read();
                raw.extend(
                    table
                        .iter()
                        .filter(|(_, s)| s.hot.is_live(now))
                        .map(|(_, s)| RawRecord::copy(&table, s)),
                );
            }
            for record in raw.drain(..).filter_map(RawRecord::finish) {
                f(record);
            }
        }
    }

    /// The number of sessions stored, live or expired (one read lock per shard, nothing copied).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.table.read().len()).sum()
    }

    /// Whether the table stores no session, live or expired.
    pub fn is_empty(&self) -> bool {
        self.inner.shards.iter().all(|s| s.table.read().len() == 0)
    }
}

impl Inner {
    /// The user's stored sessions, read from the per-user index: the user shard is held while the
    /// session shards are read one at a time (the lock order allows it).
    fn user_session_ids(&self, user: &UserId) -> Vec<SessionId> {
        let user_shard = self.user_shard(user);
        let users = self.lock_users([user_shard]);
        let Some(index) = users.map(user_shard).and_then(|m| m.get(user)) else {
            return Vec::new();
        };
        index
            .handles()
            .filter_map(|h| {
                let (s, slot) = split(h);
                let table = self.shards.get(s)?.table.read();
                table.get_hot(slot)?.id.to_session_id()
            })
            .collect()
    }
}
