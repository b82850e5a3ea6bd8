//! Shared helpers of the integration tests: the server URL, fresh schemas, a tiny cache.

#![allow(dead_code, unreachable_pub)]

pub mod cache;
pub mod private_pg;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use psm_core::{Clock, DynClock, ManualClock, SystemClock};
use psm_postgres::{PostgresConfig, PostgresStorage};
use tokio::sync::OnceCell;

/// A test schema whose embedded pid is still running is kept even when old; one older than this is
/// dropped anyway (a reused pid cannot keep a schema alive forever).
const STALE_AFTER_SECS: u64 = 24 * 3600;

/// The server the tests use: `PSM_POSTGRES_URL`, read at run time. A missing variable fails the
/// test (there is no default).
pub fn url() -> String {
    match std::env::var("PSM_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "PSM_POSTGRES_URL is not set: these tests need a PostgreSQL server; run `cargo xtask services` \
             (or set PSM_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
}

fn unix_now() -> u64 {
    u64::try_from(SystemClock.now().as_unix_secs()).unwrap_or(0)
}

/// A schema name no other test (or test process) uses: `psm_t_<unix secs>_<pid>_<n>`.
pub fn fresh_schema_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "psm_t_{}_{}_{}",
        unix_now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh schema name that drops its schema (if it was created) when the guard is dropped, also
/// when the test panics.
pub fn fresh_schema() -> SchemaGuard {
    SchemaGuard(fresh_schema_name())
}

/// Owns a test schema: dropping it runs `DROP SCHEMA … CASCADE` on a short-lived thread of its own.
#[derive(Debug)]
pub struct SchemaGuard(String);

impl std::ops::Deref for SchemaGuard {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let Ok(url) = std::env::var("PSM_POSTGRES_URL") else {
            return;
        };
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(pg) = url.parse::<tokio_postgres::Config>() else {
                    return;
                };
                let Ok((client, conn)) = pg.connect(tokio_postgres::NoTls).await else {
                    return;
                };
                tokio::spawn(conn);
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")),
                )
                .await;
            });
        });
        let _ = done.join();
    }
}

/// A test configuration for `schema`: small pool, short timeouts.
pub fn config(schema: &str) -> PostgresConfig {
    let mut c = PostgresConfig::from_url(&url())
        .unwrap_or_else(|e| panic!("PSM_POSTGRES_URL is not a valid postgres url: {e}"));
    c.schema = schema.to_owned();
    c.pool_size = 4;
    c.wait_timeout = Duration::from_secs(30);
    c.connect_timeout = Duration::from_secs(5);
    c
}

/// Whether process `pid` runs on this machine.
fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Drops test schemas left behind by earlier runs, once per process: those whose embedded pid no
/// longer runs on this machine, and any older than a day.
pub async fn drop_stale_schemas() {
    static ONCE: OnceCell<()> = OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let pg: tokio_postgres::Config = url()
            .parse()
            .unwrap_or_else(|e| panic!("PSM_POSTGRES_URL does not parse: {e}"));
        let Ok((client, conn)) = pg.connect(tokio_postgres::NoTls).await else {
            panic!(
                "cannot reach PostgreSQL at PSM_POSTGRES_URL ({}): run `cargo xtask services` or fix the variable",
                redact(&url())
            );
        };
        tokio::spawn(conn);
        let rows = client
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'psm\\_t\\_%'",
                &[],
            )
            .await
            .unwrap_or_default();
        let cutoff = unix_now().saturating_sub(STALE_AFTER_SECS);
        let me = std::process::id();
        for row in rows {
            let name: String = row.get(0);
            let mut parts = name.split('_').skip(2);
            let secs = parts.next().and_then(|s| s.parse::<u64>().ok());
            let pid = parts.next().and_then(|s| s.parse::<u32>().ok());
            let (Some(secs), Some(pid)) = (secs, pid) else {
                continue;
            };
            let stale = (pid != me && !pid_alive(pid)) || secs < cutoff;
            if stale {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .await;
            }
        }
    })
    .await;
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url.to_owned(),
    }
}

/// A connected, migrated storage in a fresh schema reading `clock`. The schema is left for the
/// dead-pid sweep of a later run (the conformance suite holds its stores as trait objects, so no
/// guard can follow them).
pub async fn storage_with_clock(clock: DynClock) -> PostgresStorage {
    connect_in(&fresh_schema_name(), clock).await
}

async fn connect_in(schema: &str, clock: DynClock) -> PostgresStorage {
    drop_stale_schemas().await;
    let storage = PostgresStorage::with_clock(config(schema), clock)
        .unwrap_or_else(|e| panic!("bad test config: {e}"));
    if let Err(e) = storage.initialize().await {
        panic!(
            "cannot initialize against PSM_POSTGRES_URL ({}): {e:?}",
            redact(&url())
        );
    }
    storage
}

/// A connected, migrated storage in a fresh schema on a manual clock; the schema is dropped when
/// the value is dropped.
#[derive(Debug)]
pub struct TestStorage {
    pub storage: PostgresStorage,
    pub clock: ManualClock,
    pub schema: SchemaGuard,
}

impl std::ops::Deref for TestStorage {
    type Target = PostgresStorage;
    fn deref(&self) -> &PostgresStorage {
        &self.storage
    }
}

/// A connected, migrated storage in a fresh schema on a manual clock (dropped with the value).
pub async fn storage() -> TestStorage {
    let clock = ManualClock::at_2024();
    let schema = fresh_schema();
    let storage = connect_in(&schema, Arc::new(clock.clone())).await;
    TestStorage {
        storage,
        clock,
        schema,
    }
}

/// A raw driver connection to the test server.
pub async fn raw_client() -> tokio_postgres::Client {
    let pg: tokio_postgres::Config = url()
        .parse()
        .unwrap_or_else(|e| panic!("PSM_POSTGRES_URL does not parse: {e}"));
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at PSM_POSTGRES_URL: {e}"));
    tokio::spawn(conn);
    client
}
