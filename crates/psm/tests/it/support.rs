//! Shared helpers: managers on a manual clock, a store reached only through the port, error checks.

use std::{
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use psm::{
    Capabilities, ErrorKind, ManualClock, NewSession, Page, PermissionCheck, PermissionList,
    PermissionRef, PermissionStorageManager, PermissionStore, Result, SessionData, SessionId,
    SessionIdRef, SessionInfo, SessionLimit, Ttl, UserId, async_trait,
    memory::{MemoryConfig, MemoryStore},
};

/// A manager on the in-process provider (by name) reading time from `clock`.
pub(crate) async fn memory_manager(clock: &ManualClock) -> PermissionStorageManager {
    PermissionStorageManager::builder()
        .provider("memory")
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap()
}

/// A manager over [`Wrapped`], so every call takes the port path rather than the in-process fast path.
pub(crate) async fn dyn_manager(clock: &ManualClock) -> PermissionStorageManager {
    PermissionStorageManager::builder()
        .store(Wrapped::new(clock))
        .build()
        .await
        .unwrap()
}

/// Both kinds of manager, for scenarios that must behave the same on either path.
pub(crate) async fn both_managers() -> Vec<(PermissionStorageManager, ManualClock)> {
    let (a, b) = (ManualClock::at_2024(), ManualClock::at_2024());
    vec![(memory_manager(&a).await, a), (dyn_manager(&b).await, b)]
}

/// Asserts `result` failed with `kind`, and returns the error for further checks.
#[track_caller]
pub(crate) fn expect_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind) -> psm::Error {
    match result {
        Ok(v) => panic!("expected a {kind} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            e
        }
    }
}

/// Fails the whole test binary if the guarded code does not finish in time, so a deadlock in the
/// blocking API shows as a failure instead of a hung run (a timer future cannot fire while the
/// runtime's only thread is blocked).
pub(crate) struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub(crate) fn start(name: &'static str, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{name}: did not finish within {limit:?} (deadlock?)");
                std::process::abort();
            }
        });
        Self(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender ends the watchdog's wait with `Disconnected`.
        self.0.take();
    }
}

/// A provider the manager does not recognise: an in-process store behind a wrapper, so calls go
/// through the port (and, in the blocking API, through its runtime).
#[derive(Debug, Clone)]
pub(crate) struct Wrapped(pub(crate) MemoryStore);

impl Wrapped {
    pub(crate) fn new(clock: &ManualClock) -> Self {
        Self(MemoryStore::with_clock(
            MemoryConfig::default(),
            Arc::new(clock.clone()),
        ))
    }
}

#[async_trait]
impl PermissionStore for Wrapped {
    fn provider_name(&self) -> &str {
        "wrapped"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn initialize(&self) -> Result<()> {
        self.0.initialize().await
    }
    async fn close(&self) -> Result<()> {
        self.0.close().await
    }
    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        self.0.store_permissions(id, session).await
    }
    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        self.0.create_session(id, session, limit).await
    }
    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        self.0.check_permission(id, permission).await
    }
    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        self.0.check_permissions(id, permissions).await
    }
    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        self.0.get_permissions(id).await
    }
    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        self.0.invalidate_session(id).await
    }
    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        self.0.update_permissions(id, permissions, ttl).await
    }
    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        self.0.extend_session_ttl(id, ttl).await
    }
    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        self.0.get_session_info(id).await
    }
    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        self.0.list_sessions(user, page).await
    }
    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        self.0.cleanup_expired_sessions().await
    }
    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        self.0.invalidate_user_sessions(user).await
    }
}

/// The Redis server the tests use, from `PSM_REDIS_URL` (STYLE rule 20: a missing variable fails
/// the test; `cargo xtask ci` sets it).
#[cfg(feature = "redis")]
pub(crate) fn redis_url() -> String {
    server_url("PSM_REDIS_URL")
}

/// The PostgreSQL server the tests use, from `PSM_POSTGRES_URL`.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_url() -> String {
    server_url("PSM_POSTGRES_URL")
}

#[cfg(any(feature = "redis", feature = "postgres"))]
fn server_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{var} is not set: run the tests through `cargo xtask ci`, or export the servers with \
             `eval \"$(cargo xtask services env)\"`"
        ),
    }
}

/// A name no other test or run uses: `tag`, the process id and 64 random bits, in lowercase
/// letters, digits and `_` (valid as a schema name and inside a key prefix).
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn unique_name(tag: &str) -> String {
    let random = psm::util::generate_session_id("x").unwrap();
    let hex: String = random
        .as_str()
        .bytes()
        .skip(2)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{tag}_{}_{hex}", std::process::id())
}

/// The names `available_providers` lists in this build (`extra` first, then the built-ins of the
/// enabled features), sorted.
pub(crate) fn builtins(extra: &[&'static str]) -> Vec<&'static str> {
    let mut names = extra.to_vec();
    names.extend(["memory"]);
    if cfg!(feature = "file") {
        names.push("file");
    }
    if cfg!(feature = "redis") {
        names.push("redis");
    }
    if cfg!(feature = "postgres") {
        names.push("postgres");
    }
    names.sort_unstable();
    names
}

/// Removes every key under `prefix` on the standalone server `url` (sessions, indexes, token
/// state with its epochs, cache): `flush_all_sessions` deliberately leaves token epochs alone.
#[cfg(feature = "redis")]
pub(crate) async fn purge_redis_prefix(url: &str, prefix: &str) {
    use fred::prelude::{ClientLike, Config, KeysInterface};
    use futures::StreamExt;
    let client = fred::clients::Client::new(Config::from_url(url).unwrap(), None, None, None);
    client.init().await.unwrap();
    let mut stream = client.scan_buffered(format!("{prefix}*"), Some(1000), None);
    let mut keys = Vec::new();
    while let Some(key) = stream.next().await {
        keys.push(key.unwrap());
    }
    drop(stream);
    for key in keys {
        let _: u64 = client.unlink(key).await.unwrap();
    }
    client.quit().await.unwrap();
}
