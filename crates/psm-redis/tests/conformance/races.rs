//! Races on one session id and one user, from two storages (two pools, like two processes), on
//! the Cluster code path (and, as a check, standalone): a losing create never unindexes the
//! winner, interleaved ttl changes never lower the index's expiry score, and eviction marks of a
//! dead caller stop hiding live sessions from the limit.

use std::sync::Arc;

use fred::prelude::*;
use psm_core::{
    Clock, ErrorKind, LimitPolicy, Page, PermissionRef, PermissionStore, SessionIdRef,
    SessionLimit, SystemClock, Ttl, UserId,
};
use psm_redis::{RedisConfig, RedisStorage};

use crate::common::{Target, guarded_storage, raw_client, session};

/// Two storages on one fresh prefix.
async fn pair(target: &Target) -> (RedisStorage, RedisStorage, Arc<crate::common::PrefixGuard>) {
    let url = target.url();
    let (a, guard) = guarded_storage(&url, false).await;
    let b = RedisStorage::connect(RedisConfig::clone(a.config()))
        .await
        .unwrap();
    (a, b, guard)
}

async fn same_id_races(target: Target) {
    let (a, b, _g) = pair(&target).await;
    let user = UserId::parse("racer").unwrap();
    let limit = SessionLimit::new(10_000, LimitPolicy::Reject).unwrap();
    let n = 150;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (sa, sb) = (a.sessions(), b.sessions());
        tasks.push(tokio::spawn(async move {
            let id = format!("race_{i}");
            let id = SessionIdRef::parse(&id).unwrap();
            let first = sa.create_session(id, session("racer", &["read"]), limit);
            if i % 2 == 0 {
                let second = sb.create_session(id, session("racer", &["read"]), limit);
                let (x, y) = tokio::join!(first, second);
                let wins = [x.is_ok(), y.is_ok()].iter().filter(|w| **w).count();
                for r in [x, y].into_iter().filter_map(Result::err) {
                    assert_eq!(r.kind(), ErrorKind::SessionExists, "{r}");
                }
                assert_eq!(wins, 1, "exactly one create of an id wins");
            } else {
                let second = sb.store_permissions(id, session("racer", &["read"]));
                let (x, y) = tokio::join!(first, second);
                y.unwrap();
                if let Err(e) = x {
                    assert_eq!(e.kind(), ErrorKind::SessionExists, "{e}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = a.sessions();
    let read = PermissionRef::parse("read").unwrap();
    let listed = store
        .list_sessions(Some(&user), Page::new(10_000, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), n, "every live session must stay indexed");
    assert_eq!(
        store.invalidate_user_sessions(&user).await.unwrap(),
        n as u64
    );
    for i in 0..n {
        let id = format!("race_{i}");
        assert!(
            !store
                .check_permission(SessionIdRef::parse(&id).unwrap(), read)
                .await
                .unwrap(),
            "{id} survived invalidate_user_sessions"
        );
    }
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_losing_create_never_unindexes_the_winner_on_the_cluster() {
    same_id_races(Target::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_losing_create_never_unindexes_the_winner_standalone() {
    same_id_races(Target::Standalone).await;
}

async fn interleaved_ttl_changes(target: Target) {
    let cluster = matches!(target, Target::Cluster);
    let (a, b, _g) = pair(&target).await;
    let prefix = a.config().key_prefix.clone();
    let user = UserId::parse("ttl_user").unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("ttl_{i}")).collect();
    for id in &ids {
        a.sessions()
            .store_permissions(
                SessionIdRef::parse(id).unwrap(),
                session("ttl_user", &["read"]).with_ttl(Some(Ttl::from_secs(600).unwrap())),
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().cloned().enumerate() {
        let (sa, sb) = (a.sessions(), b.sessions());
        tasks.push(tokio::spawn(async move {
            let sid = SessionIdRef::parse(&id).unwrap();
            for round in 0..6 {
                let (long, short) = (Ttl::from_secs(3600).unwrap(), Ttl::from_secs(60).unwrap());
                let (x, y) = if (k + round) % 2 == 0 {
                    tokio::join!(
                        sa.extend_session_ttl(sid, long),
                        sb.extend_session_ttl(sid, short)
                    )
                } else {
                    let perms = psm_core::PermissionList::parse(["read"]).unwrap();
                    tokio::join!(
                        sa.update_permissions(sid, perms, Some(short)),
                        sb.extend_session_ttl(sid, long)
                    )
                };
                assert!(x.unwrap() && y.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The invariant itself: the expiry score is never below the session's real expiry.
    let raw = raw_client(&target.url()).await;
    let xkey = format!("{prefix}u:{{ttl_user}}:x");
    for id in &ids {
        let score: Option<f64> = raw.zscore(xkey.as_str(), id.as_str()).await.unwrap();
        let e: Option<String> = raw.hget(format!("{prefix}s:{{{id}}}"), " e").await.unwrap();
        let (score, e) = (
            score.expect("indexed"),
            e.expect("has an expiry").parse::<f64>().unwrap(),
        );
        assert!(
            score >= e,
            "{id}: expiry score {score} below the real expiry {e} (cluster: {cluster})"
        );
    }
    // And what it protects: invalidate_user_sessions still finds every session.
    assert_eq!(
        a.sessions().invalidate_user_sessions(&user).await.unwrap(),
        20
    );
    let read = PermissionRef::parse("read").unwrap();
    for id in &ids {
        assert!(
            !a.sessions()
                .check_permission(SessionIdRef::parse(id).unwrap(), read)
                .await
                .unwrap()
        );
    }
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_ttl_changes_never_lower_the_expiry_score_on_the_cluster() {
    interleaved_ttl_changes(Target::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_ttl_changes_never_lower_the_expiry_score_standalone() {
    interleaved_ttl_changes(Target::Standalone).await;
}

/// A caller that marked victims and died (its mark is older than the grace period) no longer hides
/// them from the limit; with evict_oldest they are evicted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_eviction_marks_count_again_on_the_cluster() {
    let target = Target::Cluster;
    let (a, _b, _g) = pair(&target).await;
    let prefix = a.config().key_prefix.clone();
    let raw = raw_client(&target.url()).await;
    let store = a.sessions();
    let s1 = SessionIdRef::parse("marked_1").unwrap();
    let s2 = SessionIdRef::parse("marked_2").unwrap();
    let reject = SessionLimit::new(1, LimitPolicy::Reject).unwrap();
    store
        .create_session(s1, session("carol", &["r"]), reject)
        .await
        .unwrap();
    let stale_ms = SystemClock.now().as_unix_micros() / 1000 - 60_000;
    let vkey = format!("{prefix}u:{{carol}}:v");
    let _: () = raw
        .zadd(
            vkey.as_str(),
            None,
            None,
            false,
            false,
            (stale_ms as f64, "marked_1"),
        )
        .await
        .unwrap();
    let e = store
        .create_session(s2, session("carol", &["r"]), reject)
        .await
        .expect_err("a stale eviction mark must not hide a live session from the limit");
    assert_eq!(e.kind(), ErrorKind::SessionLimitReached, "{e}");
    let _: () = raw
        .zadd(
            vkey.as_str(),
            None,
            None,
            false,
            false,
            (stale_ms as f64, "marked_1"),
        )
        .await
        .unwrap();
    let evict = SessionLimit::new(1, LimitPolicy::EvictOldest).unwrap();
    let evicted = store
        .create_session(s2, session("carol", &["r"]), evict)
        .await
        .unwrap();
    assert_eq!(
        evicted.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["marked_1"]
    );
    let left: u64 = raw.zcard(vkey.as_str()).await.unwrap();
    assert_eq!(left, 0, "no mark may stay behind");
}
