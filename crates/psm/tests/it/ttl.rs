//! `default_ttl`, expiry, update and extend semantics, on a manual clock.

use std::{sync::Arc, time::Duration};

use psm::{ErrorKind, ManualClock, PermissionStorageManager, SessionLimit};

use crate::support::{both_managers, expect_kind};

async fn manager_with_default(
    default_ttl: Option<u64>,
    clock: &ManualClock,
) -> PermissionStorageManager {
    PermissionStorageManager::builder()
        .provider("memory")
        .default_ttl(default_ttl)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn absent_ttl_uses_the_default_of_one_hour() {
    let clock = ManualClock::at_2024();
    let m = manager_with_default(Some(3600), &clock).await;
    assert_eq!(
        PermissionStorageManager::builder()
            .build()
            .await
            .unwrap()
            .default_ttl()
            .map(|t| t.as_secs()),
        Some(3600)
    );
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    m.store_permissions("s2", "alice", ["read"], Some(10), None)
        .await
        .unwrap();
    let created = m
        .create_session("alice", ["read"], None, None, SessionLimit::unlimited())
        .await
        .unwrap();
    assert_eq!(
        m.get_session_info("s1")
            .await
            .unwrap()
            .unwrap()
            .ttl_remaining,
        Some(3600)
    );
    assert_eq!(
        m.get_session_info("s2")
            .await
            .unwrap()
            .unwrap()
            .ttl_remaining,
        Some(10),
        "explicit ttl wins"
    );
    let info = m
        .get_session_info(created.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.ttl_remaining, Some(3600));

    clock.advance(Duration::from_secs(3600));
    assert!(!m.check_permission("s1", "read").await.unwrap());
    assert!(
        !m.check_permission(created.id.as_str(), "read")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn no_default_means_sessions_never_expire() {
    let clock = ManualClock::at_2024();
    let m = manager_with_default(None, &clock).await;
    assert_eq!(m.default_ttl(), None);
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    let info = m.get_session_info("s1").await.unwrap().unwrap();
    assert_eq!((info.ttl_remaining, info.has_ttl), (None, false));
    clock.advance(Duration::from_secs(2 * 31_536_000));
    assert!(m.check_permission("s1", "read").await.unwrap());
    assert_eq!(m.cleanup_expired_sessions().await.unwrap(), 0);
}

#[tokio::test]
async fn default_ttl_is_validated_when_built() {
    for bad in [0, 31_536_001, u64::MAX] {
        let e = expect_kind(
            PermissionStorageManager::builder()
                .default_ttl(Some(bad))
                .build()
                .await,
            ErrorKind::Ttl,
        );
        assert_eq!(e.detail("field"), Some("default_ttl"));
    }
    // Checked before the provider is even looked up.
    expect_kind(
        PermissionStorageManager::builder()
            .provider("nope")
            .default_ttl(Some(0))
            .build()
            .await,
        ErrorKind::Ttl,
    );
    expect_kind(
        psm::create_manager("memory", serde_json::json!({}), Some(0)).await,
        ErrorKind::Ttl,
    );
    let m = psm::create_manager("memory", serde_json::json!({}), Some(31_536_000))
        .await
        .unwrap();
    assert_eq!(m.default_ttl().map(|t| t.as_secs()), Some(31_536_000));
}

#[tokio::test]
async fn update_keeps_expiry_unless_given_a_ttl() {
    for (m, clock) in both_managers().await {
        m.store_permissions(
            "s1",
            "alice",
            ["read"],
            Some(100),
            Some(serde_json::json!({"a": 1})),
        )
        .await
        .unwrap();
        let created_at = m.get_permissions("s1").await.unwrap().unwrap().created_at;
        clock.advance(Duration::from_secs(40));
        assert!(m.update_permissions("s1", ["write"], None).await.unwrap());
        let info = m.get_session_info("s1").await.unwrap().unwrap();
        assert_eq!(info.ttl_remaining, Some(60), "expiry kept");
        assert_eq!(info.data.permissions.to_strings(), ["write"]);
        assert_eq!(info.data.created_at, created_at);
        assert!(info.data.updated_at > created_at);
        assert_eq!(info.data.metadata.to_value(), serde_json::json!({"a": 1}));

        assert!(
            m.update_permissions("s1", ["write"], Some(500))
                .await
                .unwrap()
        );
        assert_eq!(
            m.get_session_info("s1")
                .await
                .unwrap()
                .unwrap()
                .ttl_remaining,
            Some(500)
        );
        assert!(m.extend_session_ttl("s1", 20).await.unwrap());
        assert_eq!(
            m.get_session_info("s1")
                .await
                .unwrap()
                .unwrap()
                .ttl_remaining,
            Some(20),
            "extend renews to now + ttl"
        );
    }
}

#[tokio::test]
async fn an_expired_session_behaves_like_a_missing_one() {
    for (m, clock) in both_managers().await {
        m.store_permissions("old", "alice", ["read"], Some(5), None)
            .await
            .unwrap();
        m.store_permissions("old2", "bob", ["read"], Some(5), None)
            .await
            .unwrap();
        m.store_permissions("live", "alice", ["read"], Some(50), None)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(5));
        assert!(!m.check_permission("old", "read").await.unwrap());
        assert!(!m.check_permissions("old", ["read"]).await.unwrap().any());
        assert_eq!(m.get_permissions("old").await.unwrap(), None);
        assert_eq!(m.get_session_info("old").await.unwrap(), None);
        assert!(!m.update_permissions("old", ["x"], None).await.unwrap());
        assert!(
            !m.extend_session_ttl("old", 100).await.unwrap(),
            "never revived"
        );
        assert!(!m.invalidate_session("old").await.unwrap());
        assert_eq!(
            m.list_sessions(Some("alice"), 100, 0).await.unwrap(),
            ["live"]
        );
        assert_eq!(m.list_sessions(None, 100, 0).await.unwrap(), ["live"]);
        // "old2" is certainly swept; "old" may already have been purged lazily by the calls above.
        let swept = m.cleanup_expired_sessions().await.unwrap();
        assert!((1..=2).contains(&swept), "{swept}");
        assert_eq!(m.cleanup_expired_sessions().await.unwrap(), 0);
        assert!(m.check_permission("live", "read").await.unwrap());
    }
}
