//! Faults: a private PostgreSQL stopped mid-load and started again; statement timeouts; an
//! exhausted pool. Every wait is bounded by `tokio::time::timeout`, so a hang fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{
    self,
    private_pg::{PrivatePg, as_postgres, run},
};

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use psm_core::{
    ErrorKind, NewSession, PermissionList, PermissionRef, PermissionStore, SessionIdRef, UserId,
};
use psm_postgres::{PostgresConfig, PostgresStorage};

fn sid(s: &str) -> &SessionIdRef {
    SessionIdRef::parse(s).unwrap()
}

/// The longest one call may take while the server is down: creating a connection is bounded by
/// twice connect_timeout per attempt, plus the retry delay, plus a margin.
fn down_bound(c: &PostgresConfig) -> Duration {
    let attempts = c.retry_attempts + 1;
    c.connect_timeout * 2 * attempts + c.retry_max_delay + Duration::from_secs(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_stopped_mid_load_fails_fast_and_recovers() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let pg = PrivatePg::start();
        let config = pg.config();
        let bound = down_bound(&config);
        let storage = PostgresStorage::connect(config.clone()).await.unwrap();
        let store = storage.sessions();
        let session = NewSession::new(
            UserId::parse("alice").unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        );
        store.store_permissions(sid("s1"), session).await.unwrap();
        let read = PermissionRef::parse("read").unwrap();

        // Load: eight tasks checking continuously; count outcomes.
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut load = Vec::new();
        for _ in 0..8 {
            let (store, stop, ok, failed) =
                (store.clone(), stop.clone(), ok.clone(), failed.clone());
            load.push(tokio::spawn(async move {
                let read = PermissionRef::parse("read").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match store.check_permission(sid("s1"), read).await {
                        Ok(true) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => panic!("a check answered false for a live session"),
                        Err(e) => {
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::ProviderConnection | ErrorKind::OperationTimeout
                                ),
                                "a check failed with the wrong kind: {e:?}"
                            );
                            assert!(
                                t.elapsed() < bound + Duration::from_secs(2),
                                "a failing call took {:?}",
                                t.elapsed()
                            );
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(ok.load(Ordering::Relaxed) > 0, "the load made no progress");

        pg.stop_immediate();
        // While down: every call fails with ProviderConnection, each within the bound.
        for _ in 0..5 {
            let t = Instant::now();
            let r = tokio::time::timeout(bound, store.check_permission(sid("s1"), read))
                .await
                .unwrap_or_else(|_| panic!("a call hung past {bound:?} while the server was down"));
            let e = r.expect_err("a call succeeded while the server was down");
            assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e:?}");
            assert!(e.is_retryable());
            assert!(t.elapsed() <= bound);
        }
        let failed_while_down = failed.load(Ordering::Relaxed);

        pg.pg_ctl_start();
        // The same storage recovers: within a few seconds calls succeed again.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout(bound, store.get_permissions(sid("s1"))).await {
                Ok(Ok(Some(data))) => {
                    assert_eq!(data.user_id.as_str(), "alice");
                    break;
                }
                Ok(Ok(None)) => panic!("the session did not survive the restart"),
                // Connection errors while it starts up (57P03, refused), or a wait for a pooled
                // connection the load holds.
                Ok(Err(e)) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::ProviderConnection | ErrorKind::OperationTimeout
                    ),
                    "{e:?}"
                ),
                Err(_) => panic!("a call hung after the restart"),
            }
            assert!(
                Instant::now() < deadline,
                "the storage did not recover within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ok_before = ok.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            ok.load(Ordering::Relaxed) > ok_before,
            "the load did not resume after the restart"
        );
        stop.store(true, Ordering::Relaxed);
        for t in load {
            t.await.unwrap();
        }
        assert!(failed_while_down > 0, "the load never saw the outage");
        storage.close().await.unwrap();
        drop(pg);
    })
    .await
    .expect("the fault test hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_gives_operation_timeout() {
    tokio::time::timeout(Duration::from_secs(60), async {
        common::drop_stale_schemas().await;
        let schema = common::fresh_schema();
        let mut c = common::config(&schema);
        c.statement_timeout = Some(Duration::from_millis(300));
        let storage = PostgresStorage::connect(c).await.unwrap();
        let t = Instant::now();
        let e = storage
            .database()
            .fetch("SELECT pg_sleep(5)", &[])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OperationTimeout, "{e:?}");
        assert_eq!(e.detail("sqlstate"), Some("57014"));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        // The connection is still usable afterwards.
        assert_eq!(
            storage
                .database()
                .fetch("SELECT 1", &[])
                .await
                .unwrap()
                .len(),
            1
        );
    })
    .await
    .expect("the statement timeout test hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_gives_operation_timeout_after_the_wait() {
    tokio::time::timeout(Duration::from_secs(60), async {
        common::drop_stale_schemas().await;
        let schema = common::fresh_schema();
        let mut c = common::config(&schema);
        c.pool_size = 2;
        c.wait_timeout = Duration::from_millis(400);
        let storage = PostgresStorage::connect(c).await.unwrap();
        let held = (
            storage.client().await.unwrap(),
            storage.client().await.unwrap(),
        );
        let status = storage.pool_status();
        assert_eq!((status.size, status.available, status.max_size), (2, 0, 2));
        let t = Instant::now();
        let e = storage
            .sessions()
            .check_permission(sid("s1"), PermissionRef::parse("read").unwrap())
            .await
            .unwrap_err();
        let waited = t.elapsed();
        assert_eq!(e.kind(), ErrorKind::OperationTimeout, "{e:?}");
        assert!(
            waited >= Duration::from_millis(380) && waited < Duration::from_secs(3),
            "waited {waited:?}"
        );
        drop(held);
        assert!(
            !storage
                .sessions()
                .check_permission(sid("s1"), PermissionRef::parse("read").unwrap())
                .await
                .unwrap()
        );
    })
    .await
    .expect("the exhausted pool test hung");
}

/// The pid of the backend serving a `pg_sleep` that `application_name` names, once it runs.
async fn backend_running<T: std::fmt::Debug>(
    raw: &tokio_postgres::Client,
    app: &str,
    call: &mut tokio::task::JoinHandle<T>,
    signalled: &[i32],
) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let row = raw
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' \
                 AND query LIKE '%pg_sleep%' AND pid <> ALL($2) LIMIT 1",
                &[&app, &signalled],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        if call.is_finished() {
            panic!("the sleeping call ended early: {:?}", call.await);
        }
        assert!(
            Instant::now() < deadline,
            "the sleeping query never showed up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server ending a session in the middle of a call (`pg_terminate_backend`: a `FATAL` 57P01)
/// is a connection error; cancelling the statement (`pg_cancel_backend`: 57014) is a timeout. The
/// same storage works right afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_or_cancelled_by_the_server_maps_to_connection_or_timeout() {
    tokio::time::timeout(Duration::from_secs(150), async {
        common::drop_stale_schemas().await;
        let schema = common::fresh_schema();
        let mut c = common::config(&schema);
        c.application_name = format!("psm-kill-{}", &schema[6..]);
        // Only the server's signals may end the calls below.
        c.statement_timeout = None;
        c.query_timeout = Some(Duration::from_secs(130));
        let app = c.application_name.clone();
        let storage = PostgresStorage::connect(c).await.unwrap();
        let raw = common::raw_client().await;
        let mut done: Vec<i32> = Vec::new();
        for (signal, want, sqlstate) in [
            (
                "pg_terminate_backend",
                ErrorKind::ProviderConnection,
                "57P01",
            ),
            ("pg_cancel_backend", ErrorKind::OperationTimeout, "57014"),
        ] {
            let db = storage.database();
            let mut call = tokio::spawn(async move { db.fetch("SELECT pg_sleep(120)", &[]).await });
            // A backend signalled before may still be listed while it exits.
            let pid = backend_running(&raw, &app, &mut call, &done).await;
            done.push(pid);
            let signalled: bool = raw
                .query_one(&format!("SELECT {signal}($1)"), &[&pid])
                .await
                .unwrap()
                .get(0);
            assert!(signalled);
            let e = call.await.unwrap().unwrap_err();
            assert_eq!(e.kind(), want, "{signal}: {e:?}");
            assert_eq!(e.detail("sqlstate"), Some(sqlstate), "{e:?}");
            assert!(e.is_retryable());
        }
        // A store call blocked behind a lock, its session ended by the server.
        let store = storage.sessions();
        let session = NewSession::new(
            UserId::parse("alice").unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        );
        store.store_permissions(sid("s1"), session).await.unwrap();
        let mut locker = common::raw_client().await;
        let tx = locker.transaction().await.unwrap();
        tx.batch_execute(&format!(
            "LOCK TABLE \"{}\".sessions IN ACCESS EXCLUSIVE MODE",
            &*schema
        ))
        .await
        .unwrap();
        let blocked = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .check_permission(sid("s1"), PermissionRef::parse("read").unwrap())
                    .await
            })
        };
        let pid = loop {
            let row = raw
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                     AND wait_event_type = 'Lock' LIMIT 1",
                    &[&app],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                break row.get::<_, i32>(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        raw.execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let e = blocked.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e:?}");
        tx.rollback().await.unwrap();
        assert!(
            store
                .check_permission(sid("s1"), PermissionRef::parse("read").unwrap())
                .await
                .unwrap(),
            "the storage must recover on a fresh connection"
        );
    })
    .await
    .expect("the kill test hung");
}

/// Stopping and starting the server again and again under load, in immediate mode (a crash) and
/// fast mode (sessions ended with `FATAL` 57P01): every failed call is a connection error or a
/// timeout, the data survives, and the load always resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_restarts_under_load_fail_only_with_connection_kinds() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let pg = PrivatePg::start();
        let config = pg.config();
        let storage = PostgresStorage::connect(config.clone()).await.unwrap();
        let store = storage.sessions();
        let session = NewSession::new(
            UserId::parse("alice").unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        );
        store.store_permissions(sid("s1"), session).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut load = Vec::new();
        for _ in 0..8 {
            let (store, stop, ok, failed) =
                (store.clone(), stop.clone(), ok.clone(), failed.clone());
            load.push(tokio::spawn(async move {
                let read = PermissionRef::parse("read").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match store.check_permission(sid("s1"), read).await {
                        Ok(true) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => panic!("the session was lost"),
                        Err(e) => {
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::ProviderConnection | ErrorKind::OperationTimeout
                                ),
                                "wrong kind: {e:?}"
                            );
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
        for mode in ["immediate", "fast", "immediate", "fast"] {
            let before = ok.load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(30);
            while ok.load(Ordering::Relaxed) < before + 50 {
                assert!(Instant::now() < deadline, "the load did not resume");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            run(
                as_postgres("pg_ctl", &["stop", "-w", "-m", mode, "-D", &pg.data()]),
                "pg_ctl stop",
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            pg.pg_ctl_start();
        }
        stop.store(true, Ordering::Relaxed);
        for t in load {
            t.await.unwrap();
        }
        assert!(
            failed.load(Ordering::Relaxed) > 0,
            "the load never saw an outage"
        );
        storage.close().await.unwrap();
    })
    .await
    .expect("the restart test hung");
}

/// Connection attempts are retried `retry_attempts` times with the configured backoff. A listener
/// that accepts and at once closes every connection counts the attempts that really reach it;
/// the elapsed time is only checked as a lower bound (the sum of the delays) and against the
/// configured bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried_as_configured() {
    tokio::time::timeout(Duration::from_secs(60), async {
        for (retries, delay_ms, max_ms) in
            [(0_u32, 200_u64, 200_u64), (2, 100, 1000), (3, 200, 300)]
        {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let accepted = Arc::new(AtomicU64::new(0));
            let counter = {
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                })
            };
            let mut c = PostgresConfig::from_url(&format!(
                "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
            ))
            .unwrap();
            c.connect_timeout = Duration::from_secs(1);
            c.retry_attempts = retries;
            c.retry_delay = Duration::from_millis(delay_ms);
            c.retry_max_delay = Duration::from_millis(max_ms);
            // The delays: delay, doubled each time, capped at max.
            let mut slept = Duration::ZERO;
            let mut d = c.retry_delay;
            for _ in 0..retries {
                slept += d;
                d = (d * 2).min(c.retry_max_delay);
            }
            let bound = c.connect_timeout * 2 * (retries + 1) + slept + Duration::from_secs(2);
            let t = Instant::now();
            let e = PostgresStorage::connect(c).await.unwrap_err();
            let took = t.elapsed();
            assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e:?}");
            let attempts = u64::from(retries) + 1;
            assert_eq!(e.detail("attempts"), Some(attempts.to_string().as_str()));
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                attempts,
                "attempts that reached the server"
            );
            assert!(
                took >= slept,
                "{retries} retries took {took:?}, the delays alone are {slept:?}"
            );
            assert!(took <= bound, "took {took:?}, bound {bound:?}");
            counter.abort();
        }
        // A closed port: refused at once, retried all the same.
        let port = common::private_pg::free_port();
        let mut c = PostgresConfig::from_url(&format!(
            "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        ))
        .unwrap();
        c.retry_attempts = 4;
        c.retry_delay = Duration::from_millis(50);
        c.retry_max_delay = Duration::from_millis(80);
        let t = Instant::now();
        let e = PostgresStorage::connect(c).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e:?}");
        assert_eq!(e.detail("attempts"), Some("5"));
        assert!(t.elapsed() >= Duration::from_millis(50 + 80 * 3));
    })
    .await
    .expect("the retry test hung");
}

/// A server frozen with `SIGSTOP` accepts TCP connections (the kernel does) but never answers.
/// Calls on pooled connections fail with `OperationTimeout` after `query_timeout` (and drop their
/// connection); new connections fail with `ProviderConnection` after the create bound; none takes
/// longer than the configured bound, concurrent ones included. After `SIGCONT` the same storage
/// works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_server_gives_timeouts_within_the_bound_then_recovers() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let pg = PrivatePg::start();
        let mut config = pg.config();
        config.statement_timeout = None;
        config.query_timeout = Some(Duration::from_secs(1));
        config.connect_timeout = Duration::from_millis(500);
        config.wait_timeout = Duration::from_secs(1);
        config.retry_attempts = 1;
        config.retry_delay = Duration::from_millis(50);
        let call = config.call_timeout().unwrap();
        // Acquiring: per attempt the create bound (twice connect_timeout), plus the retry delay;
        // then the call bound; plus a margin for a loaded machine.
        let bound = config.connect_timeout * 2 * (config.retry_attempts + 1)
            + config.retry_delay
            + config.wait_timeout
            + call
            + Duration::from_secs(2);
        let storage = PostgresStorage::connect(config.clone()).await.unwrap();
        let store = storage.sessions();
        let session = NewSession::new(
            UserId::parse("alice").unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        );
        store.store_permissions(sid("s1"), session).await.unwrap();
        let read = PermissionRef::parse("read").unwrap();
        // Several pooled connections, so both failure paths are met.
        let warm: Vec<_> = (0..3)
            .map(|_| store.check_permission(sid("s1"), read))
            .collect();
        for r in futures::future::join_all(warm).await {
            assert!(r.unwrap());
        }

        let frozen = pg.freeze();
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            let r = tokio::time::timeout(bound * 2, store.check_permission(sid("s1"), read))
                .await
                .unwrap_or_else(|_| panic!("a call hung on the frozen server"));
            let took = t.elapsed();
            let e = r.expect_err("a frozen server answered");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::OperationTimeout | ErrorKind::ProviderConnection
                ),
                "{e:?}"
            );
            assert!(took <= bound, "a call took {took:?}, bound {bound:?}");
            kinds.push(e.kind());
        }
        assert!(
            kinds.contains(&ErrorKind::OperationTimeout),
            "a pooled connection must time out: {kinds:?}"
        );
        // Concurrent calls: none beyond the bound either.
        let t = Instant::now();
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.check_permission(sid("s1"), read).await })
            })
            .collect();
        for c in calls {
            let e = c.await.unwrap().expect_err("a frozen server answered");
            assert!(e.is_retryable(), "{e:?}");
        }
        assert!(
            t.elapsed() <= bound * 2,
            "concurrent calls took {:?}",
            t.elapsed()
        );
        drop(frozen);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match store.check_permission(sid("s1"), read).await {
                Ok(true) => break,
                Ok(false) => panic!("the session was lost"),
                Err(e) => assert!(e.is_retryable(), "{e:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "no recovery within 30 s of SIGCONT"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        storage.close().await.unwrap();
    })
    .await
    .expect("the stalled-server test hung");
}
