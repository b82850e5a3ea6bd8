//! Shared helpers of the integration tests: the server URL, fresh schemas, a tiny cache.

#![allow(dead_code, unreachable_pub)]

pub mod cache;

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

/// Test schemas are named `psm_t_<unix seconds>_<pid>_<n>`; ones older than this are dropped.
const STALE_AFTER_SECS: u64 = 3600;

/// The server the tests use: `PSM_POSTGRES_URL`, default the local test server.
pub fn url() -> String {
    std::env::var("PSM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn unix_now() -> u64 {
    u64::try_from(SystemClock.now().as_unix_secs()).unwrap_or(0)
}

/// A schema name no other test (or test process) uses.
pub fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "psm_t_{}_{}_{}",
        unix_now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
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

/// Drops test schemas left behind by earlier runs (older than an hour), once per process.
pub async fn drop_stale_schemas() {
    static ONCE: OnceCell<()> = OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let pg: tokio_postgres::Config = url().parse().unwrap_or_default();
        let Ok((client, conn)) = pg.connect(tokio_postgres::NoTls).await else {
            panic!(
                "cannot reach PostgreSQL at PSM_POSTGRES_URL ({}): start it or set the variable",
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
        for row in rows {
            let name: String = row.get(0);
            let secs = name
                .split('_')
                .nth(2)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            if secs < cutoff {
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

/// A connected, migrated storage in a fresh schema reading `clock`.
pub async fn storage_with_clock(clock: DynClock) -> PostgresStorage {
    drop_stale_schemas().await;
    let storage = PostgresStorage::with_clock(config(&fresh_schema()), clock)
        .unwrap_or_else(|e| panic!("bad test config: {e}"));
    if let Err(e) = storage.initialize().await {
        panic!(
            "cannot initialize against PSM_POSTGRES_URL ({}): {e:?}",
            redact(&url())
        );
    }
    storage
}

/// A connected, migrated storage in a fresh schema on a manual clock.
pub async fn storage() -> (PostgresStorage, ManualClock) {
    let clock = ManualClock::at_2024();
    (storage_with_clock(Arc::new(clock.clone())).await, clock)
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
