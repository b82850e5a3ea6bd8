//! The file provider through the facade: by name, by URL and as an instance; data survives the
//! manager; the read fast path answers like the port.

#![cfg(feature = "file")]

use psm::{
    ErrorKind, PermissionStorageManager, blocking,
    file::{FileConfig, FileStorage},
};
use serde_json::json;

use crate::support::expect_kind;

fn url_of(dir: &std::path::Path) -> String {
    format!("file://{}", dir.display())
}

#[tokio::test]
async fn a_file_url_builds_a_durable_manager_whose_data_outlives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let url = url_of(tmp.path());
    let m = PermissionStorageManager::from_url(&url).await.unwrap();
    assert_eq!(m.provider_name(), "file");
    assert!(m.file().is_some());
    assert!(m.capabilities().durable && !m.supports_ttl());
    m.store_permissions(
        "s1",
        "alice",
        ["read", "write"],
        Some(3600),
        Some(json!({"ip": "1.2.3.4"})),
    )
    .await
    .unwrap();
    assert!(m.check_permission("s1", "read").await.unwrap());
    assert!(!m.check_permission("s1", "admin").await.unwrap());
    let info = m.get_session_info("s1").await.unwrap().unwrap();
    assert_eq!(info.provider, "file");
    assert_eq!(
        m.file().unwrap().storage_stats().unwrap().active_sessions,
        1
    );

    // A second manager on the same directory is refused while the first holds it.
    let e = expect_kind(
        PermissionStorageManager::from_url(&url).await,
        ErrorKind::Concurrency,
    );
    assert!(e.message().contains("locked"), "{e}");
    m.close().await.unwrap();

    let again = PermissionStorageManager::new("file", json!({"storage_dir": tmp.path()}))
        .await
        .unwrap();
    let data = again.get_permissions("s1").await.unwrap().unwrap();
    assert_eq!(data.permissions.to_strings(), ["read", "write"]);
    assert_eq!(data.metadata.to_value(), json!({"ip": "1.2.3.4"}));
    assert_eq!(
        again
            .list_sessions(Some("alice"), 10, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    // Bad input is refused before the store and changes nothing.
    expect_kind(
        again.check_permission("s1", "has space").await,
        ErrorKind::InvalidPermission,
    );
    again.close().await.unwrap();
    expect_kind(
        again.check_permission("s1", "read").await,
        ErrorKind::ProviderNotInitialized,
    );
}

#[tokio::test]
async fn bad_file_config_is_a_configuration_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let e = expect_kind(
        PermissionStorageManager::new(
            "file",
            json!({"storage_dir": tmp.path(), "atomic_writes": false}),
        )
        .await,
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("key"), Some("atomic_writes"));
    let e = expect_kind(
        PermissionStorageManager::from_url(&format!("{}?max_backup_files=0", url_of(tmp.path())))
            .await,
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("key"), Some("max_backup_files"));
}

#[tokio::test]
async fn a_file_store_instance_gets_the_read_fast_path() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FileStorage::open(FileConfig::new(tmp.path())).unwrap();
    let m = PermissionStorageManager::from_store(storage.sessions())
        .await
        .unwrap();
    assert!(m.file().is_some(), "the instance is recognised");
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    let checked = m.check_permissions("s1", ["read", "write"]).await.unwrap();
    assert_eq!(
        (checked.get("read"), checked.get("write")),
        (Some(true), Some(false))
    );
    assert_eq!(m.list_sessions(None, 10, 0).await.unwrap(), ["s1"]);
}

#[test]
fn the_blocking_manager_drives_the_file_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let m = blocking::PermissionStorageManager::from_url(&url_of(tmp.path())).unwrap();
    assert_eq!(m.provider_name(), "file");
    m.store_permissions("s1", "alice", ["read"], None, None)
        .unwrap();
    assert!(m.check_permission("s1", "read").unwrap());
    assert!(m.invalidate_session("s1").unwrap());
    assert!(!m.check_permission("s1", "read").unwrap());
    m.close().unwrap();
}
