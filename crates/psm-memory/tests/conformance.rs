//! The psm-core conformance suite against every memory adapter, plus the permission store through
//! `Box<dyn PermissionStore>` and `Arc<dyn PermissionStore>` (STYLE rule 18).

use std::sync::Arc;

use psm_core::{
    DynCache, DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock, PermissionStore,
    async_trait,
    testkit::{CacheFixture, PermissionStoreFixture, TokenStateFixture, UserStoreFixture},
};
use psm_memory::{MemoryCache, MemoryConfig, MemoryStore, MemoryTokenStateStore, MemoryUserStore};

/// How the fixture hands the store to the suite.
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

struct Users;

#[async_trait]
impl UserStoreFixture for Users {
    async fn create(&self, clock: ManualClock) -> DynUserStore {
        Arc::new(MemoryUserStore::with_clock(Arc::new(clock)))
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

psm_core::conformance_tests!(Sessions(Wrapping::Plain), Users, Tokens, Caches);

psm_core::permission_store_tests!(mod boxed_dyn_permission_store, Sessions(Wrapping::Boxed));

psm_core::permission_store_tests!(mod arc_dyn_permission_store, Sessions(Wrapping::Arced));

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
