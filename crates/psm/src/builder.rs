//! [`ManagerBuilder`]: every way to make a manager, validated when built.

use std::{fmt, sync::Arc};

use psm_core::{DynClock, DynPermissionStore, Error, PermissionStore, Result, SystemClock};
use serde_json::{Map, Value};

use crate::{
    PermissionStorageManager, ProviderFactory, ProviderRegistry, args, backend::Backend, blocking,
};

/// The seed's default `default_ttl`: one hour.
const SEED_DEFAULT_TTL: u64 = 3600;

/// Builds a [`PermissionStorageManager`] (the seed's constructor arguments, one method each).
///
/// The provider is chosen by [`provider`](Self::provider) name plus [`config`](Self::config), by
/// [`url`](Self::url), or given as an instance with [`store`](Self::store); the last of these calls
/// wins, and with none of them the builder uses the `memory` provider. Nothing is validated until
/// [`build`](Self::build), which checks everything (`default_ttl` included) before creating the store.
///
/// ```
/// # let rt = tokio::runtime::Runtime::new()?;
/// # rt.block_on(async {
/// let manager = psm::PermissionStorageManager::builder()
///     .url("memory://?max_sessions=1000")
///     .default_ttl(Some(900))
///     .build()
///     .await?;
/// assert_eq!(manager.provider_name(), "memory");
/// assert_eq!(manager.default_ttl().map(|t| t.as_secs()), Some(900));
/// # Ok::<(), psm::Error>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ManagerBuilder {
    source: Source,
    config: Option<Value>,
    default_ttl: Option<u64>,
    auto_initialize: bool,
    registry: ProviderRegistry,
    clock: DynClock,
    /// The first error of a chained call that cannot fail on the spot, reported by `build`.
    deferred: Option<Error>,
}

enum Source {
    Provider(String),
    Url(String),
    Store(Backend),
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ManagerBuilder {
    /// The seed's defaults: provider `memory`, `default_ttl` 3600 s, `auto_initialize` on, the
    /// built-in providers, the system clock.
    pub fn new() -> Self {
        Self {
            source: Source::Provider("memory".to_owned()),
            config: None,
            default_ttl: Some(SEED_DEFAULT_TTL),
            auto_initialize: true,
            registry: ProviderRegistry::with_defaults(),
            clock: Arc::new(SystemClock),
            deferred: None,
        }
    }

    /// Uses the registered provider `name` (`"memory"`, or one added with
    /// [`register_provider`](Self::register_provider)).
    #[must_use]
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.source = Source::Provider(name.into());
        self
    }

    /// The provider's configuration, a JSON object (`null` counts as none). With [`url`](Self::url)
    /// its keys override the URL's.
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.config = (!config.is_null()).then_some(config);
        self
    }

    /// Chooses provider and configuration by URL: `memory://?max_sessions=1000`, `file:///path`,
    /// `redis://…`, `rediss://…`, `postgres://…`. Query parameters become config keys.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Uses a store instance (the seed's "provider instance"). A `psm::memory::MemoryStore` keeps its
    /// synchronous fast path.
    #[must_use]
    pub fn store(mut self, store: impl PermissionStore) -> Self {
        self.source = Source::Store(Backend::from_store(store));
        self
    }

    /// Uses a shared, type-erased store.
    #[must_use]
    pub fn dyn_store(mut self, store: DynPermissionStore) -> Self {
        self.source = Source::Store(Backend::from_dyn(store));
        self
    }

    /// The ttl in seconds of sessions stored without one (default 3600); `None` means such sessions
    /// never expire. Validated by [`build`](Self::build): 1 to 31,536,000.
    #[must_use]
    pub fn default_ttl(mut self, secs: Option<u64>) -> Self {
        self.default_ttl = secs;
        self
    }

    /// Whether [`build`](Self::build) initializes the provider (default `true`). When off, call
    /// [`PermissionStorageManager::initialize`] before anything else.
    #[must_use]
    pub fn auto_initialize(mut self, on: bool) -> Self {
        self.auto_initialize = on;
        self
    }

    /// Replaces the provider registry (and with it any provider registered on this builder so far).
    #[must_use]
    pub fn registry(mut self, registry: ProviderRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Registers a provider for this builder (the seed's class method `register_provider`), replacing
    /// one of the same name. A bad name is reported by [`build`](Self::build).
    #[must_use]
    pub fn register_provider(mut self, name: &str, factory: Arc<dyn ProviderFactory>) -> Self {
        if let Err(e) = self.registry.register_provider(name, factory) {
            self.deferred.get_or_insert(e);
        }
        self
    }

    /// The clock handed to the built-in providers and to factories (default: the system clock), so
    /// tests can move time with a [`ManualClock`](psm_core::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: DynClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates everything, creates the store and, unless `auto_initialize(false)`, initializes it.
    ///
    /// # Errors
    /// - [`Ttl`](psm_core::ErrorKind::Ttl) for a `default_ttl` of 0 or more than a year;
    /// - [`Validation`](psm_core::ErrorKind::Validation) for a bad name given to `register_provider`;
    /// - [`ProviderNotSupported`](psm_core::ErrorKind::ProviderNotSupported) for an unknown provider or
    ///   URL scheme, naming the Cargo feature when psm knows the provider;
    /// - [`ProviderConfiguration`](psm_core::ErrorKind::ProviderConfiguration) for a malformed URL or a
    ///   bad configuration (also when `config` accompanies a store instance);
    /// - whatever creating or initializing the provider fails with.
    pub async fn build(self) -> Result<PermissionStorageManager> {
        let Self {
            source,
            config,
            default_ttl,
            auto_initialize,
            registry,
            clock,
            deferred,
        } = self;
        if let Some(e) = deferred {
            return Err(e);
        }
        let default_ttl =
            args::ttl(default_ttl).map_err(|e| e.with_detail("field", "default_ttl"))?;
        let backend = match source {
            Source::Store(backend) => {
                if config.is_some() {
                    return Err(Error::configuration(
                        "config applies to a provider chosen by name or url, not to a store instance",
                    ));
                }
                backend
            }
            Source::Provider(name) => {
                let config = config.unwrap_or_else(|| Value::Object(Map::new()));
                registry.create(&name, &config, clock).await?
            }
            Source::Url(url) => {
                let (name, config) = crate::url::resolve(&url, config.as_ref())?;
                registry.create(name, &config, clock).await?
            }
        };
        let manager = PermissionStorageManager::from_parts(backend, default_ttl);
        if auto_initialize {
            manager.initialize().await?;
        }
        Ok(manager)
    }

    /// Builds a [`blocking::PermissionStorageManager`] on its own runtime, from plain threads or from
    /// inside an async runtime alike.
    ///
    /// # Errors
    /// As [`build`](Self::build), plus `Provider` when the runtime cannot start.
    pub fn build_blocking(self) -> Result<blocking::PermissionStorageManager> {
        blocking::PermissionStorageManager::from_builder(self)
    }
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config and URLs may hold credentials, so only their presence is shown.
        let source = match &self.source {
            Source::Provider(name) => format!("provider({name})"),
            Source::Url(_) => "url(..)".to_owned(),
            Source::Store(backend) => format!("store({})", backend.dynamic.provider_name()),
        };
        f.debug_struct("ManagerBuilder")
            .field("source", &source)
            .field("has_config", &self.config.is_some())
            .field("default_ttl", &self.default_ttl)
            .field("auto_initialize", &self.auto_initialize)
            .field("registry", &self.registry)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}
