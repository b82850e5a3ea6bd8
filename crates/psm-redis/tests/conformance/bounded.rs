//! Scripts read bounded windows of a user's index, never the whole of it: with thousands of
//! sessions for one user, a create at the limit, a listed page and a check cost a bounded number
//! of reads on the server (counted by a private server's `INFO commandstats`, which counts the
//! commands scripts run too), and whole-index work is split into many script calls.

use std::{collections::HashMap, sync::Arc, time::Duration};

use fred::{
    prelude::*,
    types::{ClusterHash, CustomCommand, InfoKind},
};
use psm_core::{ErrorKind, LimitPolicy, Page, PermissionStore, SessionIdRef, SessionLimit, UserId};
use psm_redis::{RedisConfig, RedisStorage};

use crate::common::{
    server::{Server, free_port},
    session,
};

/// Calls per command since the last reset.
async fn calls(raw: &Client) -> HashMap<String, u64> {
    let text: String = raw.info(Some(InfoKind::CommandStats)).await.unwrap();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest
                .split(',')
                .next()?
                .strip_prefix("calls=")?
                .parse()
                .ok()?;
            Some((name.to_owned(), n))
        })
        .collect()
}

async fn reset(raw: &Client) {
    let cmd = CustomCommand::new_static("CONFIG", ClusterHash::FirstKey, false);
    let _: Value = raw.custom(cmd, vec!["RESETSTAT"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scripts_read_bounded_windows_of_a_big_user_index() {
    const N: usize = 3000;
    let port = free_port();
    let _server = Server::start(port, &[]);
    let config = RedisConfig {
        port,
        key_prefix: "psmbounded:".into(),
        socket_timeout: Duration::from_secs(10),
        health_check_interval: None,
        ..RedisConfig::default()
    };
    let storage = RedisStorage::connect(config).await.unwrap();
    let store = Arc::new(storage.sessions());
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(16) {
                let id = format!("big_{i:05}");
                store
                    .store_permissions(SessionIdRef::parse(&id).unwrap(), session("big", &["p"]))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let raw = Client::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap(),
        None,
        None,
        None,
    );
    raw.init().await.unwrap();
    let user = UserId::parse("big").unwrap();

    // A create at the limit (reject) verifies one window, not every session.
    reset(&raw).await;
    let limit = SessionLimit::new(N as u32, LimitPolicy::Reject).unwrap();
    let e = store
        .create_session(
            SessionIdRef::parse("one_more").unwrap(),
            session("big", &["p"]),
            limit,
        )
        .await
        .expect_err("at the limit");
    assert_eq!(e.kind(), ErrorKind::SessionLimitReached);
    let c = calls(&raw).await;
    let hmget = c.get("hmget").copied().unwrap_or(0);
    assert!(
        hmget <= 300,
        "a create at the limit read {hmget} sessions of {N}"
    );
    assert!(c.get("zrange").copied().unwrap_or(0) <= 2, "{c:?}");

    // A page of the user's sessions reads about the page.
    reset(&raw).await;
    let page = store
        .list_sessions(Some(&user), Page::new(10, 100).unwrap())
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    let hmget = calls(&raw).await.get("hmget").copied().unwrap_or(0);
    assert!(hmget <= 20, "a page of 10 read {hmget} sessions");

    // Whole-index work is split into windows: many script calls, none reading everything.
    reset(&raw).await;
    assert_eq!(store.cleanup_expired_sessions().await.unwrap(), 0);
    let c = calls(&raw).await;
    let evals = c.get("evalsha").copied().unwrap_or(0);
    assert!(
        evals >= (N / 256) as u64,
        "cleanup ran {evals} scripts for {N} sessions: {c:?}"
    );

    reset(&raw).await;
    assert_eq!(
        store.invalidate_user_sessions(&user).await.unwrap(),
        N as u64
    );
    let c = calls(&raw).await;
    let evals = c.get("evalsha").copied().unwrap_or(0);
    assert!(
        evals >= (N / 256) as u64,
        "invalidate_user ran {evals} scripts for {N} sessions"
    );

    // A big eviction goes in windows too, and leaves exactly the limit.
    for i in 0..N {
        let id = format!("again_{i:05}");
        store
            .store_permissions(SessionIdRef::parse(&id).unwrap(), session("big", &["p"]))
            .await
            .unwrap();
    }
    reset(&raw).await;
    let evict = SessionLimit::new(3, LimitPolicy::EvictOldest).unwrap();
    let evicted = store
        .create_session(
            SessionIdRef::parse("newest").unwrap(),
            session("big", &["p"]),
            evict,
        )
        .await
        .unwrap();
    assert_eq!(evicted.len(), N - 2);
    assert_eq!(evicted[0].as_str(), "again_00000");
    let evals = calls(&raw).await.get("evalsha").copied().unwrap_or(0);
    assert!(
        evals >= (N / 256) as u64,
        "a big eviction ran in {evals} script calls"
    );
    let left = store
        .list_sessions(Some(&user), Page::new(100, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(left.len(), 3);
    storage.close().await.unwrap();
}
