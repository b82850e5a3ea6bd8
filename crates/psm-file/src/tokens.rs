//! [`FileTokenStateStore`]: durable refresh-token families and per-user epochs.

use psm_core::{
    ConsumeOutcome, FamilyId, NewTokenFamily, Result, TokenFamily, TokenId, TokenStateStore,
    UserId, async_trait,
};

use crate::{FileStorage, journal::Batch, records::Entry, storage::PROVIDER, storage::Tables};

/// The durable token state store of one storage directory.
///
/// Every change (a rotation, a revocation, an epoch bump) is acknowledged only after it is on
/// disk, so a rotation that was answered can never be replayed after a crash, and the writer
/// thread applies consumes one at a time, which makes `consume` a true compare-and-swap. Only token
/// ids are stored, never tokens.
///
/// # Clone
/// Cloning is cheap and shares the open directory.
#[derive(Debug, Clone)]
pub struct FileTokenStateStore {
    storage: FileStorage,
}

impl FileTokenStateStore {
    pub(crate) fn new(storage: FileStorage) -> Self {
        Self { storage }
    }

    /// The storage directory this store lives in.
    pub fn storage(&self) -> &FileStorage {
        &self.storage
    }
}

fn push_family(t: &Tables, batch: &mut Batch, id: &FamilyId) {
    if let Some(r) = t.tokens.export_family(id) {
        batch.push(&Entry::family(&r));
    }
}

#[async_trait]
impl TokenStateStore for FileTokenStateStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        let inner = self.storage.inner();
        let now = inner.now();
        inner
            .write(move |t, batch| {
                let created = t.tokens.create_family(family, now)?;
                push_family(t, batch, &created.id);
                Ok(created)
            })
            .await
    }

    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.tokens.get_family(id, inner.now()))
    }

    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        let inner = self.storage.inner();
        let now = inner.now();
        let (family, presented, next) = (family.clone(), presented.clone(), next.clone());
        inner
            .write(move |t, batch| {
                let outcome = t.tokens.consume(&family, &presented, &next, now);
                if matches!(
                    outcome,
                    ConsumeOutcome::Rotated(_) | ConsumeOutcome::ReuseDetected(_)
                ) {
                    push_family(t, batch, &family);
                }
                Ok(outcome)
            })
            .await
    }

    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        let inner = self.storage.inner();
        let now = inner.now();
        let id = id.clone();
        inner
            .write(move |t, batch| {
                let revoked = t.tokens.revoke_family(&id, now);
                if revoked {
                    push_family(t, batch, &id);
                }
                Ok(revoked)
            })
            .await
    }

    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        let inner = self.storage.inner();
        let now = inner.now();
        let user = user.clone();
        inner
            .write(move |t, batch| {
                let n = t.tokens.revoke_user_families(&user, now);
                if n > 0 {
                    for id in t.tokens.families_of(&user) {
                        push_family(t, batch, &id);
                    }
                }
                Ok(n)
            })
            .await
    }

    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.tokens.user_epoch(user))
    }

    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let user = user.clone();
        self.storage
            .inner()
            .write(move |t, batch| {
                let epoch = t.tokens.bump_user_epoch(&user);
                batch.push(&Entry::Epoch {
                    user: user.as_str(),
                    epoch,
                });
                Ok(epoch)
            })
            .await
    }

    async fn cleanup_expired_families(&self) -> Result<u64> {
        let inner = self.storage.inner();
        let now = inner.now();
        inner
            .write(move |t, batch| {
                let removed = t.tokens.cleanup_expired_families(now);
                for id in &removed {
                    batch.push(&Entry::FamilyRemoved(id.as_str()));
                }
                Ok(removed.len() as u64)
            })
            .await
    }
}
