//! What calls cost on the server, counted by a private server's `INFO commandstats` (which counts
//! the commands scripts run too): a check is one command; scripts read bounded windows of a
//! user's index, never the whole of it (with thousands of sessions for one user, a create at the
//! limit, a listed page and a check cost a bounded number of reads), and whole-index work is split
//! into many script calls. Also the key's own expiry (`PTTL`), which updates never drop.

use std::{collections::HashMap, sync::Arc, time::Duration};

use fred::{
    prelude::*,
    types::{ClusterHash, CustomCommand, InfoKind},
};
use psm_core::{
    ErrorKind, LimitPolicy, Page, PermissionList, PermissionRef, PermissionStore, SessionIdRef,
    SessionLimit, Ttl, UserId,
};
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

/// A private server, a store on it under `prefix`, and a raw client of the same server.
async fn private(prefix: &str) -> (Server, psm_redis::RedisStore, Client) {
    let port = free_port();
    let server = Server::start(port, &[]);
    let config = RedisConfig {
        port,
        key_prefix: prefix.into(),
        health_check_interval: None,
        ..RedisConfig::default()
    };
    let storage = RedisStorage::connect(config).await.unwrap();
    let raw = Client::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap(),
        None,
        None,
        None,
    );
    raw.init().await.unwrap();
    (server, storage.sessions(), raw)
}

/// Every command the server ran since the last reset, the counting `INFO` itself excluded.
async fn total(raw: &Client) -> u64 {
    let c = calls(raw).await;
    c.iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_is_one_command_on_the_server() {
    let (_server, store, raw) = private("psmone:").await;
    let id = SessionIdRef::parse("one_cmd").unwrap();
    store
        .store_permissions(id, session("u", &["read", "write"]))
        .await
        .unwrap();
    let (read, admin) = (
        PermissionRef::parse("read").unwrap(),
        PermissionRef::parse("admin").unwrap(),
    );
    let missing = SessionIdRef::parse("no_such_session").unwrap();
    // Warm: the first call on a connection may load nothing more, but be sure.
    assert!(store.check_permission(id, read).await.unwrap());
    for (what, n) in [("held", 0), ("not held", 1), ("missing session", 2)] {
        reset(&raw).await;
        for _ in 0..50 {
            let got = match n {
                0 => store.check_permission(id, read).await.unwrap(),
                1 => store.check_permission(id, admin).await.unwrap(),
                _ => store.check_permission(missing, read).await.unwrap(),
            };
            assert_eq!(got, n == 0, "{what}");
        }
        let c = calls(&raw).await;
        assert_eq!(total(&raw).await, 50, "50 checks ({what}) ran: {c:?}");
        assert_eq!(c.get("hmget").copied(), Some(50), "{what}: {c:?}");
    }
    reset(&raw).await;
    let perms = PermissionList::parse(&["read", "write", "admin"]).unwrap();
    let got = store.check_permissions(id, &perms).await.unwrap();
    assert_eq!(
        got.entries()
            .iter()
            .map(|(_, held)| *held)
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(total(&raw).await, 1, "{:?}", calls(&raw).await);
}

/// `PTTL` of the session's hash, in milliseconds (negative: no expiry or no key).
async fn pttl(raw: &Client, key: &str) -> i64 {
    raw.pttl(key).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_keep_the_keys_own_expiry() {
    let (_server, store, raw) = private("psmpttl:").await;
    let key = "psmpttl:s:{ttl_kept}";
    let id = SessionIdRef::parse("ttl_kept").unwrap();
    let ttl = |s| Some(Ttl::from_secs(s).unwrap());
    store
        .store_permissions(id, session("u", &["read"]).with_ttl(ttl(100)))
        .await
        .unwrap();
    let first = pttl(&raw, key).await;
    assert!((99_000..=100_000).contains(&first), "PTTL {first}");

    // An update without a ttl keeps the key's expiry (not made immortal, not reset).
    assert!(
        store
            .update_permissions(id, PermissionList::parse(&["write"]).unwrap(), None)
            .await
            .unwrap()
    );
    let kept = pttl(&raw, key).await;
    assert!(
        kept > 0 && kept <= first,
        "PTTL {kept} after an update without a ttl"
    );

    // An update with a ttl and an extension set it anew.
    assert!(
        store
            .update_permissions(id, PermissionList::parse(&["read"]).unwrap(), ttl(500))
            .await
            .unwrap()
    );
    let updated = pttl(&raw, key).await;
    assert!((499_000..=500_000).contains(&updated), "PTTL {updated}");
    assert!(
        store
            .extend_session_ttl(id, Ttl::from_secs(1000).unwrap())
            .await
            .unwrap()
    );
    let extended = pttl(&raw, key).await;
    assert!(
        extended > updated && extended <= 1_000_000,
        "PTTL {extended}"
    );

    // A store without a ttl replaces the session whole, expiry included: the key's expiry and
    // the session's recorded one agree (both gone), and a store with a ttl sets both again.
    store
        .store_permissions(id, session("u", &["read", "write"]))
        .await
        .unwrap();
    let info = store.get_session_info(id).await.unwrap().unwrap();
    assert!(!info.has_ttl);
    assert_eq!(
        pttl(&raw, key).await,
        -1,
        "a session with no expiry has a persistent key"
    );
    store
        .store_permissions(id, session("u", &["read"]).with_ttl(ttl(60)))
        .await
        .unwrap();
    let info = store.get_session_info(id).await.unwrap().unwrap();
    assert_eq!(info.ttl_remaining, Some(60));
    let again = pttl(&raw, key).await;
    assert!((59_000..=60_000).contains(&again), "PTTL {again}");
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
