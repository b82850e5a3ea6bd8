//! The Redis provider through the facade: by URL and by name, shared between managers, its extras
//! reachable from the manager, client-side caching across two managers, the blocking API.

#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use psm::{ErrorKind, PermissionStorageManager, blocking};
use serde_json::json;

use crate::support::{expect_kind, redis_url, unique_name};

fn url_with(prefix: &str, extra: &str) -> String {
    let base = redis_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}key_prefix={prefix}{extra}")
}

#[tokio::test]
async fn a_redis_url_builds_managers_that_share_the_server() {
    let prefix = format!("{}:", unique_name("psmfacade"));
    let a = PermissionStorageManager::from_url(&url_with(&prefix, ""))
        .await
        .unwrap();
    let b =
        PermissionStorageManager::new("redis", json!({"url": redis_url(), "key_prefix": prefix}))
            .await
            .unwrap();
    assert_eq!(a.provider_name(), "redis");
    assert!(a.supports_ttl() && a.capabilities().shared_across_processes);
    assert!(a.redis().is_some());

    a.store_permissions(
        "s1",
        "alice",
        ["read"],
        Some(60),
        Some(json!({"ip": "1.2.3.4"})),
    )
    .await
    .unwrap();
    assert!(b.check_permission("s1", "read").await.unwrap());
    let info = b.get_session_info("s1").await.unwrap().unwrap();
    assert_eq!(info.provider, "redis");
    assert_eq!(info.ttl_remaining, Some(60));
    assert_eq!(b.list_sessions(Some("alice"), 10, 0).await.unwrap(), ["s1"]);

    let conn = a.redis().unwrap().get_connection_info().await.unwrap();
    assert_eq!(conn.status, "connected");
    assert_eq!(conn.key_prefix, prefix);
    assert!(!conn.redis_version.is_empty());

    assert!(a.redis().unwrap().flush_all_sessions().await.unwrap() >= 1);
    assert!(!b.check_permission("s1", "read").await.unwrap());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn bad_redis_config_is_refused_before_any_io() {
    expect_kind(
        PermissionStorageManager::new("redis", json!({"url": redis_url(), "no_such_key": 1})).await,
        ErrorKind::ProviderConfiguration,
    );
    expect_kind(
        PermissionStorageManager::from_url("redis://127.0.0.1:6379/notadb").await,
        ErrorKind::ProviderConfiguration,
    );
    // The password never reaches the error.
    let e = expect_kind(
        PermissionStorageManager::new(
            "redis",
            json!({"url": "redis://u:hunter2secret@127.0.0.1:6379", "max_connections": -1}),
        )
        .await,
        ErrorKind::ProviderConfiguration,
    );
    assert!(!format!("{e} {e:?}").contains("hunter2secret"), "{e:?}");
}

#[tokio::test]
async fn an_unreachable_server_fails_initialize_with_a_retryable_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}?socket_connect_timeout=1&socket_timeout=1");
    let m = PermissionStorageManager::builder()
        .url(url)
        .auto_initialize(false)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), m.initialize())
        .await
        .expect("initialize must not hang");
    let e = expect_kind(result, ErrorKind::ProviderConnection);
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Issue 4's client-side caching promise, through two managers: A serves hot checks locally, and
/// B's invalidation reaches A within 50 ms.
#[tokio::test]
async fn a_revoke_through_one_manager_reaches_the_others_client_cache_within_50_ms() {
    let prefix = format!("{}:", unique_name("psmcc"));
    let url = url_with(&prefix, "&client_cache=true");
    let a = PermissionStorageManager::from_url(&url).await.unwrap();
    let b = PermissionStorageManager::from_url(&url).await.unwrap();
    b.store_permissions("hot", "alice", ["read"], Some(600), None)
        .await
        .unwrap();
    for _ in 0..100 {
        assert!(a.check_permission("hot", "read").await.unwrap());
    }
    let stats = a.redis().unwrap().client_cache_stats().unwrap();
    assert!(stats.active, "{stats:?}");
    assert!(
        stats.hits >= 90,
        "hot checks should be served locally: {stats:?}"
    );

    assert!(b.invalidate_session("hot").await.unwrap());
    let revoked = Instant::now();
    loop {
        if !a.check_permission("hot", "read").await.unwrap() {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_millis(50),
            "A still allowed the check {:?} after B's invalidation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.redis().unwrap().flush_all_sessions().await.unwrap();
}

#[test]
fn the_blocking_api_works_on_redis() {
    let prefix = format!("{}:", unique_name("psmblk"));
    let m = blocking::PermissionStorageManager::from_url(&url_with(&prefix, "")).unwrap();
    m.store_permissions("s1", "bob", ["a", "b"], Some(30), None)
        .unwrap();
    assert!(m.check_permission("s1", "b").unwrap());
    assert_eq!(m.invalidate_user_sessions("bob").unwrap(), 1);
    assert!(!m.check_permission("s1", "b").unwrap());
    m.close().unwrap();
}
