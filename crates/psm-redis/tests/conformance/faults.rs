//! Real failures against private servers: a `redis-server` is stopped in the middle of a load and
//! started again on the same port; a proxy silently stops forwarding (a dead peer) or swallows a
//! reply after the server ran the command; a long script keeps the server busy.
//!
//! During an outage every call (checks, writes, scans) fails within the configured timeout plus a
//! small margin with a retryable error, never hangs, never panics; after the restart the same
//! store succeeds again within 2 seconds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use fred::{
    prelude::*,
    types::{ClusterHash, CustomCommand},
};
use psm_core::{
    Clock, ConsumeOutcome, ErrorKind, FamilyId, LimitPolicy, NewTokenFamily, Page, PermissionRef,
    PermissionStore, SessionIdRef, SessionLimit, SystemClock, Timestamp, TokenId, TokenStateStore,
    UserId,
};
use psm_redis::{ClientCacheConfig, RedisConfig, RedisStorage};

use crate::common::{
    proxy::Proxy,
    server::{Server, free_port},
    session,
};

/// Margin on top of the configured timeout for a call to fail during an outage.
const MARGIN: Duration = Duration::from_millis(150);

fn private_config(port: u16, timeout: Duration) -> RedisConfig {
    RedisConfig {
        port,
        socket_timeout: timeout,
        socket_connect_timeout: timeout,
        key_prefix: "psmfault:".into(),
        ..RedisConfig::default()
    }
}

/// `f` fails within `timeout + MARGIN` with a retryable error.
async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    f: impl Future<Output = psm_core::Result<T>>,
) {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung during the outage"));
    let elapsed = started.elapsed();
    let e = r.expect_err("a call during the outage must fail");
    assert!(e.is_retryable(), "{what}: {e}");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ProviderConnection | ErrorKind::OperationTimeout
        ),
        "{what}: {e}"
    );
    assert!(
        elapsed <= timeout + MARGIN,
        "{what} took {elapsed:?} to fail, more than the configured {timeout:?} plus {MARGIN:?}"
    );
}

/// Checks until the cache answers locally (the invalidation of the test's own write may cancel
/// the first fills).
async fn warm_up(store: &psm_redis::RedisStore, id: &SessionIdRef, read: &PermissionRef) {
    let started = Instant::now();
    loop {
        assert!(store.check_permission(id, read).await.unwrap());
        let hits = store.client_cache_stats().unwrap().hits;
        if hits >= 10 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the client cache never served a hit"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_fails_fast_and_recovers() {
    let port = free_port();
    let mut server = Server::start(port, &[]);
    let timeout = Duration::from_millis(500);
    let storage = RedisStorage::connect(private_config(port, timeout))
        .await
        .unwrap();
    let store = storage.sessions();
    let id = SessionIdRef::parse("fault_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    store
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();

    // Load: 8 tasks checking in a loop and 2 storing sessions in a loop; none may panic, and no
    // call, failed or answered, may take longer than the timeout (a call answered only once the
    // server is back waited out the outage: it hung).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for task in 0..10 {
        let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let writer = task >= 8;
            let what = if writer { "store" } else { "check" };
            let own = format!("fault_load_{task}");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let call = async {
                    if writer {
                        let id = SessionIdRef::parse(&own).unwrap();
                        store.store_permissions(id, session("w", &["read"])).await
                    } else {
                        let id = SessionIdRef::parse("fault_session").unwrap();
                        let read = PermissionRef::parse("read").unwrap();
                        store.check_permission(id, read).await.map(|_| ())
                    }
                };
                let r = tokio::time::timeout(Duration::from_secs(5), call)
                    .await
                    .unwrap_or_else(|_| panic!("a {what} hung during the outage"));
                let elapsed = started.elapsed();
                match r {
                    Ok(()) => {
                        assert!(
                            elapsed <= timeout + MARGIN,
                            "a {what} under load took {elapsed:?} to be answered"
                        );
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        assert!(
                            elapsed <= timeout + MARGIN,
                            "a {what} under load took {elapsed:?} to fail"
                        );
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "the load must run before the outage"
    );

    server.kill();
    // The outage outlasts the wait for a reconnect of a retried call (half the timeout) and the
    // bound itself, so the load must fail, and a call that waits for the restart breaks the bound.
    tokio::time::sleep(timeout + 2 * MARGIN).await;
    for _ in 0..3 {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), store.check_permission(id, read))
            .await
            .expect("a call hung during the outage");
        let e = r.expect_err("a call during the outage must fail");
        assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e}");
        assert!(
            started.elapsed() <= timeout + MARGIN,
            "failing took {:?}, more than the configured timeout",
            started.elapsed()
        );
    }
    // The scanning calls and writes fail as fast as checks.
    fails_fast(
        "list_sessions(None)",
        timeout,
        store.list_sessions(None, Page::new(10, 0).unwrap()),
    )
    .await;
    fails_fast("flush_all_sessions", timeout, store.flush_all_sessions()).await;
    fails_fast(
        "cleanup_expired_sessions",
        timeout,
        store.cleanup_expired_sessions(),
    )
    .await;
    fails_fast(
        "store_permissions",
        timeout,
        store.store_permissions(id, session("u", &["read"])),
    )
    .await;
    fails_fast("tokens.flush_all", timeout, storage.tokens().flush_all()).await;
    fails_fast("cache.clear", timeout, storage.cache().clear()).await;

    server.restart();
    let restarted = Instant::now();
    loop {
        // The data is gone (no persistence); any answer proves the store works again.
        let r = tokio::time::timeout(Duration::from_secs(5), store.check_permission(id, read))
            .await
            .expect("a check hung after the restart");
        match r {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(
                    restarted.elapsed() < Duration::from_secs(2),
                    "the store did not recover within 2 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(restarted.elapsed() < Duration::from_secs(2));
    tokio::time::timeout(
        Duration::from_secs(5),
        store.store_permissions(id, session("u", &["read"])),
    )
    .await
    .expect("a store hung after the restart")
    .unwrap();
    assert!(store.check_permission(id, read).await.unwrap());
    // The storing load tasks add their own sessions again after the restart.
    let listed = store
        .list_sessions(None, Page::new(10, 0).unwrap())
        .await
        .unwrap();
    let listed: Vec<&str> = listed.iter().map(|s| s.as_str()).collect();
    assert!(listed.contains(&"fault_session"), "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|s| ["fault_session", "fault_load_8", "fault_load_9"].contains(s)),
        "{listed:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a load task hung")
            .expect("a load task panicked");
    }
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "the load must have seen the outage"
    );
    storage.close().await.unwrap();
}

/// With the client cache on, a restart of the server (which loses every key) must not leave the
/// cache answering from before: the tracking connection is re-established and the cache emptied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_cache_is_emptied_when_the_server_restarts() {
    let port = free_port();
    let mut server = Server::start(port, &[]);
    let timeout = Duration::from_millis(500);
    let mut config = private_config(port, timeout);
    config.client_cache = Some(ClientCacheConfig::default());
    let cached = RedisStorage::connect(config).await.unwrap();
    let store = cached.sessions();
    let id = SessionIdRef::parse("restart_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    store
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();
    warm_up(&store, id, read).await;

    server.kill();
    server.restart();
    let restarted = Instant::now();
    // After the restart the session is gone: the cached "true" must not survive it.
    loop {
        match store.check_permission(id, read).await {
            Ok(false) => break,
            Ok(true) | Err(_) => {
                assert!(
                    restarted.elapsed() < Duration::from_secs(2),
                    "the cache still answered from before the restart after 2 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Tracking works again: a change by another client reaches the cache.
    let other = RedisStorage::connect(private_config(port, timeout))
        .await
        .unwrap();
    store
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();
    let recovered = Instant::now();
    while !store.client_cache_stats().unwrap().active {
        assert!(
            recovered.elapsed() < Duration::from_secs(2),
            "tracking was not re-enabled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.check_permission(id, read).await.unwrap());
    assert!(other.sessions().invalidate_session(id).await.unwrap());
    let invalidated = Instant::now();
    while store.check_permission(id, read).await.unwrap() {
        assert!(
            invalidated.elapsed() < Duration::from_millis(50),
            "an invalidation after the restart did not reach the cache within 50 ms"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    other.close().await.unwrap();
    cached.close().await.unwrap();
}

/// A tracking connection whose peer goes silent (the socket stays open, nothing is forwarded) is
/// noticed by its PING: the cache stops answering from its entries, so an invalidation it never
/// received cannot keep a revoked session alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silently_dead_tracking_connection_is_noticed() {
    let port = free_port();
    let _server = Server::start(port, &[]);
    let proxy = Proxy::start(port).await;
    let timeout = Duration::from_millis(500);
    let mut config = private_config(proxy.port, timeout);
    config.client_cache = Some(ClientCacheConfig::default());
    let cached = RedisStorage::connect(config).await.unwrap();
    let direct = RedisStorage::connect(private_config(port, timeout))
        .await
        .unwrap();
    let store = cached.sessions();
    let id = SessionIdRef::parse("silent_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    direct
        .sessions()
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();
    warm_up(&store, id, read).await;

    // Every connection of the cached store goes silent; then the session is revoked directly.
    proxy.blackhole_open_connections();
    assert!(direct.sessions().invalidate_session(id).await.unwrap());
    let revoked = Instant::now();
    let bound = Duration::from_secs(1) + timeout * 2 + MARGIN;
    loop {
        match store.check_permission(id, read).await {
            Ok(true) => {
                assert!(
                    revoked.elapsed() < bound,
                    "the cache still granted a revoked session {:?} after its tracking connection died",
                    revoked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(false) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(
                    revoked.elapsed() < Duration::from_secs(5),
                    "no recovery: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    cached.close().await.unwrap();
    direct.close().await.unwrap();
}

/// The reply to a create_session or a consume is lost after the server ran it (the connection
/// closes): the retry must report the same success, not "exists" or reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_create_or_consume_after_a_lost_reply_is_not_a_conflict() {
    let port = free_port();
    let _server = Server::start(port, &[]);
    let proxy = Proxy::start(port).await;
    let config = RedisConfig {
        pool_size: 1,
        health_check_interval: None,
        ..private_config(proxy.port, Duration::from_secs(2))
    };
    let storage = RedisStorage::connect(config).await.unwrap();
    let sessions = storage.sessions();
    let id = SessionIdRef::parse("retried_session").unwrap();
    proxy.swallow_next_reply_to(b"EVALSHA");
    let evicted = sessions
        .create_session(
            id,
            session("u", &["read"]),
            SessionLimit::new(3, LimitPolicy::Reject).unwrap(),
        )
        .await
        .expect("a retried create_session must succeed, not report SessionExists");
    assert!(evicted.is_empty());
    assert_eq!(proxy.swallowed(), 1, "the first reply must have been lost");
    assert!(
        sessions
            .check_permission(id, PermissionRef::parse("read").unwrap())
            .await
            .unwrap()
    );

    let tokens = storage.tokens();
    let family = FamilyId::parse("retried_family").unwrap();
    let first = TokenId::parse("t1").unwrap();
    let next = TokenId::parse("t2").unwrap();
    tokens
        .create_family(NewTokenFamily {
            id: family.clone(),
            user_id: UserId::parse("u").unwrap(),
            session_id: None,
            first_token: first.clone(),
            expires_at: Timestamp::from_unix_micros(
                SystemClock.now().as_unix_micros() + 3_600_000_000,
            ),
        })
        .await
        .unwrap();
    proxy.swallow_next_reply_to(b"EVALSHA");
    let out = tokens.consume(&family, &first, &next).await.unwrap();
    assert_eq!(proxy.swallowed(), 2);
    assert!(
        matches!(out, ConsumeOutcome::Rotated(ref f) if f.current_token == next),
        "a retried consume must rotate, not detect reuse: {out:?}"
    );
    // A genuine reuse (another next) is still caught.
    let other = TokenId::parse("t3").unwrap();
    assert!(matches!(
        tokens.consume(&family, &first, &other).await.unwrap(),
        ConsumeOutcome::ReuseDetected(_)
    ));
    storage.close().await.unwrap();
}

/// A server busy with a long script answers BUSY: a retryable connection error, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_server_is_a_retryable_connection_error() {
    let port = free_port();
    let _server = Server::start(port, &["--busy-reply-threshold", "50"]);
    let storage = RedisStorage::connect(private_config(port, Duration::from_secs(3)))
        .await
        .unwrap();
    let store = storage.sessions();
    let raw = Client::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap(),
        None,
        None,
        None,
    );
    raw.init().await.unwrap();
    let busy = tokio::spawn(async move {
        let script = "local t = redis.call('TIME'); local s = t[1] * 1000000 + t[2]; \
                      repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - s > 700000; return 1";
        let _: Value = raw
            .eval(script, Vec::<String>::new(), Vec::<String>::new())
            .await
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = store
        .check_permission(
            SessionIdRef::parse("busy").unwrap(),
            PermissionRef::parse("read").unwrap(),
        )
        .await
        .expect_err("a check during a long script must fail with BUSY");
    assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e}");
    assert!(e.is_retryable());
    busy.await.unwrap();
    assert!(
        !store
            .check_permission(
                SessionIdRef::parse("busy").unwrap(),
                PermissionRef::parse("read").unwrap()
            )
            .await
            .unwrap()
    );
    storage.close().await.unwrap();
}

/// Connections killed by the server (`CLIENT KILL`) again and again under load, on a pool of one
/// connection: every failure is retryable, and afterwards the one connection is not left marked
/// down (which would fail every call at once with nothing wrong), so checks all answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_under_load_are_marked_up_again() {
    let port = free_port();
    let _server = Server::start(port, &[]);
    let timeout = Duration::from_millis(500);
    let config = RedisConfig {
        pool_size: 1,
        ..private_config(port, timeout)
    };
    let storage = RedisStorage::connect(config).await.unwrap();
    let store = storage.sessions();
    let id = SessionIdRef::parse("killed_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    store
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();
    let raw = Client::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap(),
        None,
        None,
        None,
    );
    raw.init().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let id = SessionIdRef::parse("killed_session").unwrap();
            let read = PermissionRef::parse("read").unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r =
                    tokio::time::timeout(Duration::from_secs(5), store.check_permission(id, read))
                        .await
                        .expect("a check hung while connections were killed");
                match r {
                    Ok(granted) => {
                        assert!(granted);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            }
        }));
    }
    let kill = CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false);
    let mut killed = 0_u64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let n: u64 = raw
            .custom(
                kill.clone(),
                vec!["KILL", "TYPE", "normal", "SKIPME", "yes"],
            )
            .await
            .unwrap();
        killed += n;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(killed >= 10, "only {killed} connections were killed");
    assert!(ok.load(Ordering::Relaxed) > 0);

    // Within 2 s every call answers again, and keeps answering.
    let started = Instant::now();
    while store.check_permission(id, read).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the pooled connection stayed marked down after the kills"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..200 {
        assert!(store.check_permission(id, read).await.unwrap());
    }
    storage.close().await.unwrap();
}
