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

/// `openssl …`, failing the test with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the verify-full test needs the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in `dir` (`<name>.crt`, `<name>.key`).
fn make_ca(dir: &std::path::Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=psm test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `verify-full` against a private server whose certificate a CA made in the test signed, for the
/// name `localhost` only: it connects (encrypted) by that name with that CA, and refuses, for good
/// and at the first attempt, another name (the IP address) or another CA. `require` connects
/// without checking either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_the_right_ca_and_name_and_refuses_the_wrong_ones() {
    use crate::common::private_pg::{PrivatePg, is_root};
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other_ca");
    let pg = PrivatePg::start_with(|data| {
        std::fs::write(
            data.join("ext.cnf"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            data,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        let ca = certs.path().join("ca");
        openssl(
            data,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-days",
                "2",
                "-out",
                "server.crt",
                "-CA",
                &format!("{}.crt", ca.display()),
                "-CAkey",
                &format!("{}.key", ca.display()),
                "-CAcreateserial",
                "-extfile",
                "ext.cnf",
            ],
        );
        let key = data.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if is_root() {
            let ok = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(&key)
                .arg(data.join("server.crt"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the server key failed");
        }
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_owned()
    });
    let config = |host: &str, mode: SslMode, root: Option<&str>| {
        let mut c = pg.config();
        c.host = host.to_owned();
        c.sslmode = mode;
        c.sslrootcert = root.map(|r| certs.path().join(format!("{r}.crt")));
        c.retry_attempts = 3;
        c.retry_delay = std::time::Duration::from_millis(10);
        c
    };

    let good = PostgresStorage::connect(config("localhost", SslMode::VerifyFull, Some("ca")))
        .await
        .unwrap_or_else(|e| panic!("verify-full with the right CA and name: {e:?}"));
    assert!(ssl_in_use(&good).await, "verify-full must encrypt");
    good.close().await.unwrap();

    for (host, root, what) in [
        ("127.0.0.1", "ca", "a name the certificate does not hold"),
        ("localhost", "other_ca", "a CA that did not sign it"),
    ] {
        let e = PostgresStorage::connect(config(host, SslMode::VerifyFull, Some(root)))
            .await
            .expect_err(what);
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{what}: {e:?}");
        assert!(!e.is_retryable());
        assert_eq!(
            e.detail("attempts"),
            Some("1"),
            "{what}: not retried: {e:?}"
        );
        assert!(e.message().contains("certificate"), "{what}: {e}");
    }

    let require = PostgresStorage::connect(config("127.0.0.1", SslMode::Require, None))
        .await
        .unwrap();
    assert!(ssl_in_use(&require).await, "require must encrypt");
    let plain = PostgresStorage::connect(config("127.0.0.1", SslMode::Disable, None))
        .await
        .unwrap();
    assert!(!ssl_in_use(&plain).await);
}

/// Version 2's `users_created_idx` serves `list_users`' order: with sorts and sequential scans
/// priced out, the planner still plans both listing statements (as `PostgresUserStore` runs them,
/// with and without the permission filter) as a walk of that index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_listing_walks_the_created_index() {
    let storage = common::storage().await;
    let schema: &str = &storage.schema;
    let client = common::raw_client().await;
    let def: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'users_created_idx'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(def.ends_with("(created_at, id)"), "{def}");
    client
        .batch_execute("SET enable_sort = off; SET enable_seqscan = off")
        .await
        .unwrap();
    let cols = "id, username, email, password_hash, permissions, created_at, updated_at";
    for filter in ["", "WHERE 'read' = ANY(permissions) "] {
        let sql = format!(
            "EXPLAIN SELECT {cols} FROM \"{schema}\".users {filter}ORDER BY created_at, id LIMIT 10 OFFSET 5"
        );
        let plan: Vec<String> = client
            .query(sql.as_str(), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("users_created_idx"), "{filter:?}: {plan}");
        assert!(!plan.contains("Sort"), "{filter:?}: {plan}");
    }
}
