//! The psm-core conformance suite against every memory adapter, plus the permission and user stores
//! through `Box<dyn …>` and `Arc<dyn …>` (STYLE rule 18), so the forwarding impls are run too.

use std::sync::Arc;

use psm_core::{
    DynCache, DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock, PermissionStore,
    UserStore, async_trait,
    testkit::{CacheFixture, PermissionStoreFixture, TokenStateFixture, UserStoreFixture},
};
use psm_memory::{MemoryCache, MemoryConfig, MemoryStore, MemoryTokenStateStore, MemoryUserStore};

/// How the fixture hands the store to the suite (shown for the permission store; the user store
/// is wrapped alike).
#[derive(Clone, Copy)]
enum Wrapping {
    /// `Arc<MemoryStore>` as `Arc<dyn PermissionStore>`.
    Plain,
    /// `Arc<Box<dyn PermissionStore>>`: the suite runs through the `Box<T>` forwarding impl.
    Boxed,
    /// `Arc<Arc<dyn PermissionStore>>`: the suite runs through the `Arc<T>` forwarding impl.
    Arced,
}

struct Sessions(Wrapping);

#[async_trait]
impl PermissionStoreFixture for Sessions {
    async fn create(&self, clock: ManualClock) -> DynPermissionStore {
        let store = MemoryStore::with_clock(MemoryConfig::default(), Arc::new(clock));
        if let Err(e) = store.initialize().await {
            panic!("initialize failed: {e}");
        }
        match self.0 {
            Wrapping::Plain => Arc::new(store),
            Wrapping::Boxed => Arc::new(Box::new(store) as Box<dyn PermissionStore>),
            Wrapping::Arced => Arc::new(Arc::new(store) as Arc<dyn PermissionStore>),
        }
    }
}

struct Users(Wrapping);

#[async_trait]
impl UserStoreFixture for Users {
    async fn create(&self, clock: ManualClock) -> DynUserStore {
        let store = MemoryUserStore::with_clock(Arc::new(clock));
        match self.0 {
            Wrapping::Plain => Arc::new(store),
            Wrapping::Boxed => Arc::new(Box::new(store) as Box<dyn UserStore>),
            Wrapping::Arced => Arc::new(Arc::new(store) as Arc<dyn UserStore>),
        }
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

struct Tokens;

#[async_trait]
impl TokenStateFixture for Tokens {
    async fn create(&self, clock: ManualClock) -> DynTokenStateStore {
        Arc::new(MemoryTokenStateStore::with_clock(Arc::new(clock)))
    }

    fn honours_clock(&self) -> bool {
        true
    }
}

struct Caches;

#[async_trait]
impl CacheFixture for Caches {
    async fn create(&self, clock: ManualClock) -> DynCache {
        Arc::new(MemoryCache::with_clock(Arc::new(clock)))
    }

    fn honours_clock(&self) -> bool {
        true
    }
}

psm_core::conformance_tests!(
    Sessions(Wrapping::Plain),
    Users(Wrapping::Plain),
    Tokens,
    Caches
);

psm_core::permission_store_tests!(mod boxed_dyn_permission_store, Sessions(Wrapping::Boxed));

psm_core::permission_store_tests!(mod arc_dyn_permission_store, Sessions(Wrapping::Arced));

psm_core::user_store_tests!(mod boxed_dyn_user_store, Users(Wrapping::Boxed));

psm_core::user_store_tests!(mod arc_dyn_user_store, Users(Wrapping::Arced));

/// A sweeper-free configuration behaves identically: expiry never depends on the sweeper.
mod without_sweeper {
    use super::*;

    struct NoSweeper;

    #[async_trait]
    impl PermissionStoreFixture for NoSweeper {
        async fn create(&self, clock: ManualClock) -> DynPermissionStore {
            let config = MemoryConfig {
                cleanup_interval: None,
                shards: 1,
                ..MemoryConfig::default()
            };
            Arc::new(MemoryStore::with_clock(config, Arc::new(clock)))
        }
    }

    psm_core::permission_store_tests!(mod one_shard_no_sweeper, NoSweeper);
}
