//! Quota, sweeping, clearing and statistics.

use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashSet;
use psm_core::{Error, ErrorKind, Result};

use super::Inner;
use crate::stats::TableStats;

/// A place reserved in the quota for a new session; returned on drop unless committed.
pub(crate) struct Reservation<'a> {
    stored: &'a AtomicUsize,
    armed: bool,
}

impl Reservation<'_> {
    /// The new session was stored: keep the place.
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.stored.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Inner {
    pub(crate) fn try_reserve(&self) -> Option<Reservation<'_>> {
        let cap = self.capacity;
        self.stored
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Reservation {
                stored: &self.stored,
                armed: true,
            })
    }

    /// Takes a place for a restored session whatever the quota (a restore reinstates what was
    /// stored, even above `max_sessions`), keeping the counter exact. Fails only at the table's
    /// structural limit of `u32::MAX - 1` sessions.
    pub(crate) fn force_reserve(&self) -> Option<Reservation<'_>> {
        const HARD_CAP: usize = u32::MAX as usize - 1;
        self.stored
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < HARD_CAP).then_some(n + 1)
            })
            .ok()
            .map(|_| Reservation {
                stored: &self.stored,
                armed: true,
            })
    }

    /// Reserves a place for a new session. When the quota is full, expired sessions are purged
    /// first (RULES: `max_sessions` counts live sessions only). Must be called holding no lock.
    ///
    /// The counter is exact under concurrency: a place is taken by compare-and-swap before the
    /// session is stored, so concurrent inserts never exceed the quota.
    pub(crate) fn reserve(&self) -> Result<Reservation<'_>> {
        if let Some(r) = self.try_reserve() {
            return Ok(r);
        }
        self.cleanup();
        self.try_reserve().ok_or_else(|| self.quota_error())
    }

    pub(crate) fn quota_error(&self) -> Error {
        Error::new(
            ErrorKind::StorageQuotaExceeded,
            format!(
                "the {} store holds max_sessions live sessions",
                self.config.provider
            ),
        )
        .with_detail("max_sessions", self.capacity)
    }

    /// Returns `n` places to the quota (sessions removed).
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.stored.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub(crate) fn note_peak(&self) {
        let n = self.stored.load(Ordering::Acquire) as u64;
        self.counters.peak.fetch_max(n, Ordering::Relaxed);
    }

    /// Removes every expired session (and so its index entry); returns how many. This is also what
    /// an adapter's background sweeper runs.
    ///
    /// Candidates are found under a shard read lock; each group with one owner shard is then
    /// removed under that user shard and the session shard (the lock order), re-checking expiry.
    pub(crate) fn cleanup(&self) -> u64 {
        let mut removed = 0usize;
        for shard in 0..self.shards.len() {
            let now = self.now();
            let mut candidates: Vec<(usize, u32)> = {
                let table = self.shards[shard].table.read();
                table
                    .iter()
                    .filter(|(_, s)| !s.hot.is_live(now))
                    .map(|(slot, s)| (self.user_shard(&s.cold.user), slot))
                    .collect()
            };
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_unstable();
            for group in candidates.chunk_by(|a, b| a.0 == b.0) {
                let mut users = self.lock_users([group[0].0]);
                let mut shards = self.lock_shards([shard]);
                let now = self.now();
                for &(owner_shard, slot) in group {
                    // The slot may have been reused since the read: remove it only if what it
                    // holds now is expired and owned by a user whose shard is locked.
                    let still = shards
                        .get(shard)
                        .and_then(|t| t.get(slot))
                        .is_some_and(|s| {
                            !s.hot.is_live(now) && self.user_shard(&s.cold.user) == owner_shard
                        });
                    if still
                        && self
                            .remove_at(&mut users, &mut shards, shard, slot)
                            .is_some()
                    {
                        removed += 1;
                    }
                }
            }
        }
        self.release(removed);
        self.counters
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed as u64
    }

    /// Removes every session under all locks; returns how many were live.
    pub(crate) fn clear_all(&self) -> u64 {
        self.count_misc();
        let mut users = self.lock_users(0..self.users.len());
        let mut shards = self.lock_shards(0..self.shards.len());
        let now = self.now();
        let (mut live, mut total) = (0u64, 0usize);
        for (_, table) in shards.tables_mut() {
            live += table.iter_hot().filter(|(_, s)| s.is_live(now)).count() as u64;
            total += table.len();
            table.clear();
        }
        for map in users.maps_mut() {
            *map = Default::default();
        }
        drop(shards);
        drop(users);
        self.release(total);
        self.counters
            .expired
            .fetch_add(total as u64 - live, Ordering::Relaxed);
        live
    }

    /// The seed's `get_memory_stats` counters.
    pub(crate) fn stats(&self) -> TableStats {
        let now = self.now();
        let (mut total, mut active, mut with_ttl) = (0u64, 0u64, 0u64);
        let mut users: HashSet<*const psm_core::UserId> = HashSet::new();
        let mut ops = self.counters.ops.load(Ordering::Relaxed);
        for shard in self.shards.iter() {
            ops += shard.ops();
            let table = shard.table.read();
            total += table.len() as u64;
            for (_, s) in table.iter().filter(|(_, s)| s.hot.is_live(now)) {
                active += 1;
                with_ttl += u64::from(s.hot.has_ttl());
                // Each user's id is one shared allocation, so its address identifies the user.
                users.insert(std::sync::Arc::as_ptr(&s.cold.user));
            }
        }
        let uptime = now.saturating_sub(self.started.as_unix_micros()) / 1_000_000;
        TableStats {
            uptime_seconds: u64::try_from(uptime).unwrap_or(0),
            total_sessions: total,
            active_sessions: active,
            sessions_with_ttl: with_ttl,
            unique_users: users.len() as u64,
            peak_session_count: self.counters.peak.load(Ordering::Relaxed),
            total_sessions_created: self.counters.created.load(Ordering::Relaxed),
            total_sessions_expired: self.counters.expired.load(Ordering::Relaxed),
            total_operations: ops,
            storage_limit: self.config.max_sessions.map(|m| m as u64),
        }
    }
}
