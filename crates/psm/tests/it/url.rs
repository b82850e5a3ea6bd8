//! Choosing the provider by URL.

use psm::{ErrorKind, PermissionStorageManager};
use serde_json::json;

use crate::support::expect_kind;

#[tokio::test]
async fn memory_urls_build_a_configured_in_process_manager() {
    let m = PermissionStorageManager::from_url("memory://")
        .await
        .unwrap();
    assert_eq!(m.provider_name(), "memory");
    assert!(m.memory().is_some());

    let m = PermissionStorageManager::from_url("memory://?max_sessions=2&cleanup_interval=5")
        .await
        .unwrap();
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    m.store_permissions("s2", "alice", ["read"], None, None)
        .await
        .unwrap();
    let e = expect_kind(
        m.store_permissions("s3", "alice", ["read"], None, None)
            .await,
        ErrorKind::StorageQuotaExceeded,
    );
    assert_eq!(e.detail("provider"), Some("memory"));
    assert_eq!(e.detail("operation"), Some("store_permissions"));

    // Explicit config overrides the URL's.
    let m = PermissionStorageManager::builder()
        .url("memory://?max_sessions=1")
        .config(json!({"max_sessions": 3}))
        .build()
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        m.store_permissions(id, "alice", ["read"], None, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn schemes_of_providers_not_in_this_build_name_their_feature() {
    for (url, feature) in [
        ("redis://localhost:6379/0", "redis"),
        ("rediss://localhost:6380", "redis"),
        ("postgres://user@localhost/db", "postgres"),
        ("postgresql://user@localhost/db", "postgres"),
    ] {
        if crate::support::builtins(&[]).contains(&feature) {
            // Built in: the URL names the provider (no I/O before initialize).
            let m = PermissionStorageManager::builder()
                .url(url)
                .auto_initialize(false)
                .build()
                .await
                .unwrap();
            assert_eq!(m.provider_name(), feature, "{url}");
            continue;
        }
        let e = expect_kind(
            PermissionStorageManager::from_url(url).await,
            ErrorKind::ProviderNotSupported,
        );
        let wanted = format!("enable the `{feature}` feature of `psm`");
        assert!(
            e.message().contains(&wanted) && e.message().contains("not available in this build"),
            "{url}: {e}"
        );
    }
}

#[tokio::test]
async fn garbage_urls_and_bad_url_config_are_configuration_errors() {
    for bad in [
        "",
        "memory",
        "not a url",
        "memory://host:1234",
        "memory://?max_sessions=lots",
    ] {
        expect_kind(
            PermissionStorageManager::from_url(bad).await,
            ErrorKind::ProviderConfiguration,
        );
    }
    expect_kind(
        PermissionStorageManager::from_url("mysql://localhost").await,
        ErrorKind::ProviderNotSupported,
    );
}
