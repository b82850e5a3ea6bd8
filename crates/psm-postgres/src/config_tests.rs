#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use psm_core::{ErrorKind, util::parse_provider_url};
use serde_json::json;

use super::*;

fn err(v: serde_json::Value) -> Error {
    PostgresConfig::from_json(&v).expect_err("config must be rejected")
}

#[test]
fn defaults_apply_for_null_and_empty() {
    for v in [json!(null), json!({})] {
        let c = PostgresConfig::from_json(&v).unwrap();
        assert_eq!(c, PostgresConfig::default());
    }
    let d = PostgresConfig::default();
    assert_eq!(d.schema, "psm");
    assert_eq!(d.sslmode, SslMode::Prefer);
    assert_eq!(d.effective_dbname(), "postgres");
    assert_eq!(d.statement_timeout, Some(Duration::from_secs(30)));
}

#[test]
fn every_key_is_read() {
    let c = PostgresConfig::from_json(&json!({
        "host": "db.local",
        "port": 6432,
        "user": "app",
        "password": "s3cret",
        "dbname": "appdb",
        "schema": "tenant_1",
        "pool_size": 7,
        "connect_timeout": 1.5,
        "wait_timeout": "0.25",
        "statement_timeout": 2,
        "keepalives": false,
        "keepalives_idle": 30,
        "sslmode": "verify-full",
        "sslrootcert": "/etc/psm/root.pem",
        "retry_attempts": 5,
        "retry_delay": 0.05,
        "retry_max_delay": 1,
        "application_name": "psm-test",
        "recycle_check": "verified",
        "max_query_bytes": 1024,
        "max_query_params": 10,
    }))
    .unwrap();
    assert_eq!(c.host, "db.local");
    assert_eq!(c.port, 6432);
    assert_eq!(c.user, "app");
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(c.effective_dbname(), "appdb");
    assert_eq!(c.schema, "tenant_1");
    assert_eq!(c.pool_size, 7);
    assert_eq!(c.connect_timeout, Duration::from_millis(1500));
    assert_eq!(c.wait_timeout, Duration::from_millis(250));
    assert_eq!(c.statement_timeout, Some(Duration::from_secs(2)));
    assert!(!c.keepalives);
    assert_eq!(c.keepalives_idle, Duration::from_secs(30));
    assert_eq!(c.sslmode, SslMode::VerifyFull);
    assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/psm/root.pem")));
    assert_eq!(c.retry_attempts, 5);
    assert_eq!(c.retry_delay, Duration::from_millis(50));
    assert_eq!(c.retry_max_delay, Duration::from_secs(1));
    assert_eq!(c.application_name, "psm-test");
    assert_eq!(c.recycle_check, RecycleCheck::Verified);
    assert_eq!(c.max_query_bytes, 1024);
    assert_eq!(c.max_query_params, 10);
}

#[test]
fn aliases_and_disabling_values() {
    let c = PostgresConfig::from_json(&json!({
        "max_connections": 3,
        "username": "u",
        "database": "d",
        "statement_timeout": 0,
    }))
    .unwrap();
    assert_eq!(c.pool_size, 3);
    assert_eq!(c.user, "u");
    assert_eq!(c.effective_dbname(), "d");
    assert_eq!(c.statement_timeout, None);
    let c = PostgresConfig::from_json(&json!({ "statement_timeout": null })).unwrap();
    assert_eq!(c.statement_timeout, None);
}

#[test]
fn bad_values_name_their_key() {
    for (v, key) in [
        (json!({ "port": 0 }), "port"),
        (json!({ "port": 70000 }), "port"),
        (json!({ "port": "x" }), "port"),
        (json!({ "pool_size": 0 }), "pool_size"),
        (json!({ "max_connections": -1 }), "max_connections"),
        (json!({ "connect_timeout": 0 }), "connect_timeout"),
        (json!({ "wait_timeout": -1 }), "wait_timeout"),
        (json!({ "statement_timeout": "soon" }), "statement_timeout"),
        (json!({ "retry_delay": 1e9 }), "retry_delay"),
        (json!({ "keepalives": "maybe" }), "keepalives"),
        (json!({ "sslmode": "verify-ca" }), "sslmode"),
        (json!({ "sslmode": "allow" }), "sslmode"),
        (json!({ "sslrootcert": "/x.pem" }), "sslrootcert"),
        (json!({ "retry_attempts": 1000 }), "retry_attempts"),
        (json!({ "recycle_check": "slow" }), "recycle_check"),
        (
            json!({ "application_name": "has space" }),
            "application_name",
        ),
        (json!({ "host": 5 }), "host"),
        (json!({ "password": 5 }), "password"),
        (json!({ "max_query_params": 70000 }), "max_query_params"),
        (json!({ "max_query_bytes": 0 }), "max_query_bytes"),
        (json!({ "url": 5 }), "url"),
    ] {
        let e = err(v.clone());
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{v}");
        assert_eq!(e.detail("key"), Some(key), "{v}: {e}");
    }
    let e = err(json!([]));
    assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
}

#[test]
fn unknown_keys_are_named() {
    let e = err(json!({ "hostname": "x" }));
    assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
    assert_eq!(e.detail("key"), Some("hostname"));
    assert!(e.message().contains("hostname"));
}

#[test]
fn schema_names_are_identifiers() {
    for good in ["psm", "_x", "a1_b2", &"a".repeat(63)] {
        assert!(validate_schema(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "1abc",
        "Psm",
        "psm-x",
        "psm x",
        "psm\"; DROP SCHEMA public; --",
        "pg_catalog",
        "ü",
        &"a".repeat(64),
    ] {
        let e = validate_schema(bad).unwrap_err();
        assert_eq!(e.detail("key"), Some("schema"), "{bad:?}");
        let e = err(json!({ "schema": bad }));
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
    }
}

#[test]
fn urls_parse_with_query_keys() {
    let c = PostgresConfig::from_url(
        "postgres://app:p%40ss@db.example:5433/appdb?schema=x&sslmode=require&pool_size=3&connect_timeout=0.5",
    )
    .unwrap();
    assert_eq!(c.host, "db.example");
    assert_eq!(c.port, 5433);
    assert_eq!(c.user, "app");
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("p@ss"));
    assert_eq!(c.effective_dbname(), "appdb");
    assert_eq!(c.schema, "x");
    assert_eq!(c.sslmode, SslMode::Require);
    assert_eq!(c.pool_size, 3);
    assert_eq!(c.connect_timeout, Duration::from_millis(500));

    let c = PostgresConfig::from_url("postgresql://localhost").unwrap();
    assert_eq!(c.host, "localhost");
    assert_eq!(c.port, 5432);

    let c = PostgresConfig::from_url("postgres://[::1]:5432/db").unwrap();
    assert_eq!(c.host, "::1");

    assert_eq!(
        PostgresConfig::from_url("redis://localhost")
            .unwrap_err()
            .kind(),
        ErrorKind::ProviderConfiguration
    );
    assert_eq!(
        PostgresConfig::from_url("postgres://h/db?bogus=1")
            .unwrap_err()
            .detail("key"),
        Some("bogus")
    );
    assert_eq!(
        PostgresConfig::from_url("postgres://h/db?schema=Bad")
            .unwrap_err()
            .detail("key"),
        Some("schema")
    );
}

#[test]
fn accepts_exactly_the_map_parse_provider_url_produces() {
    let url = "postgres://user:pw@host:5432/db?schema=x&sslmode=require";
    let map = parse_provider_url(url).unwrap().into_config();
    let c = PostgresConfig::from_json(&serde_json::Value::Object(map)).unwrap();
    assert_eq!(c.host, "host");
    assert_eq!(c.user, "user");
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
    assert_eq!(c.effective_dbname(), "db");
    assert_eq!(c.schema, "x");
    assert_eq!(c.sslmode, SslMode::Require);

    // Explicit keys override what `url` says.
    let c = PostgresConfig::from_json(&json!({ "url": url, "port": 6000, "schema": "y" })).unwrap();
    assert_eq!(c.port, 6000);
    assert_eq!(c.schema, "y");
    assert_eq!(c.host, "host");
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let c = PostgresConfig::from_url("postgres://app:TopSecret99@h/db").unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("TopSecret99"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    for bad in [
        "postgres://app:TopSecret99@h/db?bogus=1",
        "postgres://app:TopSecret99@h/db?schema=Nope",
        "postgres://app:TopSecret99@h:99999/db",
        "postgres://app:TopSecret99@h/db#frag",
    ] {
        let e = PostgresConfig::from_url(bad).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("TopSecret99"), "{shown}");
    }
    let e = err(json!({ "password": "TopSecret99", "port": "x" }));
    assert!(!format!("{e} {e:?}").contains("TopSecret99"));
}

#[test]
fn driver_config_carries_the_settings() {
    let c = PostgresConfig::from_json(&json!({
        "host": "h", "port": 1234, "user": "u", "password": "pw", "dbname": "d",
        "schema": "s1", "statement_timeout": 1.5, "connect_timeout": 2,
        "keepalives_idle": 9, "sslmode": "disable",
    }))
    .unwrap();
    let pg = crate::pool::driver_config(&c);
    assert_eq!(pg.get_ports(), &[1234]);
    assert_eq!(pg.get_user(), Some("u"));
    assert_eq!(pg.get_dbname(), Some("d"));
    assert_eq!(pg.get_password(), Some(&b"pw"[..]));
    assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(2)));
    assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(9));
    assert_eq!(
        pg.get_options(),
        Some(
            "-c search_path=s1,public -c standard_conforming_strings=on -c statement_timeout=1500"
        )
    );
    assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
}

#[test]
fn the_four_newest_keys_are_read_from_json_and_urls() {
    let d = PostgresConfig::default();
    assert_eq!(d.query_timeout, Some(Duration::from_secs(60)));
    assert_eq!(d.tcp_user_timeout, Some(Duration::from_secs(30)));
    assert_eq!(d.keepalives_interval, Duration::from_secs(10));
    assert_eq!(d.keepalives_retries, 3);

    let c = PostgresConfig::from_json(&json!({
        "query_timeout": 7.5,
        "tcp_user_timeout": "2",
        "keepalives_interval": 0.5,
        "keepalives_retries": 9,
    }))
    .unwrap();
    assert_eq!(c.query_timeout, Some(Duration::from_millis(7500)));
    assert_eq!(c.tcp_user_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.keepalives_interval, Duration::from_millis(500));
    assert_eq!(c.keepalives_retries, 9);

    // URL query values arrive as strings.
    let c = PostgresConfig::from_url(
        "postgres://h/db?query_timeout=3&tcp_user_timeout=0.25&keepalives_interval=4&keepalives_retries=1",
    )
    .unwrap();
    assert_eq!(c.query_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.tcp_user_timeout, Some(Duration::from_millis(250)));
    assert_eq!(c.keepalives_interval, Duration::from_secs(4));
    assert_eq!(c.keepalives_retries, 1);
}

#[test]
fn query_timeout_and_tcp_user_timeout_turn_off_with_zero_or_null() {
    for off in [json!(0), json!(null), json!("0")] {
        let c = PostgresConfig::from_json(&json!({
            "query_timeout": off.clone(),
            "tcp_user_timeout": off.clone(),
        }))
        .unwrap();
        assert_eq!(c.query_timeout, None, "{off}");
        assert_eq!(c.tcp_user_timeout, None, "{off}");
        // Off means: not passed to the driver (the system default stays).
        assert_eq!(crate::pool::driver_config(&c).get_tcp_user_timeout(), None);
    }
}

#[test]
fn the_four_newest_keys_reject_bad_values_by_name() {
    for (v, key) in [
        (json!({ "query_timeout": -1 }), "query_timeout"),
        (json!({ "query_timeout": "soon" }), "query_timeout"),
        (json!({ "query_timeout": 86_401 }), "query_timeout"),
        (json!({ "tcp_user_timeout": true }), "tcp_user_timeout"),
        (json!({ "tcp_user_timeout": -0.5 }), "tcp_user_timeout"),
        (json!({ "keepalives_interval": 0 }), "keepalives_interval"),
        (
            json!({ "keepalives_interval": null }),
            "keepalives_interval",
        ),
        (json!({ "keepalives_interval": "x" }), "keepalives_interval"),
        (json!({ "keepalives_retries": 0 }), "keepalives_retries"),
        (json!({ "keepalives_retries": 1001 }), "keepalives_retries"),
        (json!({ "keepalives_retries": 1.5 }), "keepalives_retries"),
        (json!({ "keepalives_retries": -3 }), "keepalives_retries"),
    ] {
        let e = err(v.clone());
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{v}");
        assert_eq!(e.detail("key"), Some(key), "{v}: {e}");
    }
}

#[test]
fn the_call_bound_follows_statement_timeout_then_query_timeout() {
    // statement_timeout on: its value plus the margin, whatever query_timeout says.
    let c =
        PostgresConfig::from_json(&json!({ "statement_timeout": 2, "query_timeout": 1 })).unwrap();
    assert_eq!(
        c.call_timeout(),
        Some(Duration::from_secs(2) + QUERY_TIMEOUT_MARGIN)
    );
    // statement_timeout off: query_timeout alone.
    let c = PostgresConfig::from_json(&json!({ "statement_timeout": 0, "query_timeout": 1.5 }))
        .unwrap();
    assert_eq!(c.call_timeout(), Some(Duration::from_millis(1500)));
    // Both off: unbounded.
    let c = PostgresConfig::from_json(&json!({ "statement_timeout": null, "query_timeout": 0 }))
        .unwrap();
    assert_eq!(c.call_timeout(), None);
}

#[test]
fn keepalive_and_tcp_user_timeout_settings_reach_the_driver() {
    let c = PostgresConfig::from_json(&json!({
        "keepalives": true,
        "keepalives_idle": 11,
        "keepalives_interval": 3,
        "keepalives_retries": 7,
        "tcp_user_timeout": 12.5,
    }))
    .unwrap();
    let pg = crate::pool::driver_config(&c);
    assert!(pg.get_keepalives());
    assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(11));
    assert_eq!(pg.get_keepalives_interval(), Some(Duration::from_secs(3)));
    assert_eq!(pg.get_keepalives_retries(), Some(7));
    assert_eq!(
        pg.get_tcp_user_timeout(),
        Some(&Duration::from_millis(12_500))
    );
    let off = PostgresConfig::from_json(&json!({ "keepalives": false })).unwrap();
    assert!(!crate::pool::driver_config(&off).get_keepalives());
}

#[test]
fn an_empty_database_name_is_refused() {
    // A regression from `cargo xtask fuzz`: `{"dbname": ""}` was accepted and connected to the
    // database named "".
    for v in [json!({ "dbname": "" }), json!({ "database": "" })] {
        assert_eq!(err(v).kind(), ErrorKind::ProviderConfiguration);
    }
    let c = PostgresConfig::from_json(&json!({ "dbname": null, "user": "u" })).unwrap();
    assert_eq!(c.effective_dbname(), "u");
}
