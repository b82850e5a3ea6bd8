//! [`TokenTable`]: refresh-token families and per-user epochs.

use std::{fmt, sync::Arc};

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use psm_core::{
    ConsumeOutcome, Error, ErrorKind, FamilyId, NewTokenFamily, Result, Timestamp, TokenFamily,
    TokenId, UserId,
};

/// One family exactly as stored, with the ids it saw consumed (what a durable adapter journals and
/// restores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    /// The family.
    pub family: TokenFamily,
    /// Every token id the family issued and saw consumed; [`TokenTable::export_family`] returns
    /// them sorted.
    pub consumed: Vec<TokenId>,
}

/// Refresh-token state: families with an atomic consume, consumed ids, revocation and per-user
/// token epochs (the logic of the `TokenStateStore` port, synchronous, with time passed in).
///
/// Every operation runs under one mutex, which makes [`consume`](Self::consume) a true
/// compare-and-swap: of any number of concurrent consumes of one token id exactly one rotates.
/// Only ids are stored, never tokens.
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same families and epochs.
#[derive(Clone, Default)]
pub struct TokenTable {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    families: HashMap<FamilyId, Family>,
    /// The families of each user, for `revoke_user_families` without a scan.
    by_user: HashMap<UserId, HashSet<FamilyId>>,
    epochs: HashMap<UserId, u64>,
}

struct Family {
    record: TokenFamily,
    /// Every token id this family issued and saw consumed.
    consumed: HashSet<TokenId>,
}

impl Family {
    fn is_live(&self, now: Timestamp) -> bool {
        now < self.record.expires_at
    }

    fn to_record(&self) -> FamilyRecord {
        let mut consumed: Vec<TokenId> = self.consumed.iter().cloned().collect();
        consumed.sort_unstable();
        FamilyRecord {
            family: self.record.clone(),
            consumed,
        }
    }
}

impl State {
    fn remove(&mut self, id: &FamilyId) -> Option<Family> {
        let family = self.families.remove(id)?;
        if let Some(set) = self.by_user.get_mut(&family.record.user_id) {
            set.remove(id);
            if set.is_empty() {
                self.by_user.remove(&family.record.user_id);
            }
        }
        Some(family)
    }

    /// Stores `family`, replacing any family with its id.
    fn insert(&mut self, family: Family) {
        self.remove(&family.record.id);
        self.by_user
            .entry(family.record.user_id.clone())
            .or_default()
            .insert(family.record.id.clone());
        self.families.insert(family.record.id.clone(), family);
    }
}

impl TokenTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family created at `now`. A family past its `expires_at` that was not cleaned up yet
    /// is replaced, since it no longer exists for any other call.
    ///
    /// # Errors
    /// `Concurrency` when a live family with this id exists.
    pub fn create_family(&self, family: NewTokenFamily, now: Timestamp) -> Result<TokenFamily> {
        let mut state = self.state.lock();
        if state
            .families
            .get(&family.id)
            .is_some_and(|f| f.is_live(now))
        {
            return Err(Error::new(
                ErrorKind::Concurrency,
                "a token family with this id already exists",
            ));
        }
        let record = TokenFamily {
            id: family.id,
            user_id: family.user_id,
            session_id: family.session_id,
            current_token: family.first_token,
            created_at: now,
            expires_at: family.expires_at,
            revoked: false,
            rotations: 0,
        };
        state.insert(Family {
            record: record.clone(),
            consumed: HashSet::new(),
        });
        Ok(record)
    }

    /// The family `id` if it is live at `now` (revoked families included).
    pub fn get_family(&self, id: &FamilyId, now: Timestamp) -> Option<TokenFamily> {
        let state = self.state.lock();
        state
            .families
            .get(id)
            .filter(|f| f.is_live(now))
            .map(|f| f.record.clone())
    }

    /// Consumes `presented`, rotating to `next` if it is the current id.
    ///
    /// Order of the answers: unknown family; a consumed id (reuse: revokes the family, even when
    /// it is already revoked or past its lifetime, so every loser of a race sees `ReuseDetected`);
    /// revoked; expired; the current id (rotates); any other id (`Unknown`).
    pub fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
        now: Timestamp,
    ) -> ConsumeOutcome {
        let mut state = self.state.lock();
        let Some(f) = state.families.get_mut(family) else {
            return ConsumeOutcome::Unknown;
        };
        if f.consumed.contains(presented) {
            f.record.revoked = true;
            return ConsumeOutcome::ReuseDetected(f.record.clone());
        }
        if f.record.revoked {
            return ConsumeOutcome::Revoked;
        }
        if !f.is_live(now) {
            return ConsumeOutcome::Expired;
        }
        if f.record.current_token != *presented {
            return ConsumeOutcome::Unknown;
        }
        let old = std::mem::replace(&mut f.record.current_token, next.clone());
        f.consumed.insert(old);
        f.record.rotations = f.record.rotations.saturating_add(1);
        ConsumeOutcome::Rotated(f.record.clone())
    }

    /// Revokes family `id`; `true` if it was live at `now` and not revoked yet.
    pub fn revoke_family(&self, id: &FamilyId, now: Timestamp) -> bool {
        let mut state = self.state.lock();
        match state.families.get_mut(id) {
            Some(f) if f.is_live(now) && !f.record.revoked => {
                f.record.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Revokes every family of `user` live at `now`; returns how many were newly revoked.
    pub fn revoke_user_families(&self, user: &UserId, now: Timestamp) -> u64 {
        let mut guard = self.state.lock();
        let State {
            families, by_user, ..
        } = &mut *guard;
        let Some(ids) = by_user.get(user) else {
            return 0;
        };
        let mut revoked = 0;
        for id in ids {
            if let Some(f) = families.get_mut(id)
                && f.is_live(now)
                && !f.record.revoked
            {
                f.record.revoked = true;
                revoked += 1;
            }
        }
        revoked
    }

    /// The token epoch of `user` (0 until bumped).
    pub fn user_epoch(&self, user: &UserId) -> u64 {
        self.state.lock().epochs.get(user).copied().unwrap_or(0)
    }

    /// Increments the token epoch of `user` and returns the new value.
    pub fn bump_user_epoch(&self, user: &UserId) -> u64 {
        let mut state = self.state.lock();
        let epoch = state.epochs.entry(user.clone()).or_insert(0);
        *epoch = epoch.saturating_add(1);
        *epoch
    }

    /// Removes every family expired at `now` and returns their ids (in no particular order).
    pub fn cleanup_expired_families(&self, now: Timestamp) -> Vec<FamilyId> {
        let mut state = self.state.lock();
        let expired: Vec<FamilyId> = state
            .families
            .iter()
            .filter(|(_, f)| !f.is_live(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            state.remove(id);
        }
        expired
    }

    /// The stored family `id` with its consumed ids (sorted), also when expired or revoked.
    pub fn export_family(&self, id: &FamilyId) -> Option<FamilyRecord> {
        self.state.lock().families.get(id).map(Family::to_record)
    }

    /// Inserts or replaces a family exactly as given.
    pub fn restore_family(&self, record: FamilyRecord) {
        let family = Family {
            record: record.family,
            consumed: record.consumed.into_iter().collect(),
        };
        self.state.lock().insert(family);
    }

    /// Removes family `id`, live or not; `true` if it was stored.
    pub fn remove_family(&self, id: &FamilyId) -> bool {
        self.state.lock().remove(id).is_some()
    }

    /// The ids of every stored family of `user`, live or not, in no particular order.
    pub fn families_of(&self, user: &UserId) -> Vec<FamilyId> {
        self.state
            .lock()
            .by_user
            .get(user)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets the token epoch of `user` (restoring it; 0 forgets the user's epoch).
    pub fn set_user_epoch(&self, user: &UserId, epoch: u64) {
        let mut state = self.state.lock();
        if epoch == 0 {
            state.epochs.remove(user);
        } else {
            state.epochs.insert(user.clone(), epoch);
        }
    }

    /// Calls `f` with every stored family, live or not. The records are copied under the table's
    /// lock and `f` runs after it is released, so `f` may take as long as it likes and may do
    /// anything, including calling this table (the walk sees the table as of the copy).
    pub fn for_each_family(&self, f: impl FnMut(FamilyRecord)) {
        let records: Vec<FamilyRecord> = self
            .state
            .lock()
            .families
            .values()
            .map(Family::to_record)
            .collect();
        records.into_iter().for_each(f);
    }

    /// Calls `f` with every user's epoch that is not 0. The epochs are copied under the table's
    /// lock and `f` runs after it is released, so `f` may do anything, including calling this
    /// table (the walk sees the table as of the copy).
    pub fn for_each_epoch(&self, mut f: impl FnMut(&UserId, u64)) {
        let epochs: Vec<(UserId, u64)> = self
            .state
            .lock()
            .epochs
            .iter()
            .map(|(user, &epoch)| (user.clone(), epoch))
            .collect();
        for (user, epoch) in &epochs {
            f(user, *epoch);
        }
    }

    /// The number of stored families, live or not.
    pub fn len(&self) -> usize {
        self.state.lock().families.len()
    }

    /// Whether the table stores no family.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable")
            .field("families", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenTable {
    /// Removes everything (a durable adapter reloading from disk starts from an empty table).
    pub fn clear(&self) {
        *self.state.lock() = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use psm_core::{Clock, ManualClock, SessionId};

    use super::*;

    fn tid(s: &str) -> TokenId {
        TokenId::parse(s).unwrap()
    }

    fn fid(s: &str) -> FamilyId {
        FamilyId::parse(s).unwrap()
    }

    fn now() -> Timestamp {
        ManualClock::at_2024().now()
    }

    fn family(id: &str, user: &str) -> NewTokenFamily {
        NewTokenFamily {
            id: fid(id),
            user_id: UserId::parse(user).unwrap(),
            session_id: None,
            first_token: tid("t0"),
            expires_at: now().plus_secs(100),
        }
    }

    #[test]
    fn rotation_reuse_and_revocation() {
        let s = TokenTable::new();
        let f = s.create_family(family("f", "u"), now()).unwrap();
        assert_eq!(
            s.create_family(family("f", "u"), now()).unwrap_err().kind(),
            ErrorKind::Concurrency
        );
        let ConsumeOutcome::Rotated(r) = s.consume(&f.id, &tid("t0"), &tid("t1"), now()) else {
            unreachable!("the current token rotates")
        };
        assert_eq!((r.current_token.as_str(), r.rotations), ("t1", 1));
        assert_eq!(
            s.consume(&f.id, &tid("zz"), &tid("t2"), now()),
            ConsumeOutcome::Unknown
        );
        assert!(
            matches!(s.consume(&f.id, &tid("t0"), &tid("t2"), now()), ConsumeOutcome::ReuseDetected(x) if x.revoked)
        );
        assert_eq!(
            s.consume(&f.id, &tid("t1"), &tid("t2"), now()),
            ConsumeOutcome::Revoked
        );
        assert!(!s.revoke_family(&f.id, now()));
    }

    #[test]
    fn expiry_epochs_and_cleanup() {
        let s = TokenTable::new();
        s.create_family(family("a", "u"), now()).unwrap();
        s.create_family(family("b", "u"), now()).unwrap();
        let user = UserId::parse("u").unwrap();
        assert!(s.revoke_family(&fid("a"), now()));
        assert_eq!(s.revoke_user_families(&user, now()), 1);
        assert_eq!(s.user_epoch(&user), 0);
        assert_eq!(s.bump_user_epoch(&user), 1);
        assert_eq!(s.bump_user_epoch(&user), 2);
        let later = now().plus_secs(100);
        assert!(s.get_family(&fid("a"), later).is_none());
        assert_eq!(
            s.consume(&fid("a"), &tid("t0"), &tid("t1"), later),
            ConsumeOutcome::Revoked
        );
        // An expired family can be created again before cleanup.
        assert!(s.create_family(family("a", "u"), later).is_ok());
        let mut removed = s.cleanup_expired_families(later.plus_secs(100));
        removed.sort();
        assert_eq!(removed, [fid("a"), fid("b")]);
        assert!(s.cleanup_expired_families(later.plus_secs(100)).is_empty());
        assert!(s.state.lock().by_user.is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn exactly_one_concurrent_consume_rotates() {
        let s = TokenTable::new();
        let f = s.create_family(family("f", "u"), now()).unwrap();
        let outcomes: Vec<ConsumeOutcome> = thread::scope(|scope| {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let (s, id) = (s.clone(), f.id.clone());
                    scope.spawn(move || s.consume(&id, &tid("t0"), &tid(&format!("n{i}")), now()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut rotated = 0;
        for outcome in outcomes {
            match outcome {
                ConsumeOutcome::Rotated(_) => rotated += 1,
                other => assert!(
                    matches!(other, ConsumeOutcome::ReuseDetected(_)),
                    "{other:?}"
                ),
            }
        }
        assert_eq!(rotated, 1);
    }

    #[test]
    fn family_records_round_trip_with_consumed_ids_and_epochs() {
        let s = TokenTable::new();
        let mut new = family("f", "u");
        new.session_id = Some(SessionId::parse("sess").unwrap());
        s.create_family(new, now()).unwrap();
        for (old, next) in [("t0", "t1"), ("t1", "t2"), ("t2", "t3")] {
            assert!(matches!(
                s.consume(&fid("f"), &tid(old), &tid(next), now()),
                ConsumeOutcome::Rotated(_)
            ));
        }
        s.create_family(family("g", "u"), now()).unwrap();
        assert!(s.revoke_family(&fid("g"), now()));
        s.create_family(family("h", "other"), now()).unwrap();
        s.bump_user_epoch(&UserId::parse("u").unwrap());
        s.bump_user_epoch(&UserId::parse("u").unwrap());

        let f = s.export_family(&fid("f")).unwrap();
        assert_eq!(f.consumed, [tid("t0"), tid("t1"), tid("t2")]);
        assert_eq!(
            (f.family.current_token.as_str(), f.family.rotations),
            ("t3", 3)
        );
        assert!(s.export_family(&fid("g")).unwrap().family.revoked);
        assert!(s.export_family(&fid("missing")).is_none());

        let copy = TokenTable::new();
        s.for_each_family(|r| copy.restore_family(r));
        s.for_each_epoch(|u, e| copy.set_user_epoch(u, e));
        for id in ["f", "g", "h"] {
            assert_eq!(
                copy.export_family(&fid(id)),
                s.export_family(&fid(id)),
                "{id}"
            );
        }
        let user = UserId::parse("u").unwrap();
        assert_eq!(copy.user_epoch(&user), 2);
        let mut mine = copy.families_of(&user);
        mine.sort();
        assert_eq!(mine, [fid("f"), fid("g")]);
        // The restored consumed ids still detect reuse.
        assert!(matches!(
            copy.consume(&fid("f"), &tid("t1"), &tid("x"), now()),
            ConsumeOutcome::ReuseDetected(_)
        ));

        // Restoring replaces, moving the family to its new user; removing forgets it.
        let moved = FamilyRecord {
            family: TokenFamily {
                user_id: UserId::parse("other").unwrap(),
                ..f.family.clone()
            },
            consumed: Vec::new(),
        };
        copy.restore_family(moved.clone());
        assert_eq!(copy.export_family(&fid("f")), Some(moved));
        assert_eq!(copy.families_of(&user), [fid("g")]);
        assert!(copy.remove_family(&fid("g")));
        assert!(!copy.remove_family(&fid("g")));
        assert!(copy.families_of(&user).is_empty());
        assert_eq!(copy.len(), 2);
        copy.set_user_epoch(&user, 0);
        assert_eq!(copy.user_epoch(&user), 0);
        let mut epochs = 0;
        copy.for_each_epoch(|_, _| epochs += 1);
        assert_eq!(epochs, 0);
    }

    #[test]
    fn walks_may_call_the_table() {
        let s = TokenTable::new();
        s.create_family(family("f", "u"), now()).unwrap();
        let user = UserId::parse("u").unwrap();
        s.bump_user_epoch(&user);
        let mut seen = 0;
        // Each would deadlock if `f` ran under the table's lock.
        s.for_each_family(|r| {
            seen += 1;
            assert!(s.remove_family(&r.family.id));
        });
        s.for_each_epoch(|u, e| {
            seen += 1;
            s.set_user_epoch(u, e + 1);
        });
        assert_eq!(seen, 2);
        assert!(s.is_empty());
        assert_eq!(s.user_epoch(&user), 2);
    }
}
