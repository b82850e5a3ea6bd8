//! The manager without `async`: the seed's `*_sync` methods, for plain threads and sync code.
//!
//! [`PermissionStorageManager`] here has every method of the async [`crate::PermissionStorageManager`]
//! under the same name; the seed's `store_permissions_sync` is [`PermissionStorageManager::store_permissions`]
//! in this module, and so on for every method.
//!
//! It keeps one Tokio runtime (two worker threads) for its whole life, so background work such as the
//! in-process store's expiry sweeper keeps running and network providers keep their connection pools.
//! A call is served
//! - for the in-process store, directly on the calling thread through its synchronous path, without
//!   touching the runtime;
//! - from a plain thread, by driving the call on the calling thread with the runtime's `block_on`;
//! - from inside an async runtime (where `block_on` would panic), as a task on its own runtime while the
//!   calling thread waits. This never panics or deadlocks, but it does block the calling thread, so
//!   prefer the async manager in async code.
//!
//! Dropping the manager shuts its runtime down in the background, which is safe anywhere, inside an
//! async context included.
//!
//! ```
//! use psm::blocking::PermissionStorageManager;
//!
//! let manager = PermissionStorageManager::new("memory", serde_json::json!({}))?;
//! manager.store_permissions("session_1", "user_1", ["read", "write"], Some(3600), None)?;
//! assert!(manager.check_permission("session_1", "read")?);
//! assert!(!manager.check_permission("session_1", "admin")?);
//! # Ok::<(), psm::Error>(())
//! ```

use std::{fmt, future::Future};

use psm_core::{Capabilities, DynPermissionStore, PermissionStore, Result, Ttl};
use serde_json::Value;
use tokio::runtime::Handle;

use crate::ManagerBuilder;

mod ops;
mod runtime;

use runtime::{OwnedRuntime, run_on};

/// The blocking manager; see the [module docs](self).
pub struct PermissionStorageManager {
    // Declared first so it drops before the runtime: the store goes while its runtime still exists.
    inner: crate::PermissionStorageManager,
    handle: Handle,
    _runtime: OwnedRuntime,
}

impl PermissionStorageManager {
    /// A builder; finish it with [`ManagerBuilder::build_blocking`].
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::new()
    }

    /// Builds the manager `builder` describes on a new runtime of its own.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`], plus `Provider` when the runtime cannot start.
    pub fn from_builder(builder: ManagerBuilder) -> Result<Self> {
        let runtime = OwnedRuntime::start()?;
        let handle = runtime.handle()?;
        // Built on its own runtime, so the store's background tasks and connections live there.
        let inner = run_on(&handle, builder.build())?;
        Ok(Self {
            inner,
            handle,
            _runtime: runtime,
        })
    }

    /// An initialized manager for the registered provider `provider` configured by `config` (the
    /// seed's constructor, `default_ttl` 3600 s).
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub fn new(provider: &str, config: Value) -> Result<Self> {
        Self::from_builder(ManagerBuilder::new().provider(provider).config(config))
    }

    /// An initialized manager for a provider URL such as `memory://?max_sessions=1000`.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_builder(ManagerBuilder::new().url(url))
    }

    /// An initialized manager over a store instance. The store is initialized on this manager's
    /// runtime; a store bound to another runtime should be used through the async manager instead.
    ///
    /// # Errors
    /// As [`ManagerBuilder::build`].
    pub fn from_store(store: impl PermissionStore) -> Result<Self> {
        Self::from_builder(ManagerBuilder::new().store(store))
    }

    /// The built-in providers of this build, sorted (the seed's `get_available_providers`).
    pub fn available_providers() -> Vec<String> {
        crate::PermissionStorageManager::available_providers()
    }

    /// Runs a call built from a clone of the async manager on this manager's runtime.
    fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(crate::PermissionStorageManager) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        run_on(&self.handle, call(self.inner.clone()))
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &str {
        self.inner.provider_name()
    }

    /// Whether the manager is initialized and not closed.
    pub fn is_initialized(&self) -> bool {
        self.inner.is_initialized()
    }

    /// Whether the provider expires data natively.
    pub fn supports_ttl(&self) -> bool {
        self.inner.supports_ttl()
    }

    /// What the provider can do.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// The ttl of sessions stored without one; `None` means they never expire.
    pub fn default_ttl(&self) -> Option<Ttl> {
        self.inner.default_ttl()
    }

    /// The store behind the manager, as the port.
    pub fn store(&self) -> &DynPermissionStore {
        self.inner.store()
    }

    /// The in-process store, for its extras; `None` for other providers.
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub fn memory(&self) -> Option<&psm_memory::MemoryStore> {
        self.inner.memory()
    }

    /// Blocking [`initialize`](crate::PermissionStorageManager::initialize) (seed: `initialize`).
    ///
    /// # Errors
    /// As the async method.
    pub fn initialize(&self) -> Result<()> {
        self.run(|m| async move { m.initialize().await })
    }

    /// Blocking [`close`](crate::PermissionStorageManager::close) (seed: `close`).
    ///
    /// # Errors
    /// As the async method.
    pub fn close(&self) -> Result<()> {
        self.run(|m| async move { m.close().await })
    }

    /// Runs `f` with the manager, then closes it: the seed's `with manager`. The error of `f` wins over
    /// an error while closing.
    ///
    /// # Errors
    /// What `f` returns, or else what [`close`](Self::close) returns.
    pub fn scope<T>(self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let out = f(&self);
        let closed = self.close();
        let value = out?;
        closed.map(|()| value)
    }
}

impl fmt::Debug for PermissionStorageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::PermissionStorageManager")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
