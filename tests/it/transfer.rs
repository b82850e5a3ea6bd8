//! `psm export` from the file store and `psm import` into Redis, through the CLI's own code:
//! every session arrives with its user, permissions, metadata and remaining ttl.

use clap::Parser;
use psm::PermissionStorageManager;
use psm_cli::{cli::Cli, exit, stores::Stores};
use serde_json::json;

use crate::support::{Backing, server_url, unique, with_param};

async fn psm(args: &[&str]) -> Result<u8, psm_cli::CliError> {
    let mut argv = vec!["psm"];
    argv.extend_from_slice(args);
    psm_cli::run(Cli::try_parse_from(argv).unwrap()).await
}

fn ttl_of(i: usize) -> Option<u64> {
    [None, Some(100), Some(3600), Some(86_400 * 30)][i % 4]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_file_imports_into_redis_with_every_session_and_its_ttl() {
    let source = Backing::file();
    let data = source.data_dir().to_str().unwrap().to_owned();
    let (settings, _) = source.settings();
    let stores = Stores::open(&settings, None).await.unwrap();
    let count = 60;
    for i in 0..count {
        stores
            .manager
            .store_permissions(
                &format!("sess_{i}"),
                &format!("user \"{}\" ünï", i % 7),
                [format!("perm:{i}"), "read".into(), "quote'd\\x".into()],
                ttl_of(i),
                Some(json!({"i": i, "text": "'; DROP TABLE x; --", "nested": {"a": [1, 2]}})),
            )
            .await
            .unwrap();
    }
    stores.close().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.jsonl");
    let out = file.to_str().unwrap();
    assert_eq!(
        psm(&["--data-dir", &data, "export", "-o", out])
            .await
            .unwrap(),
        exit::OK
    );
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), count);

    let prefix = format!("{}:", unique("psmimport"));
    let redis = with_param(&server_url("PSM_REDIS_URL"), "key_prefix", &prefix);
    assert_eq!(
        psm(&["--store", &redis, "import", "-i", out])
            .await
            .unwrap(),
        exit::OK
    );

    let source = PermissionStorageManager::builder()
        .url(format!("file://{data}"))
        .build()
        .await
        .unwrap();
    let target = PermissionStorageManager::from_url(&redis).await.unwrap();
    for i in 0..count {
        let id = format!("sess_{i}");
        let a = source.get_session_info(&id).await.unwrap().unwrap();
        let b = target.get_session_info(&id).await.unwrap().unwrap();
        assert_eq!(a.data.user_id, b.data.user_id);
        assert_eq!(a.data.permissions, b.data.permissions);
        assert_eq!(a.data.metadata, b.data.metadata);
        assert_eq!(b.provider, "redis");
        match (a.ttl_remaining, b.ttl_remaining) {
            (None, None) => {}
            // Whole seconds rounded up, read a moment apart: the same, or one apart.
            (Some(x), Some(y)) => assert!(x.abs_diff(y) <= 2, "{id}: {x} vs {y}"),
            other => panic!("{id}: ttl {other:?}"),
        }
    }
    assert_eq!(
        target.list_sessions(None, 1000, 0).await.unwrap().len(),
        count
    );

    // A bad line fails the whole import and writes nothing.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"session_id\":\"bad id\",\"user_id\":\"u\",\"permissions\":[\"a\"],\"expires_at\":null}}\n",
            lines.lines().next().unwrap().replace("sess_0", "sess_new")
        ),
    )
    .unwrap();
    let e = psm(&["--store", &redis, "import", "-i", bad.to_str().unwrap()])
        .await
        .unwrap_err();
    assert_eq!(e.code(), exit::INVALID, "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(target.get_permissions("sess_new").await.unwrap().is_none());

    crate::support::purge_redis_prefix(&server_url("PSM_REDIS_URL"), &prefix).await;
    source.close().await.unwrap();
    target.close().await.unwrap();
}
