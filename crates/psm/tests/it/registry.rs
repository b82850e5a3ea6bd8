//! The provider registry: built-ins, custom providers by name, replacement, unknown names.

use std::sync::{Arc, Mutex};

use psm::{
    DynClock, DynPermissionStore, Error, ErrorKind, ManualClock, PermissionStorageManager,
    ProviderFactory, ProviderRegistry, async_trait,
    memory::{MemoryConfig, MemoryStore},
};
use serde_json::{Value, json};

use crate::support::{Wrapped, builtins, expect_kind};

/// A factory type of its own, recording the config it was given.
#[derive(Default)]
struct Recording(Mutex<Vec<Value>>);

#[async_trait]
impl ProviderFactory for Recording {
    async fn create(&self, config: &Value, clock: DynClock) -> psm::Result<DynPermissionStore> {
        self.0.lock().unwrap().push(config.clone());
        if config.get("fail").is_some() {
            return Err(Error::configuration("told to fail"));
        }
        Ok(Arc::new(Wrapped(MemoryStore::with_clock(
            MemoryConfig::default(),
            clock,
        ))))
    }
}

#[tokio::test]
async fn built_in_providers_are_listed_sorted() {
    assert_eq!(
        PermissionStorageManager::available_providers(),
        builtins(&[])
    );
    assert_eq!(
        ProviderRegistry::with_defaults().available_providers(),
        builtins(&[])
    );
    assert!(ProviderRegistry::new().available_providers().is_empty());
    assert!(format!("{:?}", ProviderRegistry::with_defaults()).contains("memory"));
}

#[tokio::test]
async fn a_custom_provider_is_built_by_name_with_its_config_and_clock() {
    let factory = Arc::new(Recording::default());
    let clock = ManualClock::at_2024();
    let m = PermissionStorageManager::builder()
        .register_provider("custom", factory.clone())
        .provider("custom")
        .config(json!({"answer": 42}))
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    assert_eq!(m.provider_name(), "wrapped");
    assert!(m.is_initialized());
    assert_eq!(
        factory.0.lock().unwrap().as_slice(),
        [json!({"answer": 42})]
    );

    m.store_permissions("s1", "alice", ["read"], Some(10), None)
        .await
        .unwrap();
    assert!(m.check_permission("s1", "read").await.unwrap());
    clock.advance(std::time::Duration::from_secs(10));
    assert!(
        !m.check_permission("s1", "read").await.unwrap(),
        "the store got the builder's clock"
    );

    let mut registry = ProviderRegistry::with_defaults();
    registry.register_provider("custom", factory).unwrap();
    registry
        .register_provider("a-first_1", Arc::new(Recording::default()))
        .unwrap();
    assert_eq!(
        registry.available_providers(),
        builtins(&["a-first_1", "custom"])
    );
    assert!(registry.contains("custom") && !registry.contains("other"));
}

#[tokio::test]
async fn closures_are_factories_and_registering_a_name_again_replaces_it() {
    let mut registry = ProviderRegistry::with_defaults();
    registry
        .register_fn("memory", |_config: &Value, clock: DynClock| async move {
            Ok(Arc::new(Wrapped(MemoryStore::with_clock(
                MemoryConfig::default(),
                clock,
            ))) as DynPermissionStore)
        })
        .unwrap();
    assert_eq!(registry.available_providers(), builtins(&[]));
    let m = PermissionStorageManager::builder()
        .registry(registry)
        .provider("memory")
        .build()
        .await
        .unwrap();
    assert_eq!(
        m.provider_name(),
        "wrapped",
        "the registered factory replaced the built-in one"
    );
    assert!(m.memory().is_none());
}

#[tokio::test]
async fn bad_names_unknown_providers_and_factory_errors_are_typed() {
    let mut registry = ProviderRegistry::new();
    for bad in ["", "Custom", "my provider", "x/y"] {
        expect_kind(
            registry.register_provider(bad, Arc::new(Recording::default())),
            ErrorKind::Validation,
        );
    }
    assert!(
        registry.available_providers().is_empty(),
        "a rejected registration adds nothing"
    );
    expect_kind(
        PermissionStorageManager::builder()
            .register_provider("Bad Name", Arc::new(Recording::default()))
            .build()
            .await,
        ErrorKind::Validation,
    );

    let e = expect_kind(
        PermissionStorageManager::new("nosuch", json!({})).await,
        ErrorKind::ProviderNotSupported,
    );
    assert_eq!(
        e.detail("available"),
        Some(builtins(&[]).join(",").as_str())
    );
    assert_eq!(e.detail("provider"), Some("nosuch"));
    let e = expect_kind(
        PermissionStorageManager::new("not a name!", json!({})).await,
        ErrorKind::ProviderNotSupported,
    );
    assert_eq!(
        e.detail("provider"),
        None,
        "implausible names are not echoed"
    );

    for (name, feature) in [("redis", "redis"), ("postgres", "postgres")] {
        if builtins(&[]).contains(&name) {
            // Built in: `url::schemes_of_providers_not_in_this_build_name_their_feature` checks it.
            continue;
        }
        let e = expect_kind(
            PermissionStorageManager::new(name, json!({})).await,
            ErrorKind::ProviderNotSupported,
        );
        assert!(
            e.message()
                .contains(&format!("enable the `{feature}` feature of `psm`")),
            "{e}"
        );
        assert!(e.message().contains("not available in this build"), "{e}");
    }
    let e = expect_kind(
        PermissionStorageManager::builder()
            .registry(ProviderRegistry::new())
            .build()
            .await,
        ErrorKind::ProviderNotSupported,
    );
    assert_eq!(e.detail("provider"), Some("memory"));
    assert_eq!(e.detail("available"), Some(""));

    let e = expect_kind(
        PermissionStorageManager::builder()
            .register_provider("custom", Arc::new(Recording::default()))
            .provider("custom")
            .config(json!({"fail": true}))
            .build()
            .await,
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("provider"), Some("custom"));
}

#[tokio::test]
async fn bad_memory_config_is_a_configuration_error() {
    for bad in [
        json!({"bogus": 1}),
        json!({"max_sessions": "lots"}),
        json!([1, 2]),
        json!({"shards": 0}),
    ] {
        let e = expect_kind(
            PermissionStorageManager::new("memory", bad.clone()).await,
            ErrorKind::ProviderConfiguration,
        );
        assert_eq!(e.detail("provider"), Some("memory"), "{bad}: {e}");
    }
    // `null` counts as no config.
    assert!(
        PermissionStorageManager::new("memory", Value::Null)
            .await
            .is_ok()
    );
    expect_kind(
        PermissionStorageManager::builder()
            .store(MemoryStore::new(MemoryConfig::default()))
            .config(json!({}))
            .build()
            .await,
        ErrorKind::ProviderConfiguration,
    );
}
