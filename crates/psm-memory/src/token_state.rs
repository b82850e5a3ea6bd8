//! [`MemoryTokenStateStore`]: refresh-token families and per-user epochs in memory, a
//! [`TokenTable`] behind the `TokenStateStore` port.

use std::{fmt, sync::Arc};

use psm_core::{
    ConsumeOutcome, DynClock, FamilyId, NewTokenFamily, Result, SystemClock, TokenFamily, TokenId,
    TokenStateStore, UserId, async_trait,
};
use psm_tables::TokenTable;

use crate::PROVIDER;

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
    clock: DynClock,
    table: TokenTable,
}

impl MemoryTokenStateStore {
    /// An empty store reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: DynClock) -> Self {
        Self {
            clock,
            table: TokenTable::new(),
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
        f.debug_struct("MemoryTokenStateStore")
            .field("families", &self.table.len())
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
        self.table.create_family(family, self.clock.now())
    }

    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        Ok(self.table.get_family(id, self.clock.now()))
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
        let removed = self.table.cleanup_expired_families(self.clock.now());
        Ok(removed.len() as u64)
    }
}
