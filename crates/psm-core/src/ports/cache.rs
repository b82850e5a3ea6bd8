//! The `Cache` port: byte values with TTL and tag-based invalidation.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{CacheKey, CacheTag, Result, Ttl};

/// A cache for user lookups and query results.
#[async_trait]
pub trait Cache: fmt::Debug + Send + Sync + 'static {
    /// The provider's name.
    fn provider_name(&self) -> &str;

    /// The value under `key`.
    ///
    /// # Behavior
    /// - Missing or expired (`now >= set time + ttl`): `None`.
    /// - Returns a copy of exactly the bytes stored.
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`, tagged with `tags`.
    ///
    /// # Behavior
    /// - Overwrites an existing value (and replaces its tags).
    /// - Values over 4 MiB fail with `Validation` and change nothing.
    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()>;

    /// Removes `key`. Returns `true` if a live value was removed.
    async fn delete(&self, key: &CacheKey) -> Result<bool>;

    /// Removes every value tagged `tag`. Returns how many live values were removed.
    ///
    /// # Behavior
    /// - Values without the tag are untouched.
    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64>;
}

/// A shared, type-erased cache.
pub type DynCache = Arc<dyn Cache>;

macro_rules! forward_cache {
    ($ptr:ty) => {
        #[async_trait]
        impl<T: Cache + ?Sized> Cache for $ptr {
            fn provider_name(&self) -> &str {
                (**self).provider_name()
            }
            async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
                (**self).get(key).await
            }
            async fn set(
                &self,
                key: &CacheKey,
                value: &[u8],
                ttl: Ttl,
                tags: &[CacheTag],
            ) -> Result<()> {
                (**self).set(key, value, ttl, tags).await
            }
            async fn delete(&self, key: &CacheKey) -> Result<bool> {
                (**self).delete(key).await
            }
            async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
                (**self).delete_tag(tag).await
            }
        }
    };
}

forward_cache!(Arc<T>);
forward_cache!(Box<T>);
