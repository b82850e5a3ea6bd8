//! Shared fixtures: stores on a fresh random key prefix against a real Redis.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use psm_core::{
    DynCache, DynPermissionStore, DynTokenStateStore, ManualClock, async_trait,
    testkit::{CacheFixture, PermissionStoreFixture, TokenStateFixture},
};
use psm_redis::{ClientCacheConfig, RedisConfig, RedisStorage};

/// The standalone server; fails loudly when `PSM_REDIS_URL` is unset (STYLE rule 20).
pub fn standalone_url() -> String {
    match std::env::var("PSM_REDIS_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "PSM_REDIS_URL is not set: run the tests through `cargo xtask ci`, or export the servers \
             with `eval \"$(cargo xtask services env)\"`"
        ),
    }
}

/// The cluster seed URL; fails loudly when `PSM_REDIS_CLUSTER_URL` is unset.
pub fn cluster_url() -> String {
    match std::env::var("PSM_REDIS_CLUSTER_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "PSM_REDIS_CLUSTER_URL is not set: the cluster tests need a three-master Redis Cluster, \
             e.g. PSM_REDIS_CLUSTER_URL='redis://127.0.0.1:7301?cluster=true' (cargo xtask ci starts one)"
        ),
    }
}

/// A fresh random key prefix.
pub fn fresh_prefix() -> String {
    let id = psm_core::util::generate_session_id("t").expect("random id");
    format!("psmtest:{}:", id.as_str())
}

/// A config for `url` on a fresh prefix.
pub fn config(url: &str, client_cache: bool) -> RedisConfig {
    let mut c = RedisConfig::from_url(url).unwrap_or_else(|e| panic!("bad redis url: {e}"));
    c.key_prefix = fresh_prefix();
    c.client_cache = client_cache.then(ClientCacheConfig::default);
    c
}

/// Connected storage for `url` on a fresh prefix.
pub async fn storage(url: &str, client_cache: bool) -> RedisStorage {
    match RedisStorage::connect(config(url, client_cache)).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot connect to redis at the configured url (PSM_REDIS_URL / PSM_REDIS_CLUSTER_URL): {e}"
        ),
    }
}

pub enum Target {
    Standalone,
    Cluster,
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Standalone => standalone_url(),
            Target::Cluster => cluster_url(),
        }
    }
}

pub struct Sessions {
    pub target: Target,
    pub client_cache: bool,
}

#[async_trait]
impl PermissionStoreFixture for Sessions {
    async fn create(&self, _clock: ManualClock) -> DynPermissionStore {
        Arc::new(
            storage(&self.target.url(), self.client_cache)
                .await
                .sessions(),
        )
    }
}

pub struct Tokens(pub Target);

#[async_trait]
impl TokenStateFixture for Tokens {
    async fn create(&self, _clock: ManualClock) -> DynTokenStateStore {
        Arc::new(storage(&self.0.url(), false).await.tokens())
    }
    fn honours_clock(&self) -> bool {
        false
    }
}

pub struct Caches(pub Target);

#[async_trait]
impl CacheFixture for Caches {
    async fn create(&self, _clock: ManualClock) -> DynCache {
        Arc::new(storage(&self.0.url(), false).await.cache())
    }
    fn honours_clock(&self) -> bool {
        false
    }
}
