//! Proof that the soak's checks can fail: the workload run end to end on stores broken on
//! purpose must report each planted defect as a violation, and the same run on the intact
//! in-process stores must report none.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use psm::{
    Capabilities, NewSession, Page, PermissionCheck, PermissionList, PermissionRef,
    PermissionStore, Result, SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit,
    TokenStateStore, Ttl, UserId, async_trait,
    memory::{MemoryConfig, MemoryStore, MemoryTokenStateStore},
};
use psm_core::{ConsumeOutcome, FamilyId, NewTokenFamily, TokenFamily, TokenId};

use crate::{model::Invariant, provider::Rig, soak};

/// A memory store that every `EVERY`th time drops a store (acknowledging it), keeps a session it
/// reports invalidated, and ignores the login limit.
#[derive(Debug, Clone)]
struct Broken {
    inner: MemoryStore,
    calls: Arc<AtomicU64>,
}

const EVERY: u64 = 7;

impl Broken {
    fn strike(&self) -> bool {
        self.calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(EVERY)
    }
}

#[async_trait]
impl PermissionStore for Broken {
    fn provider_name(&self) -> &str {
        "broken"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn initialize(&self) -> Result<()> {
        self.inner.initialize().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        if self.strike() {
            return Ok(());
        }
        self.inner.store_permissions(id, session).await
    }
    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        let limit = if self.strike() {
            SessionLimit::unlimited()
        } else {
            limit
        };
        self.inner.create_session(id, session, limit).await
    }
    async fn check_permission(&self, id: &SessionIdRef, p: &PermissionRef) -> Result<bool> {
        self.inner.check_permission(id, p).await
    }
    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        ps: &PermissionList,
    ) -> Result<PermissionCheck> {
        self.inner.check_permissions(id, ps).await
    }
    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        self.inner.get_permissions(id).await
    }
    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        if self.strike() {
            return self.inner.get_permissions(id).await.map(|s| s.is_some());
        }
        self.inner.invalidate_session(id).await
    }
    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        ps: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        self.inner.update_permissions(id, ps, ttl).await
    }
    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        self.inner.extend_session_ttl(id, ttl).await
    }
    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        self.inner.get_session_info(id).await
    }
    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        self.inner.list_sessions(user, page).await
    }
    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        self.inner.cleanup_expired_sessions().await
    }
    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        self.inner.invalidate_user_sessions(user).await
    }
}

/// Token state that accepts a reused refresh token as if it were current.
#[derive(Debug)]
struct Forgetful(MemoryTokenStateStore);

#[async_trait]
impl TokenStateStore for Forgetful {
    fn provider_name(&self) -> &str {
        "forgetful"
    }
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        self.0.create_family(family).await
    }
    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        self.0.get_family(id).await
    }
    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        Ok(match self.0.consume(family, presented, next).await? {
            ConsumeOutcome::ReuseDetected(f) => ConsumeOutcome::Rotated(f),
            other => other,
        })
    }
    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        self.0.revoke_family(id).await
    }
    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        self.0.revoke_user_families(user).await
    }
    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        self.0.user_epoch(user).await
    }
    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        self.0.bump_user_epoch(user).await
    }
    async fn cleanup_expired_families(&self) -> Result<u64> {
        self.0.cleanup_expired_families().await
    }
}

async fn run(rig: Rig) -> crate::Outcome {
    let (outcome, rig) = soak(
        "test",
        rig,
        Duration::from_secs(3),
        1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    rig.teardown().await.unwrap();
    outcome.unwrap()
}

/// One test, so the two runs do not share the process's memory and descriptors at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_stores_pass_and_every_planted_defect_is_reported() {
    let rig = Rig::from_parts(
        MemoryStore::new(MemoryConfig::default()),
        Arc::new(MemoryTokenStateStore::new()),
    )
    .await
    .unwrap();
    let outcome = run(rig).await;
    let report = outcome
        .stats
        .report("memory", outcome.seconds, &outcome.growth);
    assert_eq!(outcome.stats.violations(), 0, "{report}");
    assert!(outcome.stats.totals().calls > 1000, "{report}");

    let store = Broken {
        inner: MemoryStore::new(MemoryConfig::default()),
        calls: Arc::default(),
    };
    let tokens = Arc::new(Forgetful(MemoryTokenStateStore::new()));
    let outcome = run(Rig::from_parts(store, tokens).await.unwrap()).await;
    let report = outcome
        .stats
        .report("broken", outcome.seconds, &outcome.growth);
    for invariant in [
        Invariant::LostWrite,
        Invariant::DeadPassed,
        Invariant::LimitExceeded,
        Invariant::RefreshAcceptedTwice,
    ] {
        assert!(
            outcome.stats.count(invariant) > 0,
            "{invariant:?} was not reported:\n{report}"
        );
    }
}
