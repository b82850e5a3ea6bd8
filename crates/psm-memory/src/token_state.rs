//! [`MemoryTokenStateStore`]: refresh-token families and per-user epochs in memory.

use std::{fmt, sync::Arc};

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use psm_core::{
    ConsumeOutcome, Error, ErrorKind, FamilyId, NewTokenFamily, Result, SystemClock, Timestamp,
    TokenFamily, TokenId, TokenStateStore, UserId, async_trait,
};

use crate::store::PROVIDER;

/// In-process refresh-token state: families with an atomic consume, consumed ids, revocation and
/// per-user token epochs.
///
/// Every operation runs under one mutex, which makes `consume` a true compare-and-swap: of any
/// number of concurrent consumes of one token id exactly one rotates. Only ids are stored, never
/// tokens.
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same families and epochs.
#[derive(Clone)]
pub struct MemoryTokenStateStore {
    clock: psm_core::DynClock,
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
}

impl MemoryTokenStateStore {
    /// An empty store reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: psm_core::DynClock) -> Self {
        Self {
            clock,
            state: Arc::default(),
        }
    }
}

impl Default for MemoryTokenStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryTokenStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let families = self.state.lock().families.len();
        f.debug_struct("MemoryTokenStateStore")
            .field("families", &families)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenStateStore for MemoryTokenStateStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    /// A family past its `expires_at` that was not cleaned up yet is replaced, since it no longer
    /// exists for any other call.
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        let now = self.clock.now();
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
        state.remove(&family.id);
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
        state
            .by_user
            .entry(record.user_id.clone())
            .or_default()
            .insert(record.id.clone());
        state.families.insert(
            record.id.clone(),
            Family {
                record: record.clone(),
                consumed: HashSet::new(),
            },
        );
        Ok(record)
    }

    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        let now = self.clock.now();
        let state = self.state.lock();
        Ok(state
            .families
            .get(id)
            .filter(|f| f.is_live(now))
            .map(|f| f.record.clone()))
    }

    /// Order of the answers: unknown family; a consumed id (reuse: revokes the family, even when
    /// it is already revoked or past its lifetime, so every loser of a race sees `ReuseDetected`);
    /// revoked; expired; the current id (rotates); any other id (`Unknown`).
    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let Some(f) = state.families.get_mut(family) else {
            return Ok(ConsumeOutcome::Unknown);
        };
        if f.consumed.contains(presented) {
            f.record.revoked = true;
            return Ok(ConsumeOutcome::ReuseDetected(f.record.clone()));
        }
        if f.record.revoked {
            return Ok(ConsumeOutcome::Revoked);
        }
        if !f.is_live(now) {
            return Ok(ConsumeOutcome::Expired);
        }
        if f.record.current_token != *presented {
            return Ok(ConsumeOutcome::Unknown);
        }
        let old = std::mem::replace(&mut f.record.current_token, next.clone());
        f.consumed.insert(old);
        f.record.rotations = f.record.rotations.saturating_add(1);
        Ok(ConsumeOutcome::Rotated(f.record.clone()))
    }

    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        match state.families.get_mut(id) {
            Some(f) if f.is_live(now) && !f.record.revoked => {
                f.record.revoked = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        let now = self.clock.now();
        let mut guard = self.state.lock();
        let State {
            families, by_user, ..
        } = &mut *guard;
        let Some(ids) = by_user.get(user) else {
            return Ok(0);
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
        Ok(revoked)
    }

    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        Ok(self.state.lock().epochs.get(user).copied().unwrap_or(0))
    }

    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let mut state = self.state.lock();
        let epoch = state.epochs.entry(user.clone()).or_insert(0);
        *epoch = epoch.saturating_add(1);
        Ok(*epoch)
    }

    async fn cleanup_expired_families(&self) -> Result<u64> {
        let now = self.clock.now();
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
        Ok(expired.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use psm_core::{Clock, ManualClock};

    use super::*;

    fn tid(s: &str) -> TokenId {
        TokenId::parse(s).unwrap()
    }

    fn family(clock: &ManualClock, id: &str, user: &str) -> NewTokenFamily {
        NewTokenFamily {
            id: FamilyId::parse(id).unwrap(),
            user_id: UserId::parse(user).unwrap(),
            session_id: None,
            first_token: tid("t0"),
            expires_at: clock.now().plus_secs(100),
        }
    }

    #[tokio::test]
    async fn rotation_reuse_and_revocation() {
        let clock = ManualClock::at_2024();
        let s = MemoryTokenStateStore::with_clock(Arc::new(clock.clone()));
        let f = s.create_family(family(&clock, "f", "u")).await.unwrap();
        assert_eq!(
            s.create_family(family(&clock, "f", "u"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Concurrency
        );
        let ConsumeOutcome::Rotated(r) = s.consume(&f.id, &tid("t0"), &tid("t1")).await.unwrap()
        else {
            unreachable!("the current token rotates")
        };
        assert_eq!((r.current_token.as_str(), r.rotations), ("t1", 1));
        assert_eq!(
            s.consume(&f.id, &tid("zz"), &tid("t2")).await.unwrap(),
            ConsumeOutcome::Unknown
        );
        assert!(
            matches!(s.consume(&f.id, &tid("t0"), &tid("t2")).await.unwrap(), ConsumeOutcome::ReuseDetected(x) if x.revoked)
        );
        assert_eq!(
            s.consume(&f.id, &tid("t1"), &tid("t2")).await.unwrap(),
            ConsumeOutcome::Revoked
        );
        assert!(!s.revoke_family(&f.id).await.unwrap());
    }

    #[tokio::test]
    async fn expiry_epochs_and_cleanup() {
        let clock = ManualClock::at_2024();
        let s = MemoryTokenStateStore::with_clock(Arc::new(clock.clone()));
        s.create_family(family(&clock, "a", "u")).await.unwrap();
        s.create_family(family(&clock, "b", "u")).await.unwrap();
        let user = UserId::parse("u").unwrap();
        assert!(
            s.revoke_family(&FamilyId::parse("a").unwrap())
                .await
                .unwrap()
        );
        assert_eq!(s.revoke_user_families(&user).await.unwrap(), 1);
        assert_eq!(s.user_epoch(&user).await.unwrap(), 0);
        assert_eq!(s.bump_user_epoch(&user).await.unwrap(), 1);
        assert_eq!(s.bump_user_epoch(&user).await.unwrap(), 2);
        clock.advance(Duration::from_secs(100));
        let a = FamilyId::parse("a").unwrap();
        assert!(s.get_family(&a).await.unwrap().is_none());
        assert_eq!(
            s.consume(&a, &tid("t0"), &tid("t1")).await.unwrap(),
            ConsumeOutcome::Revoked
        );
        assert_eq!(s.cleanup_expired_families().await.unwrap(), 2);
        assert_eq!(s.cleanup_expired_families().await.unwrap(), 0);
        assert!(s.state.lock().by_user.is_empty());
    }

    #[tokio::test]
    async fn exactly_one_concurrent_consume_rotates() {
        let clock = ManualClock::at_2024();
        let s = MemoryTokenStateStore::with_clock(Arc::new(clock.clone()));
        let f = s.create_family(family(&clock, "f", "u")).await.unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (s, id) = (s.clone(), f.id.clone());
                tokio::spawn(async move {
                    s.consume(&id, &tid("t0"), &tid(&format!("n{i}")))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut rotated = 0;
        for t in tasks {
            match t.await.unwrap() {
                ConsumeOutcome::Rotated(_) => rotated += 1,
                other => assert!(
                    matches!(other, ConsumeOutcome::ReuseDetected(_)),
                    "{other:?}"
                ),
            }
        }
        assert_eq!(rotated, 1);
    }
}
