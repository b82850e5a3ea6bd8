//! The async [`PermissionStorageManager`]: construction, properties and lifecycle.
//!
//! The seed's operations live in `ops.rs` (plain arguments, validated here) and `typed.rs`
//! (validated arguments, dispatched to the store); `fast.rs` is the synchronous path of the
//! in-process store that both the async and the blocking manager use.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use psm_core::{
    Capabilities, DynPermissionStore, Error, ErrorKind, NewSession, PermissionStore, Result,
    SessionId, SessionIdRef, Ttl, UserId,
};
use serde_json::Value;

use crate::{ManagerBuilder, ProviderRegistry, args, backend::Backend};

#[cfg(feature = "memory")]
mod fast;
mod ops;
mod typed;

#[cfg(feature = "memory")]
pub(crate) use fast::Fast;

/// Stores per-session permissions with TTL on one provider: the seed's `PermissionStorageManager`.
///
/// Every method takes plain values (`&str`, iterables of strings, seconds, JSON), validates them
/// before any I/O and fails with a typed [`Error`] without changing anything when one is invalid.
/// Errors carry `provider` and `operation` details.
///
/// The manager is cheap to clone; clones share the store and its state. Dropping the last clone drops
/// the store: for the in-process provider that frees every session. [`close`](Self::close) releases the
/// store's resources explicitly (connections, background sweeping); afterwards every call fails with
/// [`ErrorKind::ProviderNotInitialized`] until [`initialize`](Self::initialize) runs again.
///
/// | seed | here |
/// | --- | --- |
/// | `PermissionStorageManager(provider, config, default_ttl, auto_initialize)` | [`builder`](Self::builder), [`new`](Self::new), [`from_url`](Self::from_url), [`from_store`](Self::from_store), [`create_manager`] |
/// | `register_provider(name, cls)` | [`ManagerBuilder::register_provider`], [`ProviderRegistry::register_provider`] |
/// | `get_available_providers()` | [`available_providers`](Self::available_providers), [`ProviderRegistry::available_providers`] |
/// | `provider_name`, `is_initialized`, `supports_ttl` | [`provider_name`](Self::provider_name), [`is_initialized`](Self::is_initialized), [`supports_ttl`](Self::supports_ttl) |
/// | `async with manager` | [`scope`](Self::scope), or [`close`](Self::close) |
/// | `*_sync` methods, `with manager` | [`crate::blocking::PermissionStorageManager`] |
#[derive(Clone)]
pub struct PermissionStorageManager {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Backend,
    default_ttl: Option<Ttl>,
    /// Read on every call; see [`PermissionStorageManager::ready`] for why `Relaxed` suffices.
    initialized: AtomicBool,
    /// Serializes `initialize` and `close`, so the flag always matches the store's state.
    lifecycle: tokio::sync::Mutex<()>,
}

/// The result of [`PermissionStorageManager::create_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreatedSession {
    /// The new session's id.
    pub id: SessionId,
    /// Sessions removed to respect the limit (policy `evict_oldest`), oldest first.
    pub evicted: Vec<SessionId>,
}

/// Creates a manager for a registered provider (the seed's `create_manager` convenience function).
///
/// `default_ttl` is the ttl of sessions stored without one; `None` means such sessions never expire.
/// The manager is initialized.
///
/// # Errors
/// As [`ManagerBuilder::build`].
pub async fn create_manager(
    provider: &str,
    config: Value,
    default_ttl: Option<u64>,
) -> Result<PermissionStorageManager> {
    PermissionStorageManager::builder()
        .provider(provider)
        .config(config)
        .default_ttl(default_ttl)
        .build()
        .await
}

impl PermissionStorageManager {
    /// A builder: provider by name and config, by URL or as an instance; `default_ttl`,
    /// `auto_initialize`, custom providers and the clock.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::new()
    }

    /// An initialized manager for the registered provider `provider` configured by `config` (the
    /// seed's constructor), with the default `default_ttl` of 3600 seconds.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub async fn new(provider: &str, config: Value) -> Result<Self> {
        Self::builder()
            .provider(provider)
            .config(config)
            .build()
            .await
    }

    /// An initialized manager for a provider URL such as `memory://?max_sessions=1000`.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::builder().url(url).build().await
    }

    /// An initialized manager over a store instance.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub async fn from_store(store: impl PermissionStore) -> Result<Self> {
        Self::builder().store(store).build().await
    }

    /// The built-in providers of this build, sorted (the seed's `get_available_providers`). Providers
    /// registered on a builder are listed by its [`ProviderRegistry`].
    pub fn available_providers() -> Vec<String> {
        ProviderRegistry::with_defaults().available_providers()
    }

    pub(crate) fn from_parts(backend: Backend, default_ttl: Option<Ttl>) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                default_ttl,
                initialized: AtomicBool::new(false),
                lifecycle: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The provider's name: `"memory"`, or a registered provider's own name.
    pub fn provider_name(&self) -> &str {
        self.store().provider_name()
    }

    /// Whether [`initialize`](Self::initialize) has run and [`close`](Self::close) has not since.
    pub fn is_initialized(&self) -> bool {
        self.shared.initialized.load(Ordering::Relaxed)
    }

    /// Whether the provider expires data natively (the seed's `supports_ttl`).
    pub fn supports_ttl(&self) -> bool {
        self.store().supports_ttl()
    }

    /// What the provider can do.
    pub fn capabilities(&self) -> Capabilities {
        self.store().capabilities()
    }

    /// The ttl of sessions stored without one; `None` means they never expire.
    pub fn default_ttl(&self) -> Option<Ttl> {
        self.shared.default_ttl
    }

    /// The store behind the manager, as the port.
    pub fn store(&self) -> &DynPermissionStore {
        &self.shared.backend.dynamic
    }

    /// The in-process store, for its extras (`memory_stats`, `clear_all_sessions`); `None` for other
    /// providers.
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub fn memory(&self) -> Option<&psm_memory::MemoryStore> {
        self.shared.backend.memory.as_ref()
    }

    /// The file store, for its extras (`storage_stats`, `clear_all_sessions`, backups through
    /// [`storage`](psm_file::FileStore::storage)); `None` for other providers.
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub fn file(&self) -> Option<&psm_file::FileStore> {
        self.shared.backend.file.as_ref()
    }

    /// The Redis store, for its extras (`get_connection_info`, `flush_all_sessions`, client-cache
    /// statistics); `None` for other providers.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self) -> Option<&psm_redis::RedisStore> {
        self.shared.backend.redis.as_ref()
    }

    /// The PostgreSQL store, for its extras (pool status, the storage and its query layer); `None`
    /// for other providers.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(&self) -> Option<&psm_postgres::PostgresStore> {
        self.shared.backend.postgres.as_ref()
    }

    /// Prepares the provider; calls made before fail with [`ErrorKind::ProviderNotInitialized`].
    /// Calling it again is harmless. The builder calls it unless `auto_initialize(false)`.
    ///
    /// # Errors
    /// Whatever the provider fails with (a connection error, for example).
    pub async fn initialize(&self) -> Result<()> {
        let _lifecycle = self.shared.lifecycle.lock().await;
        if self.is_initialized() {
            return Ok(());
        }
        self.store()
            .initialize()
            .await
            .map_err(self.context("initialize"))?;
        self.shared.initialized.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Releases the provider's resources. Later calls fail with [`ErrorKind::ProviderNotInitialized`]
    /// until [`initialize`](Self::initialize) runs again. Calling it again is harmless.
    ///
    /// # Errors
    /// Whatever the provider fails with while closing; the manager counts as closed regardless.
    pub async fn close(&self) -> Result<()> {
        let _lifecycle = self.shared.lifecycle.lock().await;
        if !self.is_initialized() {
            return Ok(());
        }
        // Closed first, so no call starts on a store that is shutting down.
        self.shared.initialized.store(false, Ordering::Relaxed);
        self.store().close().await.map_err(self.context("close"))
    }

    /// Runs `f` with the manager, then closes it: the seed's `async with manager`. The error of `f`
    /// wins over an error while closing.
    ///
    /// # Errors
    /// What `f` returns, or else what [`close`](Self::close) returns.
    pub async fn scope<T>(self, f: impl AsyncFnOnce(&Self) -> Result<T>) -> Result<T> {
        let out = f(&self).await;
        let closed = self.close().await;
        let value = out?;
        closed.map(|()| value)
    }

    /// Fails unless the manager is initialized.
    ///
    /// `Relaxed` is enough: the flag only gates calls, and the store synchronizes its own state; a call
    /// racing with `close` is served or rejected, both of which are correct.
    #[inline]
    pub(crate) fn ready(&self, operation: &'static str) -> Result<()> {
        if self.shared.initialized.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self.not_initialized(operation))
        }
    }

    #[cold]
    fn not_initialized(&self, operation: &'static str) -> Error {
        let error = Error::new(
            ErrorKind::ProviderNotInitialized,
            "the manager is not initialized: call initialize first",
        );
        self.context(operation)(error)
    }

    /// Adds the `provider` and `operation` details, once, here in the manager (STYLE rule 11).
    pub(crate) fn context(&self, operation: &'static str) -> impl FnOnce(Error) -> Error + '_ {
        move |e| {
            e.with_detail("provider", self.provider_name())
                .with_detail("operation", operation)
        }
    }

    /// The file store, whose reads the manager serves without a future.
    #[cfg(feature = "file")]
    #[inline]
    pub(crate) fn file_reads(&self) -> Option<&psm_file::FileStore> {
        self.shared.backend.file.as_ref()
    }

    /// The in-process store's synchronous path, if this manager has one.
    #[cfg(feature = "memory")]
    #[inline]
    pub(crate) fn fast(&self) -> Option<Fast<'_>> {
        self.shared
            .backend
            .memory
            .as_ref()
            .map(|store| Fast::new(self, store))
    }

    /// Validates a session id.
    #[inline]
    pub(crate) fn parse_id<'a>(
        &self,
        operation: &'static str,
        session_id: &'a str,
    ) -> Result<&'a SessionIdRef> {
        SessionIdRef::parse(session_id).map_err(self.context(operation))
    }

    /// Validates a user id.
    pub(crate) fn parse_user(&self, operation: &'static str, user_id: &str) -> Result<UserId> {
        UserId::parse(user_id).map_err(self.context(operation))
    }

    /// Validates what `store_permissions` and `create_session` receive; an absent ttl becomes
    /// `default_ttl`.
    pub(crate) fn parse_session<I>(
        &self,
        operation: &'static str,
        user_id: &str,
        permissions: I,
        ttl: Option<u64>,
        metadata: Option<Value>,
    ) -> Result<NewSession>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let user = self.parse_user(operation, user_id)?;
        let permissions = args::permissions(permissions).map_err(self.context(operation))?;
        let ttl = args::ttl(ttl)
            .map_err(self.context(operation))?
            .or(self.shared.default_ttl);
        let metadata = args::metadata(metadata).map_err(self.context(operation))?;
        Ok(NewSession::new(user, permissions)
            .with_ttl(ttl)
            .with_metadata(metadata))
    }
}

impl fmt::Debug for PermissionStorageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionStorageManager")
            .field("provider", &self.provider_name())
            .field("initialized", &self.is_initialized())
            .field("default_ttl", &self.shared.default_ttl)
            .finish_non_exhaustive()
    }
}
