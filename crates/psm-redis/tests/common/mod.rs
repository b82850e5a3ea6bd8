//! Shared fixtures: stores on a fresh key prefix against a real Redis, removed again when the last
//! handle is dropped (also when the test panics); prefixes of dead test processes are swept at the
//! start of a run.
//!
//! A test prefix is `psmtest:<pid>_<random>:`: the pid lets a later run tell the keys of a crashed
//! or killed run (its pid no longer runs) from those of a run still going.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;
pub mod server;

use std::{sync::Arc, time::Duration};

use fred::{
    prelude::{Builder, ClientLike, KeysInterface},
    types::config::{Config, ServerConfig},
};
use futures::StreamExt;
use psm_core::{
    Cache, CacheKey, CacheTag, Capabilities, ConsumeOutcome, DynCache, DynPermissionStore,
    DynTokenStateStore, FamilyId, ManualClock, NewSession, NewTokenFamily, Page, PermissionCheck,
    PermissionList, PermissionRef, PermissionStore, Result, SessionData, SessionId, SessionIdRef,
    SessionInfo, SessionLimit, TokenFamily, TokenId, TokenStateStore, Ttl, UserId, async_trait,
    testkit::{CacheFixture, PermissionStoreFixture, TokenStateFixture},
};
use psm_redis::{
    ClientCacheConfig, RedisCache, RedisConfig, RedisStorage, RedisStore, RedisTokenStateStore,
};
use tokio::sync::OnceCell;

/// The start of every test prefix.
pub const TEST_ROOT: &str = "psmtest:";

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

/// A fresh key prefix `psmtest:<pid>_<random>:`.
pub fn fresh_prefix() -> String {
    let id =
        psm_core::util::generate_session_id(&std::process::id().to_string()).expect("random id");
    format!("{TEST_ROOT}{}:", id.as_str())
}

/// A config for `url` on a fresh prefix.
pub fn config(url: &str, client_cache: bool) -> RedisConfig {
    let mut c = RedisConfig::from_url(url).unwrap_or_else(|e| panic!("bad redis url: {e}"));
    c.key_prefix = fresh_prefix();
    c.client_cache = client_cache.then(ClientCacheConfig::default);
    c
}

/// A raw fred client for the server of `url` (cluster-aware).
pub async fn raw_client(url: &str) -> fred::clients::Client {
    let c = RedisConfig::from_url(url).unwrap_or_else(|e| panic!("bad redis url: {e}"));
    let server = if c.cluster {
        ServerConfig::new_clustered(vec![(c.host.clone(), c.port)])
    } else {
        ServerConfig::new_centralized(c.host.clone(), c.port)
    };
    let client = Builder::from_config(Config {
        server,
        username: c.username.clone(),
        password: c.password.clone(),
        ..Config::default()
    })
    .build()
    .expect("fred client");
    client.init().await.expect("raw client connects");
    client
}

/// Every key matching `pattern` (on every master in cluster mode).
pub async fn scan_keys(
    client: &fred::clients::Client,
    pattern: &str,
    cluster: bool,
) -> Vec<String> {
    let mut stream = if cluster {
        client
            .scan_cluster_buffered(pattern, Some(1000), None)
            .boxed()
    } else {
        client.scan_buffered(pattern, Some(1000), None).boxed()
    };
    let mut keys = Vec::new();
    while let Some(k) = stream.next().await {
        if let Some(s) = k.expect("scan").as_str() {
            keys.push(s.to_owned());
        }
    }
    keys
}

/// Removes every key under `prefix` (one key per UNLINK, so it works in cluster mode too).
pub async fn purge(client: &fred::clients::Client, prefix: &str, cluster: bool) -> usize {
    let keys = scan_keys(client, &format!("{prefix}*"), cluster).await;
    for k in &keys {
        let _: u64 = client.unlink(k.as_str()).await.expect("unlink");
    }
    keys.len()
}

/// Whether process `pid` runs on this machine.
fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid of a test prefix `psmtest:<pid>_<random>:…`, if the key has one.
fn pid_of(key: &str) -> Option<u32> {
    key.strip_prefix(TEST_ROOT)?.split_once('_')?.0.parse().ok()
}

/// Removes the keys of test prefixes whose process is gone (and keys of the old, pid-less
/// format), once per process and server.
async fn sweep_dead(url: &str) {
    static STANDALONE: OnceCell<()> = OnceCell::const_new();
    static CLUSTER: OnceCell<()> = OnceCell::const_new();
    let cluster = RedisConfig::from_url(url).is_ok_and(|c| c.cluster);
    let cell = if cluster { &CLUSTER } else { &STANDALONE };
    cell.get_or_init(|| async {
        let client = raw_client(url).await;
        let me = std::process::id();
        for k in scan_keys(&client, &format!("{TEST_ROOT}*"), cluster).await {
            let dead = match pid_of(&k) {
                Some(pid) => pid != me && !pid_alive(pid),
                None => true,
            };
            if dead {
                let _: u64 = client.unlink(k.as_str()).await.unwrap_or(0);
            }
        }
        let _ = client.quit().await;
    })
    .await;
}

/// Removes the prefix's keys when dropped (on a thread of its own: drops happen inside runtimes).
#[derive(Debug)]
pub struct PrefixGuard {
    url: String,
    prefix: String,
}

impl PrefixGuard {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let cluster = RedisConfig::from_url(&url).is_ok_and(|c| c.cluster);
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    let client = raw_client(&url).await;
                    purge(&client, &prefix, cluster).await;
                    let _ = client.quit().await;
                })
                .await;
            });
        });
        let _ = done.join();
    }
}

/// Connected storage for `url` on a fresh prefix, and the guard that removes the prefix.
pub async fn guarded_storage(url: &str, client_cache: bool) -> (RedisStorage, Arc<PrefixGuard>) {
    guarded_storage_with(config(url, client_cache), url).await
}

/// Connected storage for `config` (its prefix must be fresh), and the guard of its prefix.
pub async fn guarded_storage_with(
    config: RedisConfig,
    url: &str,
) -> (RedisStorage, Arc<PrefixGuard>) {
    sweep_dead(url).await;
    let guard = Arc::new(PrefixGuard::new(url, &config.key_prefix));
    match RedisStorage::connect(config).await {
        Ok(s) => (s, guard),
        Err(e) => panic!(
            "cannot connect to redis at the configured url (PSM_REDIS_URL / PSM_REDIS_CLUSTER_URL): {e}"
        ),
    }
}

/// Connected storage for `url` on a fresh prefix; the caller removes its keys (or holds a
/// [`PrefixGuard`]).
pub async fn storage(url: &str, client_cache: bool) -> RedisStorage {
    sweep_dead(url).await;
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
    pub fn url(&self) -> String {
        match self {
            Target::Standalone => standalone_url(),
            Target::Cluster => cluster_url(),
        }
    }
}

/// A store that removes its prefix when the last handle goes.
#[derive(Debug)]
pub struct Guarded<T> {
    pub inner: T,
    _guard: Arc<PrefixGuard>,
}

pub struct Sessions {
    pub target: Target,
    pub client_cache: bool,
}

#[async_trait]
impl PermissionStoreFixture for Sessions {
    async fn create(&self, _clock: ManualClock) -> DynPermissionStore {
        let (s, guard) = guarded_storage(&self.target.url(), self.client_cache).await;
        Arc::new(Guarded {
            inner: s.sessions(),
            _guard: guard,
        })
    }
}

pub struct Tokens(pub Target);

#[async_trait]
impl TokenStateFixture for Tokens {
    async fn create(&self, _clock: ManualClock) -> DynTokenStateStore {
        let (s, guard) = guarded_storage(&self.0.url(), false).await;
        Arc::new(Guarded {
            inner: s.tokens(),
            _guard: guard,
        })
    }
    fn honours_clock(&self) -> bool {
        false
    }
}

pub struct Caches(pub Target);

#[async_trait]
impl CacheFixture for Caches {
    async fn create(&self, _clock: ManualClock) -> DynCache {
        let (s, guard) = guarded_storage(&self.0.url(), false).await;
        Arc::new(Guarded {
            inner: s.cache(),
            _guard: guard,
        })
    }
    fn honours_clock(&self) -> bool {
        false
    }
}

#[async_trait]
impl PermissionStore for Guarded<RedisStore> {
    fn provider_name(&self) -> &str {
        self.inner.provider_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn supports_ttl(&self) -> bool {
        self.inner.supports_ttl()
    }
    async fn initialize(&self) -> Result<()> {
        self.inner.initialize().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        self.inner.store_permissions(id, session).await
    }
    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        self.inner.create_session(id, session, limit).await
    }
    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        self.inner.check_permission(id, permission).await
    }
    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        self.inner.check_permissions(id, permissions).await
    }
    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        self.inner.get_permissions(id).await
    }
    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        self.inner.invalidate_session(id).await
    }
    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        self.inner.update_permissions(id, permissions, ttl).await
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

#[async_trait]
impl TokenStateStore for Guarded<RedisTokenStateStore> {
    fn provider_name(&self) -> &str {
        self.inner.provider_name()
    }
    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        self.inner.create_family(family).await
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
        self.inner.consume(family, presented, next).await
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
        self.inner.bump_user_epoch(user).await
    }
    async fn cleanup_expired_families(&self) -> Result<u64> {
        self.inner.cleanup_expired_families().await
    }
}

#[async_trait]
impl Cache for Guarded<RedisCache> {
    fn provider_name(&self) -> &str {
        self.inner.provider_name()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        self.inner.set(key, value, ttl, tags).await
    }
    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        self.inner.delete_tag(tag).await
    }
}

/// A session of `user` holding `perms`.
pub fn session(user: &str, perms: &[&str]) -> NewSession {
    NewSession::new(
        UserId::parse(user).unwrap(),
        PermissionList::parse(perms).unwrap(),
    )
}
