//! Migrations: idempotent, safe from many tasks and pools at once, schemas validated before any
//! I/O and isolated from each other; TLS modes against the real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use psm_core::{ErrorKind, NewSession, PermissionList, PermissionStore, SessionIdRef, UserId};
use psm_postgres::{PostgresConfig, PostgresStorage, SslMode, latest_version};
use serde_json::json;

async fn tables_in(schema: &str) -> Vec<String> {
    let client = common::raw_client().await;
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_stay_in_the_schema() {
    common::drop_stale_schemas().await;
    let schema = common::fresh_schema();
    let storage = PostgresStorage::new(common::config(&schema)).unwrap();
    let first = storage.migrate().await.unwrap();
    assert_eq!(first.applied, (1..=latest_version()).collect::<Vec<_>>());
    assert_eq!(first.version, latest_version());
    let second = storage.migrate().await.unwrap();
    assert!(second.applied.is_empty(), "a second run applies nothing");
    assert_eq!(second.version, latest_version());
    storage.initialize().await.unwrap();
    storage.initialize().await.unwrap();
    assert_eq!(
        tables_in(&schema).await,
        [
            "refinery_schema_history",
            "sessions",
            "token_epochs",
            "token_families",
            "users"
        ]
    );
    // A second storage on the same schema sees the same state and migrates nothing.
    let other = PostgresStorage::connect(common::config(&schema))
        .await
        .unwrap();
    assert!(other.migrate().await.unwrap().applied.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrators_on_one_schema_are_safe() {
    common::drop_stale_schemas().await;
    let schema = common::fresh_schema();
    let mut tasks = Vec::new();
    // Eight pools (as eight processes would have) migrating the same fresh schema at once.
    for _ in 0..8 {
        let config = common::config(&schema);
        tasks.push(tokio::spawn(async move {
            let storage = PostgresStorage::new(config).unwrap();
            let report = storage.migrate().await.unwrap();
            storage.close().await.unwrap();
            report.applied.len()
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert_eq!(
        applied,
        usize::try_from(latest_version()).unwrap(),
        "every version is applied exactly once"
    );
    let storage = PostgresStorage::connect(common::config(&schema))
        .await
        .unwrap();
    // And from many tasks on one pool.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = storage.clone();
        tasks.push(tokio::spawn(async move {
            s.migrate().await.unwrap().applied.len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schema_names_are_rejected_before_any_io() {
    for bad in [
        "Psm",
        "1x",
        "x-y",
        "x\"; DROP SCHEMA public CASCADE; --",
        "pg_temp",
        "",
    ] {
        let e = PostgresConfig::from_json(&json!({ "schema": bad })).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
        // A config built field by field is validated by `new`, which does no I/O: an unreachable
        // host makes no difference.
        let mut c = PostgresConfig::default();
        c.host = "203.0.113.1".into();
        c.schema = bad.to_owned();
        let e = PostgresStorage::new(c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{bad:?}");
        assert_eq!(e.detail("key"), Some("schema"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schemas_are_isolated() {
    let a = common::storage().await;
    let b = common::storage().await;
    let id = SessionIdRef::parse("shared_id").unwrap();
    let s = NewSession::new(
        UserId::parse("alice").unwrap(),
        PermissionList::parse(["read"]).unwrap(),
    );
    a.sessions().store_permissions(id, s).await.unwrap();
    assert!(b.sessions().get_permissions(id).await.unwrap().is_none());
    let n: i64 = b
        .database()
        .fetch_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the query layer resolves tables in its own schema");
    let n: i64 = a
        .database()
        .fetch_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_before_initialize_and_after_close_are_refused() {
    common::drop_stale_schemas().await;
    let schema = common::fresh_schema();
    let storage = PostgresStorage::new(common::config(&schema)).unwrap();
    let id = SessionIdRef::parse("s").unwrap();
    let e = storage.sessions().get_permissions(id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderNotInitialized);
    let e = storage.database().fetch("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderNotInitialized);
    storage.sessions().initialize().await.unwrap();
    assert!(
        storage
            .sessions()
            .get_permissions(id)
            .await
            .unwrap()
            .is_none()
    );
    let status = storage.pool_status();
    assert_eq!(status.max_size, 4);
    assert!(status.size >= 1 && status.available >= 1, "{status:?}");
    storage.close().await.unwrap();
    let e = storage.sessions().get_permissions(id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderNotInitialized);
    assert_eq!(storage.pool_status().size, 0);
}

async fn ssl_in_use(storage: &PostgresStorage) -> bool {
    storage
        .database()
        .fetch_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_the_server() {
    common::drop_stale_schemas().await;
    let client = common::raw_client().await;
    let server_ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let schema = common::fresh_schema();
    let mut c = common::config(&schema);
    c.sslmode = SslMode::Disable;
    let plain = PostgresStorage::connect(c.clone()).await.unwrap();
    assert!(!ssl_in_use(&plain).await, "disable must not encrypt");
    c.sslmode = SslMode::Prefer;
    let prefer = PostgresStorage::connect(c.clone()).await.unwrap();
    assert_eq!(ssl_in_use(&prefer).await, server_ssl == "on");
    c.sslmode = SslMode::Require;
    if server_ssl == "on" {
        let require = PostgresStorage::connect(c.clone()).await.unwrap();
        assert!(ssl_in_use(&require).await, "require must encrypt");
        // The test server's certificate is self-signed: verify-full against public roots refuses.
        c.sslmode = SslMode::VerifyFull;
        c.sslrootcert = Some("/etc/ssl/certs/ca-certificates.crt".into());
        c.retry_attempts = 3;
        let e = PostgresStorage::connect(c).await.unwrap_err();
        // A rejected certificate is permanent: a configuration error, not retried.
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{e:?}");
        assert!(!e.is_retryable());
        assert_eq!(e.detail("attempts"), Some("1"), "{e:?}");
    } else {
        let e = PostgresStorage::connect(c).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e:?}");
    }
}
