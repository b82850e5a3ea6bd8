//! The `TokenStateStore` port: refresh-token families with atomic consume, and per-user epochs.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{ConsumeOutcome, FamilyId, NewTokenFamily, Result, TokenFamily, TokenId, UserId};

/// Refresh-token state. Only token ids are stored, never whole tokens.
#[async_trait]
pub trait TokenStateStore: fmt::Debug + Send + Sync + 'static {
    /// The provider's name.
    fn provider_name(&self) -> &str;

    /// Starts a family whose current token is `family.first_token`.
    ///
    /// # Behavior
    /// - Fails with `Concurrency` (changing nothing) when a family with this id exists.
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily>;

    /// The family, or `None` (also once it is past `expires_at`).
    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>>;

    /// Consumes `presented` and makes `next` current, atomically (compare-and-swap).
    ///
    /// # Behavior
    /// - `presented` current, family live: `Rotated` with the updated family.
    /// - Of any number of concurrent consumes of one id, exactly one gets `Rotated`; the others get
    ///   `ReuseDetected`.
    /// - `presented` consumed earlier: the family is revoked and `ReuseDetected` is returned.
    /// - Revoked family: `Revoked`. Family past `expires_at`: `Expired`; rotation never extends it.
    /// - Unknown family, or an id the family never issued: `Unknown`, changing nothing.
    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome>;

    /// Revokes one family. Returns `true` if it existed and was not revoked yet.
    async fn revoke_family(&self, id: &FamilyId) -> Result<bool>;

    /// Revokes every family of `user`. Returns how many were newly revoked.
    async fn revoke_user_families(&self, user: &UserId) -> Result<u64>;

    /// The user's token epoch (0 for a user never bumped).
    async fn user_epoch(&self, user: &UserId) -> Result<u64>;

    /// Raises the user's token epoch by one and returns the new value; concurrent bumps never lose one.
    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64>;

    /// Removes families past their absolute lifetime. Returns how many.
    async fn cleanup_expired_families(&self) -> Result<u64>;
}

/// A shared, type-erased token state store.
pub type DynTokenStateStore = Arc<dyn TokenStateStore>;

macro_rules! forward_token_state_store {
    ($ptr:ty) => {
        #[async_trait]
        impl<T: TokenStateStore + ?Sized> TokenStateStore for $ptr {
            fn provider_name(&self) -> &str {
                (**self).provider_name()
            }
            async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
                (**self).create_family(family).await
            }
            async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
                (**self).get_family(id).await
            }
            async fn consume(
                &self,
                family: &FamilyId,
                presented: &TokenId,
                next: &TokenId,
            ) -> Result<ConsumeOutcome> {
                (**self).consume(family, presented, next).await
            }
            async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
                (**self).revoke_family(id).await
            }
            async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
                (**self).revoke_user_families(user).await
            }
            async fn user_epoch(&self, user: &UserId) -> Result<u64> {
                (**self).user_epoch(user).await
            }
            async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
                (**self).bump_user_epoch(user).await
            }
            async fn cleanup_expired_families(&self) -> Result<u64> {
                (**self).cleanup_expired_families().await
            }
        }
    };
}

forward_token_state_store!(Arc<T>);
forward_token_state_store!(Box<T>);
