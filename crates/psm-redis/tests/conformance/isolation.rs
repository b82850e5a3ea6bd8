//! Keys outside the prefix are never touched and a nested prefix is a different store; each flush
//! removes only its own kind of keys; configurations built as structs are validated; test stores
//! leave no keys behind; client-side caching is invalidated across processes within 50 ms.

use std::time::{Duration, Instant};

use fred::prelude::*;
use psm_core::Cache as _;
use psm_core::{
    CacheKey, Clock, ErrorKind, FamilyId, NewTokenFamily, PermissionRef, PermissionStore,
    SessionIdRef, SystemClock, Timestamp, TokenId, TokenStateStore, Ttl, UserId,
};
use psm_redis::{RedisConfig, RedisStorage};

use crate::common::{
    self, Target, guarded_storage, guarded_storage_with, raw_client, scan_keys, session,
};

async fn flush_scope(target: Target) {
    let url = target.url();
    let cluster = matches!(target, Target::Cluster);
    let (a, _ga) = guarded_storage(&url, false).await;
    let prefix = a.config().key_prefix.clone();
    // A nested prefix: its keys all start with `prefix`.
    let nested_cfg = RedisConfig {
        key_prefix: format!("{prefix}b:"),
        ..a.config().clone()
    };
    let (nested, _gn) = guarded_storage_with(nested_cfg, &url).await;
    let raw = raw_client(&url).await;
    // Foreign keys beside the prefix: a sibling prefix, the prefix without its colon, a key that
    // merely contains the prefix, and keys shaped like ours but not of a psm store.
    let foreign = [
        format!("{}x", prefix.trim_end_matches(':')),
        prefix.trim_end_matches(':').to_owned(),
        format!("other:{prefix}s:{{abc}}"),
        format!("{prefix}s:{{not a session}}"),
        format!("{prefix}u:{{u}}:other"),
        format!("{prefix}plain"),
    ];
    for k in &foreign {
        let _: () = raw
            .set(k.as_str(), "keep", None, None, false)
            .await
            .unwrap();
    }
    let (sa, sn) = (a.sessions(), nested.sessions());
    let id = SessionIdRef::parse("shared_id").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    sa.store_permissions(id, session("alice", &["read"]))
        .await
        .unwrap();
    sn.store_permissions(id, session("alice", &["read"]))
        .await
        .unwrap();
    let user = UserId::parse("alice").unwrap();
    let epoch = a.tokens().bump_user_epoch(&user).await.unwrap();
    let family = FamilyId::parse("fam1").unwrap();
    a.tokens()
        .create_family(NewTokenFamily {
            id: family.clone(),
            user_id: user.clone(),
            session_id: None,
            first_token: TokenId::parse("tok1").unwrap(),
            expires_at: Timestamp::from_unix_micros(
                SystemClock.now().as_unix_micros() + 3_600_000_000,
            ),
        })
        .await
        .unwrap();
    let ck = CacheKey::parse("k1").unwrap();
    a.cache()
        .set(&ck, b"v", Ttl::from_secs(60).unwrap(), &[])
        .await
        .unwrap();

    let info = sa.get_connection_info().await.unwrap();
    assert_eq!(info.status, "connected");
    assert_eq!(info.key_prefix, prefix);
    assert!(!info.redis_version.is_empty());
    assert!(info.keyspace.contains_key("db0"));

    let removed = sa.flush_all_sessions().await.unwrap();
    assert!(
        removed >= 3,
        "flush must remove the session and its indexes: {removed}"
    );
    assert!(!sa.check_permission(id, read).await.unwrap());
    assert!(
        sn.check_permission(id, read).await.unwrap(),
        "a flush must not reach a nested prefix"
    );
    assert_eq!(
        sn.list_sessions(Some(&user), psm_core::Page::new(10, 0).unwrap())
            .await
            .unwrap()
            .len(),
        1,
        "a flush must not reach a nested prefix's index"
    );
    assert_eq!(
        a.tokens().user_epoch(&user).await.unwrap(),
        epoch,
        "a session flush must keep token epochs (revoked access tokens stay revoked)"
    );
    assert!(a.tokens().get_family(&family).await.unwrap().is_some());
    assert_eq!(
        a.cache().get(&ck).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    for k in &foreign {
        let v: Option<String> = raw.get(k.as_str()).await.unwrap();
        assert_eq!(v.as_deref(), Some("keep"), "foreign key {k} must survive");
    }

    // The token and cache flushes remove their own keys only; epochs stay.
    assert!(a.tokens().flush_all().await.unwrap() >= 2);
    assert!(a.tokens().get_family(&family).await.unwrap().is_none());
    assert_eq!(a.tokens().user_epoch(&user).await.unwrap(), epoch);
    assert!(a.cache().clear().await.unwrap() >= 1);
    assert!(a.cache().get(&ck).await.unwrap().is_none());
    assert!(sn.check_permission(id, read).await.unwrap());
    for k in &foreign {
        let v: Option<String> = raw.get(k.as_str()).await.unwrap();
        assert_eq!(v.as_deref(), Some("keep"), "foreign key {k} must survive");
        let _: () = raw.del(k.as_str()).await.unwrap();
    }
    // What is left of the prefix: the epoch, and the nested store.
    let left = scan_keys(&raw, &format!("{prefix}*"), cluster).await;
    assert!(
        left.iter().all(
            |k| k.starts_with(&format!("{prefix}b:")) || k.starts_with(&format!("{prefix}ue:"))
        ),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_are_scoped_to_their_keys_and_prefix() {
    flush_scope(Target::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_are_scoped_to_their_keys_and_prefix_on_the_cluster() {
    flush_scope(Target::Cluster).await;
}

#[test]
fn configurations_built_as_structs_are_validated() {
    for (config, key) in [
        (
            RedisConfig {
                key_prefix: String::new(),
                ..RedisConfig::default()
            },
            "key_prefix",
        ),
        (
            RedisConfig {
                key_prefix: "a*".into(),
                ..RedisConfig::default()
            },
            "key_prefix",
        ),
        (
            RedisConfig {
                socket_timeout: Duration::ZERO,
                ..RedisConfig::default()
            },
            "socket_timeout",
        ),
        (
            RedisConfig {
                pool_size: 0,
                ..RedisConfig::default()
            },
            "max_connections",
        ),
        (
            RedisConfig {
                cluster: true,
                db: 2,
                ..RedisConfig::default()
            },
            "db",
        ),
    ] {
        let e = RedisStorage::new(config).expect_err("an invalid struct config must be refused");
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{e}");
        assert_eq!(e.detail("key"), Some(key), "{e}");
    }
    assert!(RedisStorage::new(RedisConfig::default()).is_ok());
}

/// The fixtures' stores remove their prefix when dropped, also on the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_stores_leave_no_keys_behind() {
    for target in [Target::Standalone, Target::Cluster] {
        let url = target.url();
        let cluster = matches!(target, Target::Cluster);
        let prefix;
        {
            let (s, guard) = guarded_storage(&url, false).await;
            prefix = s.config().key_prefix.clone();
            let id = SessionIdRef::parse("left_behind").unwrap();
            s.sessions()
                .store_permissions(id, session("u", &["p"]))
                .await
                .unwrap();
            s.tokens()
                .bump_user_epoch(&UserId::parse("u").unwrap())
                .await
                .unwrap();
            let raw = raw_client(&url).await;
            assert!(
                !scan_keys(&raw, &format!("{prefix}*"), cluster)
                    .await
                    .is_empty()
            );
            s.close().await.unwrap();
            drop(guard);
        }
        let raw = raw_client(&url).await;
        let left = scan_keys(&raw, &format!("{prefix}*"), cluster).await;
        assert!(left.is_empty(), "keys left behind: {left:?}");
        // The prefix embeds the pid, so a later run can sweep it if this one is killed.
        assert!(prefix.starts_with(&format!("{}{}_", common::TEST_ROOT, std::process::id())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_elsewhere_reaches_the_client_cache_within_50_ms() {
    let url = crate::common::standalone_url();
    let config = crate::common::config(&url, true);
    let (a, _g) = guarded_storage_with(config.clone(), &url).await;
    let b = RedisStorage::connect(config).await.unwrap();
    let (sa, sb) = (a.sessions(), b.sessions());
    let id = SessionIdRef::parse("cached_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    sa.store_permissions(id, session("alice", &["read"]))
        .await
        .unwrap();
    // The first fills may be cancelled by the invalidation of A's own write: check until the
    // cache serves a hit.
    let warm = Instant::now();
    while {
        assert!(sa.check_permission(id, read).await.unwrap());
        sa.client_cache_stats().unwrap().hits == 0
    } {
        assert!(
            warm.elapsed() < Duration::from_secs(2),
            "the cache never served a hit"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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
    b.close().await.unwrap();
}

/// A user's family index holds live families only: expired, revoked and vanished ones leave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_family_index_drops_revoked_and_expired_families() {
    let url = crate::common::standalone_url();
    let (s, _g) = guarded_storage(&url, false).await;
    let tokens = s.tokens();
    let user = UserId::parse("fam_user").unwrap();
    let raw = raw_client(&url).await;
    let index = format!("{}fam:{{fam_user}}", s.config().key_prefix);
    let now = SystemClock.now().as_unix_micros();
    let family = |i: usize, expires: i64| NewTokenFamily {
        id: FamilyId::parse(&format!("f{i}")).unwrap(),
        user_id: user.clone(),
        session_id: None,
        first_token: TokenId::parse(&format!("t{i}")).unwrap(),
        expires_at: Timestamp::from_unix_micros(expires),
    };
    for i in 0..5 {
        tokens
            .create_family(family(i, now + 1_000_000))
            .await
            .unwrap();
    }
    for i in 5..8 {
        tokens
            .create_family(family(i, now + 3_600_000_000))
            .await
            .unwrap();
    }
    let size = async || -> u64 { raw.zcard(index.as_str()).await.unwrap() };
    assert_eq!(size().await, 8);
    assert!(
        tokens
            .revoke_family(&FamilyId::parse("f5").unwrap())
            .await
            .unwrap()
    );
    assert_eq!(size().await, 7, "a revoked family leaves the index");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tokens
        .create_family(family(
            8,
            SystemClock.now().as_unix_micros() + 3_600_000_000,
        ))
        .await
        .unwrap();
    assert_eq!(
        size().await,
        3,
        "expired families leave the index on the next create"
    );
    assert_eq!(tokens.revoke_user_families(&user).await.unwrap(), 3);
    assert_eq!(size().await, 0, "revoke-all empties the index");
}
