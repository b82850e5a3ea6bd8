//! Faults: a private PostgreSQL stopped mid-load and started again; statement timeouts; an
//! exhausted pool. Every wait is bounded by `tokio::time::timeout`, so a hang fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use psm_core::{
    ErrorKind, NewSession, PermissionList, PermissionRef, PermissionStore, SessionIdRef, UserId,
};
use psm_postgres::{PostgresConfig, PostgresStorage, SslMode};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private PostgreSQL in a temporary directory on a free loopback port. Dropping it stops the
/// server (immediate mode) and removes the directory.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &str, args: &[&str]) -> Command {
    let path = Path::new(BIN).join(program);
    assert!(
        path.exists(),
        "{} is missing: the fault tests need the PostgreSQL 15 server binaries",
        path.display()
    );
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivatePg {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("psm-pg-faults-")
            .tempdir()
            .unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:").arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let port = free_port();
        let pg = Self { dir, port };
        let data = pg.data();
        run(
            as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ),
            "initdb",
        );
        // `fsync = off` only matters when the machine crashes. `synchronous_commit` stays on: an
        // immediate stop is a crash of the server, and with it off the commits of the last few
        // hundred milliseconds (the migration included) were lost, so the restarted server had
        // no `sessions` table (42P01, a `Provider` error) and the test failed with "wrong kind".
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = on\nmax_connections = 50\n",
            pg.dir.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(Path::new(&data).join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .unwrap();
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl_start(&self) {
        let log = self.log().display().to_string();
        run(
            as_postgres(
                "pg_ctl",
                &["start", "-w", "-t", "60", "-D", &self.data(), "-l", &log],
            ),
            "pg_ctl start",
        );
    }

    fn stop_immediate(&self) {
        run(
            as_postgres(
                "pg_ctl",
                &["stop", "-w", "-m", "immediate", "-D", &self.data()],
            ),
            "pg_ctl stop",
        );
    }

    fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::from_url(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
        .unwrap();
        c.sslmode = SslMode::Disable;
        c.pool_size = 4;
        c.connect_timeout = Duration::from_secs(1);
        c.wait_timeout = Duration::from_secs(2);
        c.retry_attempts = 1;
        c.retry_delay = Duration::from_millis(50);
        c
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(
            "pg_ctl",
            &["stop", "-w", "-m", "immediate", "-D", &self.data()],
        )
        .output();
    }
}

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
async fn backend_running(raw: &tokio_postgres::Client, app: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = raw
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' \
                 AND query LIKE '%pg_sleep%' LIMIT 1",
                &[&app],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
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
    tokio::time::timeout(Duration::from_secs(60), async {
        common::drop_stale_schemas().await;
        let schema = common::fresh_schema();
        let mut c = common::config(&schema);
        c.application_name = format!("psm-kill-{}", &schema[6..]);
        let app = c.application_name.clone();
        let storage = PostgresStorage::connect(c).await.unwrap();
        let raw = common::raw_client().await;
        for (signal, want, sqlstate) in [
            (
                "pg_terminate_backend",
                ErrorKind::ProviderConnection,
                "57P01",
            ),
            ("pg_cancel_backend", ErrorKind::OperationTimeout, "57014"),
        ] {
            let db = storage.database();
            let call = tokio::spawn(async move { db.fetch("SELECT pg_sleep(20)", &[]).await });
            let pid = backend_running(&raw, &app).await;
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
