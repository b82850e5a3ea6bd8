//! The provider registry: an explicit value mapping provider names to factories (STYLE rule 23).

use std::{collections::BTreeMap, fmt, future::Future, sync::Arc};

use psm_core::{
    DynClock, DynPermissionStore, Error, ErrorKind, Result, async_trait, util::ProviderScheme,
};
use serde_json::Value;

use crate::backend::Backend;

/// Longest accepted provider name, in bytes.
const MAX_NAME_LEN: usize = 64;

/// Builds a store from its JSON configuration: the seed's provider class, as a value.
///
/// Closures `Fn(&serde_json::Value, DynClock) -> impl Future<Output = Result<DynPermissionStore>>`
/// implement it, so a one-off provider needs no type of its own. Register one with
/// [`ProviderRegistry::register_provider`] or [`ManagerBuilder::register_provider`](crate::ManagerBuilder::register_provider).
#[async_trait]
pub trait ProviderFactory: Send + Sync + 'static {
    /// Creates a store from `config` (the JSON passed to the manager; an empty object when none was
    /// given), reading time from `clock` if the store keeps time itself.
    ///
    /// The manager calls [`initialize`](psm_core::PermissionStore::initialize) afterwards when
    /// `auto_initialize` is on, so the factory need not.
    ///
    /// # Errors
    /// [`ErrorKind::ProviderConfiguration`] for a bad configuration, or whatever connecting fails with.
    async fn create(&self, config: &Value, clock: DynClock) -> Result<DynPermissionStore>;
}

#[async_trait]
impl<F, Fut> ProviderFactory for F
where
    F: Fn(&Value, DynClock) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<DynPermissionStore>> + Send + 'static,
{
    async fn create(&self, config: &Value, clock: DynClock) -> Result<DynPermissionStore> {
        self(config, clock).await
    }
}

/// Provider names and the factories behind them.
///
/// An explicit value, owned by a [`ManagerBuilder`](crate::ManagerBuilder): no global state and no
/// code before `main`. [`ProviderRegistry::with_defaults`] holds the built-in providers of the enabled
/// Cargo features; [`register_provider`](Self::register_provider) adds or replaces one.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    entries: BTreeMap<String, Entry>,
}

/// How a registered provider is built. Built-ins are variants rather than factories so the manager
/// keeps their concrete type and its fast path without downcasting.
#[derive(Clone)]
enum Entry {
    #[cfg(feature = "memory")]
    Memory,
    #[cfg(feature = "file")]
    File,
    #[cfg(feature = "redis")]
    Redis,
    #[cfg(feature = "postgres")]
    Postgres,
    Custom(Arc<dyn ProviderFactory>),
}

/// The built-in providers of this build: one line per adapter feature.
fn builtin_providers() -> Vec<(&'static str, Entry)> {
    vec![
        #[cfg(feature = "memory")]
        ("memory", Entry::Memory),
        #[cfg(feature = "file")]
        ("file", Entry::File),
        #[cfg(feature = "redis")]
        ("redis", Entry::Redis),
        #[cfg(feature = "postgres")]
        ("postgres", Entry::Postgres),
    ]
}

impl ProviderRegistry {
    /// An empty registry (not even the built-in providers).
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in providers of the enabled features (`memory` with the default features).
    pub fn with_defaults() -> Self {
        let entries = builtin_providers()
            .into_iter()
            .map(|(name, entry)| (name.to_owned(), entry))
            .collect();
        Self { entries }
    }

    /// Registers `factory` under `name`, replacing any provider of that name (a built-in one
    /// included), as the seed's class method does.
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] unless `name` is 1 to 64 bytes of lowercase ASCII letters, digits,
    /// `-` and `_`.
    pub fn register_provider(
        &mut self,
        name: &str,
        factory: Arc<dyn ProviderFactory>,
    ) -> Result<()> {
        check_name(name)?;
        self.entries.insert(name.to_owned(), Entry::Custom(factory));
        Ok(())
    }

    /// Registers a closure as a factory; see [`register_provider`](Self::register_provider).
    ///
    /// # Errors
    /// As [`register_provider`](Self::register_provider).
    pub fn register_fn<F, Fut>(&mut self, name: &str, factory: F) -> Result<()>
    where
        F: Fn(&Value, DynClock) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<DynPermissionStore>> + Send + 'static,
    {
        self.register_provider(name, Arc::new(factory))
    }

    /// Whether a provider is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The registered provider names, sorted (the seed's `get_available_providers`).
    pub fn available_providers(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Builds the store registered under `name`.
    pub(crate) async fn create(
        &self,
        name: &str,
        config: &Value,
        clock: DynClock,
    ) -> Result<Backend> {
        let entry = self.entries.get(name).ok_or_else(|| self.not_found(name))?;
        let created = match entry {
            #[cfg(feature = "memory")]
            Entry::Memory => psm_memory::MemoryConfig::from_json(config).map(|config| {
                Backend::from_memory(psm_memory::MemoryStore::with_clock(config, clock))
            }),
            // Opening reads the whole directory: do it on the blocking pool.
            #[cfg(feature = "file")]
            Entry::File => match psm_file::FileConfig::from_json(config) {
                Ok(config) => {
                    let open = move || psm_file::FileStorage::open_with_clock(config, clock);
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => rt
                            .spawn_blocking(open)
                            .await
                            .map_err(|e| {
                                Error::provider(format!("opening the file store failed: {e}"))
                            })
                            .and_then(|opened| opened),
                        // Polled outside Tokio: open right here.
                        Err(_) => open(),
                    }
                    .map(|storage| Backend::from_file(storage.sessions()))
                }
                Err(e) => Err(e),
            },
            // Neither connects here: `initialize` does, so `auto_initialize(false)` means no I/O.
            #[cfg(feature = "redis")]
            Entry::Redis => psm_redis::RedisConfig::from_json(config)
                .and_then(psm_redis::RedisStore::new)
                .map(Backend::from_redis),
            #[cfg(feature = "postgres")]
            Entry::Postgres => psm_postgres::PostgresConfig::from_json(config)
                .and_then(|config| psm_postgres::PostgresStorage::with_clock(config, clock))
                .map(|storage| Backend::from_postgres(storage.sessions())),
            Entry::Custom(factory) => factory.create(config, clock).await.map(Backend::from_dyn),
        };
        created.map_err(|e| e.with_detail("provider", name))
    }

    /// The error for a name nobody registered, naming the feature when it is a known provider.
    pub(crate) fn not_found(&self, name: &str) -> Error {
        not_supported(name).with_detail("available", self.available_providers().join(","))
    }
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("providers", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `ProviderNotSupported` for `name`: the Cargo feature to enable when psm knows the provider but
/// this build leaves it out, "not registered" otherwise.
pub(crate) fn not_supported(name: &str) -> Error {
    match builtin_feature(name) {
        Some((provider, feature)) if !feature_enabled(feature) => Error::new(
            ErrorKind::ProviderNotSupported,
            format!(
                "the `{provider}` provider is not available in this build: enable the `{feature}` feature of `psm`"
            ),
        )
        .with_detail("feature", feature),
        _ => {
            let error = Error::new(ErrorKind::ProviderNotSupported, "no provider is registered under this name");
            // Echo the name only when it is a plausible one, so arbitrary input never lands in logs.
            if check_name(name).is_ok() { error.with_detail("provider", name) } else { error }
        }
    }
}

/// Whether this build includes the provider behind `feature`.
fn feature_enabled(feature: &str) -> bool {
    // One clause per adapter feature, like `builtin_providers`.
    (feature == "memory" && cfg!(feature = "memory"))
        || (feature == "file" && cfg!(feature = "file"))
        || (feature == "redis" && cfg!(feature = "redis"))
        || (feature == "postgres" && cfg!(feature = "postgres"))
}

/// The provider and Cargo feature of psm's built-in provider names (enabled in this build or not),
/// from the scheme enum that is always compiled.
fn builtin_feature(name: &str) -> Option<(&'static str, &'static str)> {
    ProviderScheme::from_scheme(name).map(|scheme| (scheme.provider_name(), scheme.feature()))
}

fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::validation(
            "provider name must be 1 to 64 lowercase ascii letters, digits, '-' or '_'",
        )
        .with_detail("length", name.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in ["", "Memory", "my provider", "a/b", &"x".repeat(65)] {
            assert_eq!(
                check_name(bad).unwrap_err().kind(),
                ErrorKind::Validation,
                "{bad:?}"
            );
        }
        assert!(check_name("my-store_2").is_ok());
    }

    #[test]
    fn known_providers_name_their_feature() {
        // `rediss` is a scheme, never a registered name: with the feature off the error names the
        // feature, with it on the name is simply not registered.
        let e = not_supported("rediss");
        assert_eq!(e.kind(), ErrorKind::ProviderNotSupported);
        if cfg!(feature = "redis") {
            assert_eq!(e.message(), "no provider is registered under this name");
        } else {
            assert!(
                e.message().contains("enable the `redis` feature of `psm`"),
                "{e}"
            );
        }
        let memory = not_supported("memory");
        if cfg!(feature = "memory") {
            assert_eq!(
                memory.message(),
                "no provider is registered under this name"
            );
        } else {
            assert!(
                memory
                    .message()
                    .contains("enable the `memory` feature of `psm`"),
                "{memory}"
            );
        }
        assert_eq!(not_supported("nope").detail("provider"), Some("nope"));
        assert_eq!(not_supported("NOPE!").detail("provider"), None);
    }
}
