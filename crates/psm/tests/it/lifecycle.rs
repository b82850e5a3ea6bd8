//! initialize / close, the not-initialized state, scopes, properties and error context.

use std::sync::Arc;

use psm::{ErrorKind, ManualClock, PermissionStorageManager};

use crate::support::{Wrapped, expect_kind};

async fn uninitialized(kind: &str) -> PermissionStorageManager {
    let builder = PermissionStorageManager::builder().auto_initialize(false);
    match kind {
        "memory" => builder.provider("memory"),
        _ => builder.store(Wrapped::new(&ManualClock::at_2024())),
    }
    .build()
    .await
    .unwrap()
}

/// Every operation fails with `ProviderNotInitialized`, naming itself.
async fn assert_all_rejected(m: &PermissionStorageManager) {
    let limit = psm::SessionLimit::unlimited();
    let checks = [
        (
            "store_permissions",
            m.store_permissions("s1", "u", ["r"], None, None)
                .await
                .map(drop),
        ),
        (
            "create_session",
            m.create_session("u", ["r"], None, None, limit)
                .await
                .map(drop),
        ),
        (
            "create_session",
            m.create_session_with_id("s9", "u", ["r"], None, None, limit)
                .await
                .map(drop),
        ),
        (
            "check_permission",
            m.check_permission("s1", "r").await.map(drop),
        ),
        (
            "check_permissions",
            m.check_permissions("s1", ["r"]).await.map(drop),
        ),
        ("get_permissions", m.get_permissions("s1").await.map(drop)),
        (
            "invalidate_session",
            m.invalidate_session("s1").await.map(drop),
        ),
        (
            "update_permissions",
            m.update_permissions("s1", ["r"], None).await.map(drop),
        ),
        (
            "extend_session_ttl",
            m.extend_session_ttl("s1", 5).await.map(drop),
        ),
        ("get_session_info", m.get_session_info("s1").await.map(drop)),
        (
            "list_sessions",
            m.list_sessions(None, 10, 0).await.map(drop),
        ),
        (
            "cleanup_expired_sessions",
            m.cleanup_expired_sessions().await.map(drop),
        ),
        (
            "invalidate_user_sessions",
            m.invalidate_user_sessions("u").await.map(drop),
        ),
    ];
    for (operation, result) in checks {
        let e = expect_kind(result, ErrorKind::ProviderNotInitialized);
        assert_eq!(e.detail("operation"), Some(operation));
        assert_eq!(e.detail("provider"), Some(m.provider_name()));
    }
}

#[tokio::test]
async fn calls_before_initialize_fail_and_work_after() {
    for kind in ["memory", "wrapped"] {
        let m = uninitialized(kind).await;
        assert!(!m.is_initialized());
        assert_all_rejected(&m).await;
        m.initialize().await.unwrap();
        m.initialize().await.unwrap();
        assert!(m.is_initialized());
        assert!(
            m.store_permissions("s1", "u", ["r"], None, None)
                .await
                .unwrap()
        );
        assert!(m.check_permission("s1", "r").await.unwrap());
    }
}

#[tokio::test]
async fn calls_after_close_fail() {
    for kind in ["memory", "wrapped"] {
        let m = uninitialized(kind).await;
        m.initialize().await.unwrap();
        m.close().await.unwrap();
        m.close().await.unwrap();
        assert!(!m.is_initialized());
        assert_all_rejected(&m).await;
        // Bad input is still reported as bad input.
        expect_kind(
            m.check_permission("bad id", "r").await,
            ErrorKind::InvalidSessionId,
        );
    }
}

#[tokio::test]
async fn scope_closes_the_manager_and_keeps_the_inner_error() {
    let m = PermissionStorageManager::new("memory", serde_json::json!({}))
        .await
        .unwrap();
    let probe = m.clone();
    let granted = m
        .scope(async |m| {
            m.store_permissions("s1", "u", ["r"], None, None).await?;
            m.check_permission("s1", "r").await
        })
        .await
        .unwrap();
    assert!(granted);
    assert!(!probe.is_initialized(), "clones share the closed state");

    let m = PermissionStorageManager::new("memory", serde_json::json!({}))
        .await
        .unwrap();
    let probe = m.clone();
    let e = m
        .scope(async |m| m.check_permission("bad id", "r").await)
        .await;
    expect_kind(e, ErrorKind::InvalidSessionId);
    assert!(!probe.is_initialized());
}

#[tokio::test]
async fn properties_describe_the_provider() {
    let m = PermissionStorageManager::builder()
        .provider("memory")
        .default_ttl(Some(60))
        .clock(Arc::new(ManualClock::at_2024()))
        .build()
        .await
        .unwrap();
    assert_eq!(m.provider_name(), "memory");
    assert!(m.is_initialized());
    assert!(
        !m.supports_ttl(),
        "the in-process store expires lazily, not natively"
    );
    assert_eq!(m.supports_ttl(), m.capabilities().native_ttl);
    assert_eq!(m.default_ttl().map(|t| t.as_secs()), Some(60));
    assert_eq!(m.store().provider_name(), "memory");
    let debug = format!("{m:?}");
    assert!(
        debug.contains("memory") && debug.contains("initialized"),
        "{debug}"
    );
}

#[tokio::test]
async fn store_errors_carry_provider_and_operation_once() {
    let m = PermissionStorageManager::builder()
        .store(Wrapped::new(&ManualClock::at_2024()))
        .build()
        .await
        .unwrap();
    m.create_session_with_id(
        "dup",
        "u",
        ["r"],
        None,
        None,
        psm::SessionLimit::unlimited(),
    )
    .await
    .unwrap();
    let e = expect_kind(
        m.create_session_with_id(
            "dup",
            "u",
            ["r"],
            None,
            None,
            psm::SessionLimit::unlimited(),
        )
        .await,
        ErrorKind::SessionExists,
    );
    assert_eq!(e.detail("provider"), Some("wrapped"));
    assert_eq!(e.detail("operation"), Some("create_session"));
    assert_eq!(
        e.details().iter().filter(|(k, _)| *k == "provider").count(),
        1
    );
}
