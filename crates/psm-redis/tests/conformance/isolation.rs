//! Keys outside the prefix are never touched; two prefixes never see each other; client-side
//! caching is invalidated across processes within 50 ms.

use std::time::{Duration, Instant};

use fred::prelude::*;
use psm_core::{NewSession, PermissionList, PermissionRef, PermissionStore, SessionIdRef, UserId};
use psm_redis::RedisStorage;

fn session(user: &str, perms: &[&str]) -> NewSession {
    NewSession::new(
        UserId::parse(user).unwrap(),
        PermissionList::parse(perms).unwrap(),
    )
}

async fn raw_client() -> Client {
    let config = Config::from_url(&crate::common::standalone_url()).unwrap();
    let c = Client::new(config, None, None, None);
    c.init().await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_survive_flush_and_info_and_prefixes_are_isolated() {
    let a = crate::common::storage(&crate::common::standalone_url(), false).await;
    let b = crate::common::storage(&crate::common::standalone_url(), false).await;
    let raw = raw_client().await;
    let prefix = a.config().key_prefix.clone();
    // Foreign keys beside the prefix: a sibling prefix, the prefix without its colon, plain keys.
    let foreign = [
        format!("{}x", prefix.trim_end_matches(':')),
        prefix.trim_end_matches(':').to_owned(),
        format!("other:{prefix}s:{{abc}}"),
        "psm-foreign-key".to_owned(),
    ];
    for k in &foreign {
        let _: () = raw
            .set(k.as_str(), "keep", None, None, false)
            .await
            .unwrap();
    }
    let (sa, sb) = (a.sessions(), b.sessions());
    let id = SessionIdRef::parse("shared_id").unwrap();
    sa.store_permissions(id, session("alice", &["read"]))
        .await
        .unwrap();
    sb.store_permissions(id, session("bob", &["write"]))
        .await
        .unwrap();
    let read = PermissionRef::parse("read").unwrap();
    assert!(sa.check_permission(id, read).await.unwrap());
    assert!(
        !sb.check_permission(id, read).await.unwrap(),
        "prefixes must not share sessions"
    );

    let info = sa.get_connection_info().await.unwrap();
    assert_eq!(info.status, "connected");
    assert_eq!(info.key_prefix, prefix);
    assert!(!info.redis_version.is_empty());
    assert!(info.keyspace.contains_key("db0"));
    let removed = sa.flush_all_sessions().await.unwrap();
    assert!(removed >= 1, "flush must remove the store's keys");
    assert!(sa.get_permissions(id).await.unwrap().is_none());
    assert!(
        sb.get_permissions(id).await.unwrap().is_some(),
        "flush must not reach another prefix"
    );
    for k in &foreign {
        let v: Option<String> = raw.get(k.as_str()).await.unwrap();
        assert_eq!(v.as_deref(), Some("keep"), "foreign key {k} must survive");
        let _: () = raw.del(k.as_str()).await.unwrap();
    }
    sb.flush_all_sessions().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_elsewhere_reaches_the_client_cache_within_50_ms() {
    let mut config = crate::common::config(&crate::common::standalone_url(), true);
    let a = RedisStorage::connect(config.clone()).await.unwrap();
    config.client_cache = Some(Default::default());
    let b = RedisStorage::connect(config).await.unwrap();
    let (sa, sb) = (a.sessions(), b.sessions());
    let id = SessionIdRef::parse("cached_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    sa.store_permissions(id, session("alice", &["read"]))
        .await
        .unwrap();
    assert!(
        sa.check_permission(id, read).await.unwrap(),
        "first check fills the cache"
    );
    let before = sa.client_cache_stats().unwrap();
    for _ in 0..100 {
        assert!(sa.check_permission(id, read).await.unwrap());
    }
    let after = sa.client_cache_stats().unwrap();
    assert!(after.active, "tracking must be active");
    assert!(
        after.hits >= before.hits + 100,
        "hot checks must be served locally: {before:?} -> {after:?}"
    );

    assert!(sb.invalidate_session(id).await.unwrap());
    let start = Instant::now();
    loop {
        if !sa.check_permission(id, read).await.unwrap() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "A still granted the permission {:?} after B invalidated the session",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // An update elsewhere is seen too.
    sb.store_permissions(id, session("alice", &["write"]))
        .await
        .unwrap();
    let write = PermissionRef::parse("write").unwrap();
    let start = Instant::now();
    while !sa.check_permission(id, write).await.unwrap() {
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "update not seen within 50 ms"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sa.flush_all_sessions().await.unwrap();
}
