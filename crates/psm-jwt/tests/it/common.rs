//! Test support: a `TokenStateStore` over `psm_tables::TokenTable`, key fixtures and a harness.

#![allow(dead_code, unreachable_pub)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use psm_core::{
    Clock, ConsumeOutcome, FamilyId, ManualClock, NewTokenFamily, OsRandom, Result, SessionId,
    TokenFamily, TokenId, TokenStateStore, UserId, async_trait,
};
use psm_jwt::{Algorithm, KeySet, SigningKey, TokenConfig, TokenService};
use psm_tables::TokenTable;

pub const ES256_A: &[u8] = include_bytes!("../keys/es256_a.pem");
pub const ES256_A_PUB: &[u8] = include_bytes!("../keys/es256_a.pub.pem");
pub const ES256_A_SEC1: &[u8] = include_bytes!("../keys/es256_a.sec1.pem");
pub const ES256_B: &[u8] = include_bytes!("../keys/es256_b.pem");
pub const ES256_B_PUB: &[u8] = include_bytes!("../keys/es256_b.pub.pem");
pub const ES384: &[u8] = include_bytes!("../keys/es384.pem");
pub const ED25519: &[u8] = include_bytes!("../keys/ed25519.pem");
pub const ED25519_PUB: &[u8] = include_bytes!("../keys/ed25519.pub.pem");
pub const RS256: &[u8] = include_bytes!("../keys/rs256.pem");
pub const RS256_PUB: &[u8] = include_bytes!("../keys/rs256.pub.pem");

/// A recognisable HMAC secret, so tests can search output for it.
pub const HMAC_SECRET: &[u8] =
    b"test-only-hmac-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "psm-test";

/// The token state port over the shared in-memory table, with time from a `ManualClock`.
#[derive(Debug, Clone)]
pub struct TableStore {
    pub table: TokenTable,
    pub clock: ManualClock,
}

impl TableStore {
    pub fn new(clock: ManualClock) -> Self {
        Self {
            table: TokenTable::new(),
            clock,
        }
    }
}

#[async_trait]
impl TokenStateStore for TableStore {
    fn provider_name(&self) -> &str {
        "test-table"
    }
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        self.table.create_family(family, self.clock.now())
    }
    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        Ok(self.table.get_family(id, self.clock.now()))
    }
    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        // Yield first so concurrent refreshes really interleave on the runtime.
        tokio::task::yield_now().await;
        Ok(self
            .table
            .consume(family, presented, next, self.clock.now()))
    }
    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        Ok(self.table.revoke_family(id, self.clock.now()))
    }
    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        Ok(self.table.revoke_user_families(user, self.clock.now()))
    }
    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        Ok(self.table.user_epoch(user))
    }
    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        Ok(self.table.bump_user_epoch(user))
    }
    async fn cleanup_expired_families(&self) -> Result<u64> {
        Ok(self.table.cleanup_expired_families(self.clock.now()).len() as u64)
    }
}

/// A [`TableStore`] that lets a `revoke_user_tokens` (or part of one) interleave with the service's
/// own store calls at chosen points, deterministically: each hook fires once, then disarms.
#[derive(Debug, Clone)]
pub struct RacingStore {
    pub inner: TableStore,
    /// During the next `create_family`: the user's families are swept before the family is
    /// created and the user's epoch is raised after, as a concurrent `revoke_user_tokens` whose
    /// sweep just missed the new family would do.
    pub revoke_around_create: Arc<AtomicBool>,
    /// After the next `consume`: a whole `revoke_user_tokens` (sweep, then bump) of the family's
    /// user runs before the service reads the epoch again.
    pub revoke_after_consume: Arc<AtomicBool>,
    /// Just before the next `bump_user_epoch`: this family is created, as the `create_family` of a
    /// login whose epoch checks both ran before the bump.
    pub create_before_bump: Arc<Mutex<Option<NewTokenFamily>>>,
}

impl RacingStore {
    pub fn new(inner: TableStore) -> Self {
        Self {
            inner,
            revoke_around_create: Arc::default(),
            revoke_after_consume: Arc::default(),
            create_before_bump: Arc::default(),
        }
    }

    fn fire(flag: &AtomicBool) -> bool {
        flag.swap(false, Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenStateStore for RacingStore {
    fn provider_name(&self) -> &str {
        "test-racing-table"
    }
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        if !Self::fire(&self.revoke_around_create) {
            return self.inner.create_family(family).await;
        }
        let user = family.user_id.clone();
        self.inner.revoke_user_families(&user).await?;
        let created = self.inner.create_family(family).await?;
        self.inner.bump_user_epoch(&user).await?;
        Ok(created)
    }
    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        self.inner.get_family(id).await
    }
    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        let outcome = self.inner.consume(family, presented, next).await?;
        if Self::fire(&self.revoke_after_consume)
            && let Some(f) = self.inner.get_family(family).await?
        {
            self.inner.revoke_user_families(&f.user_id).await?;
            self.inner.bump_user_epoch(&f.user_id).await?;
        }
        Ok(outcome)
    }
    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        self.inner.revoke_family(id).await
    }
    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        self.inner.revoke_user_families(user).await
    }
    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        self.inner.user_epoch(user).await
    }
    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let pending = self.create_before_bump.lock().unwrap().take();
        if let Some(family) = pending {
            self.inner.create_family(family).await?;
        }
        self.inner.bump_user_epoch(user).await
    }
    async fn cleanup_expired_families(&self) -> Result<u64> {
        self.inner.cleanup_expired_families().await
    }
}

/// The default service (HS256 "k1", default config) over a [`RacingStore`] on a fresh table.
pub fn racing_harness() -> (TokenService, RacingStore) {
    let clock = ManualClock::at_2024();
    let racing = RacingStore::new(TableStore::new(clock.clone()));
    let svc = TokenService::new(
        KeySet::new(hs256("k1")).unwrap(),
        config(),
        Arc::new(racing.clone()),
        Arc::new(clock),
        Arc::new(OsRandom),
    )
    .unwrap();
    (svc, racing)
}

/// A service with its clock and store.
#[derive(Debug, Clone)]
pub struct Harness {
    pub svc: TokenService,
    pub clock: ManualClock,
    pub store: TableStore,
}

pub fn config() -> TokenConfig {
    TokenConfig::new(ISSUER, AUDIENCE)
}

pub fn hs256(kid: &str) -> SigningKey {
    SigningKey::hmac(kid, Algorithm::HS256, HMAC_SECRET).unwrap()
}

pub fn es256_a(kid: &str) -> SigningKey {
    SigningKey::from_private_pem(kid, Algorithm::ES256, ES256_A, ES256_A_PUB).unwrap()
}

pub fn rs256(kid: &str) -> SigningKey {
    SigningKey::from_private_pem(kid, Algorithm::RS256, RS256, RS256_PUB).unwrap()
}

pub fn ed25519(kid: &str) -> SigningKey {
    SigningKey::from_private_pem(kid, Algorithm::EdDSA, ED25519, ED25519_PUB).unwrap()
}

/// A service with `keys` and `config` over a fresh store at 2024-01-01.
pub fn harness_with(keys: KeySet, config: TokenConfig) -> Harness {
    let clock = ManualClock::at_2024();
    let store = TableStore::new(clock.clone());
    harness_on(keys, config, &store)
}

/// A service over an existing store (sharing its clock).
pub fn harness_on(keys: KeySet, config: TokenConfig, store: &TableStore) -> Harness {
    let svc = TokenService::new(
        keys,
        config,
        Arc::new(store.clone()),
        Arc::new(store.clock.clone()),
        Arc::new(OsRandom),
    )
    .unwrap();
    Harness {
        svc,
        clock: store.clock.clone(),
        store: store.clone(),
    }
}

/// The default: HS256 key "k1" and the default config.
pub fn harness() -> Harness {
    harness_with(KeySet::new(hs256("k1")).unwrap(), config())
}

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub fn session(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// Small conveniences on the manual clock.
pub trait ClockExt {
    fn now_ts(&self) -> psm_core::Timestamp;
    fn now_secs(&self) -> i64;
}

impl ClockExt for ManualClock {
    fn now_ts(&self) -> psm_core::Timestamp {
        Clock::now(self)
    }
    fn now_secs(&self) -> i64 {
        Clock::now(self).as_unix_secs()
    }
}
