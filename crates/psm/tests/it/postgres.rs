//! The PostgreSQL provider through the facade: by URL and by name, migrations into the URL's
//! schema, data shared between managers, its extras (pool status, query layer) from the manager.

#![cfg(feature = "postgres")]

use psm::{ErrorKind, PermissionStorageManager, blocking};
use serde_json::json;

use crate::support::{expect_kind, postgres_url, unique_name};

fn url_with(schema: &str) -> String {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}&pool_size=4")
}

async fn drop_schema(m: &PermissionStorageManager, schema: &str) {
    let db = m.postgres().unwrap().storage().database();
    db.execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_postgres_url_migrates_its_schema_and_managers_share_it() {
    let schema = unique_name("psm_facade");
    let a = PermissionStorageManager::from_url(&url_with(&schema))
        .await
        .unwrap();
    let b = PermissionStorageManager::new(
        "postgres",
        json!({"url": postgres_url(), "schema": schema, "pool_size": 2}),
    )
    .await
    .unwrap();
    assert_eq!(a.provider_name(), "postgres");
    assert!(a.capabilities().durable && a.capabilities().shared_across_processes);
    let pg = a.postgres().unwrap();
    assert_eq!(pg.storage().schema(), schema);

    a.store_permissions(
        "s1",
        "o'brien; DROP TABLE x",
        ["read", "write"],
        Some(60),
        Some(json!({"q": "it's \\ \"quoted\" ✓"})),
    )
    .await
    .unwrap();
    assert!(b.check_permission("s1", "write").await.unwrap());
    let data = b.get_permissions("s1").await.unwrap().unwrap();
    assert_eq!(data.user_id.as_str(), "o'brien; DROP TABLE x");
    assert_eq!(
        data.metadata.to_value(),
        json!({"q": "it's \\ \"quoted\" ✓"})
    );
    assert_eq!(
        b.list_sessions(Some("o'brien; DROP TABLE x"), 10, 0)
            .await
            .unwrap(),
        ["s1"]
    );
    let status = pg.storage().pool_status();
    assert!(status.size >= 1 && status.max_size == 4, "{status:?}");

    // The query layer shares the pool and sees the store's tables under the schema.
    let rows = pg
        .storage()
        .database()
        .fetch_json("SELECT count(*)::int8 AS n FROM sessions", &[])
        .await
        .unwrap();
    assert_eq!(rows[0]["n"], json!(1));

    drop_schema(&a, &schema).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn bad_postgres_config_is_refused_before_any_io() {
    expect_kind(
        PermissionStorageManager::from_url("postgres://u@127.0.0.1/test?schema=bad-name;").await,
        ErrorKind::ProviderConfiguration,
    );
    let e = expect_kind(
        PermissionStorageManager::new("postgresql", json!({"url": postgres_url()})).await,
        ErrorKind::ProviderNotSupported,
    );
    assert!(e.message().contains("no provider"), "{e}");
    let e = expect_kind(
        PermissionStorageManager::from_url("postgres://u:hunter2secret@127.0.0.1/test?pool_size=0")
            .await,
        ErrorKind::ProviderConfiguration,
    );
    assert!(!format!("{e} {e:?}").contains("hunter2secret"), "{e:?}");
}

#[test]
fn the_blocking_api_works_on_postgres() {
    let schema = unique_name("psm_blk");
    let m = blocking::PermissionStorageManager::from_url(&url_with(&schema)).unwrap();
    m.store_permissions("s1", "bob", ["a"], Some(30), None)
        .unwrap();
    assert!(m.check_permission("s1", "a").unwrap());
    assert!(m.invalidate_session("s1").unwrap());
    m.close().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let m = PermissionStorageManager::from_url(&url_with(&schema))
            .await
            .unwrap();
        drop_schema(&m, &schema).await;
        m.close().await.unwrap();
    });
}
