//! Fuzz properties for the PostgreSQL configuration parsers (JSON and URL), run by
//! `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many. A config is
//! either accepted and valid, or refused with `ProviderConfiguration`; the password never shows.

use proptest::prelude::*;
use psm_core::ErrorKind;
use psm_core::testkit::fuzz::{config, config_object};
use serde_json::{Value, json};

use crate::{MAX_DURATION_SECS, PostgresConfig, SslMode, validate_schema};

const KEYS: &[&str] = &[
    "url",
    "host",
    "port",
    "user",
    "username",
    "password",
    "dbname",
    "database",
    "schema",
    "pool_size",
    "max_connections",
    "connect_timeout",
    "wait_timeout",
    "pool_timeout",
    "statement_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "query_timeout",
    "sslmode",
    "ssl_mode",
    "sslrootcert",
    "retry_attempts",
    "retry_delay",
    "retry_max_delay",
    "max_retry_delay",
    "application_name",
    "recycle_check",
    "max_query_bytes",
    "max_query_params",
];

const PASSWORD: &str = "Sekr1t-pa55word";

/// What every accepted config satisfies.
fn check_accepted(cfg: &PostgresConfig) -> Result<(), TestCaseError> {
    prop_assert!(cfg.validate().is_ok());
    prop_assert!(validate_schema(&cfg.schema).is_ok());
    prop_assert!(cfg.port > 0);
    prop_assert!((1..=10_000).contains(&cfg.pool_size));
    for d in [
        cfg.connect_timeout,
        cfg.wait_timeout,
        cfg.keepalives_idle,
        cfg.keepalives_interval,
    ] {
        prop_assert!(d.as_secs_f64() <= MAX_DURATION_SECS, "{:?}", d);
    }
    prop_assert_eq!(SslMode::parse(cfg.sslmode.as_str()).ok(), Some(cfg.sslmode));
    let _ = cfg.call_timeout();
    prop_assert!(!cfg.effective_dbname().is_empty());
    let debug = format!("{cfg:?}");
    prop_assert!(!debug.contains(PASSWORD));
    Ok(())
}

fn check_refused(e: &psm_core::Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            e.kind(),
            ErrorKind::ProviderConfiguration | ErrorKind::ProviderNotSupported
        ),
        "{:?}: {}",
        e.kind(),
        e
    );
    prop_assert!(!e.to_string().contains(PASSWORD));
    let debug = format!("{e:?}");
    prop_assert!(!debug.contains(PASSWORD));
    Ok(())
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec!["postgres", "postgresql", "POSTGRES", "redis", "file"]);
    let userinfo = prop::sample::select(vec![
        "",
        "u@",
        ":@",
        "u:Sekr1t-pa55word@",
        ":Sekr1t-pa55word@",
        "a%zz:b@",
        "%C3%A9@",
    ]);
    let host = prop::sample::select(vec![
        "",
        "h",
        "127.0.0.1",
        "[::1]",
        "[::1",
        "ex ample",
        "h.local",
    ]);
    let port = prop::sample::select(vec!["", ":", ":0", ":5432", ":65535", ":65536", ":x"]);
    let path = prop::sample::select(vec![
        "", "/", "/db", "/a/b", "/a%2Fb", "/%FF", "/.", "/%2E%2E",
    ]);
    let query = prop::collection::vec(
        (
            prop::sample::select(KEYS),
            "[a-z0-9._:-]{0,8}|-?[0-9]{1,6}(\\.[0-9]{1,4})?(e-?[0-9]{1,3})?",
        ),
        0..3,
    )
    .prop_map(|kv| {
        if kv.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("?{}", pairs.join("&"))
        }
    });
    prop_oneof![
        1 => any::<String>(),
        9 => (scheme, userinfo, host, port, path, query)
            .prop_map(|(s, u, h, p, path, q)| format!("{s}://{u}{h}{p}{path}{q}")),
    ]
}

proptest! {
    #![proptest_config(config(2))]

    #[test]
    fn json_configs(mut v in config_object(KEYS), with_password in any::<bool>()) {
        if let (Value::Object(m), true) = (&mut v, with_password) {
            m.insert("password".into(), json!(PASSWORD));
        }
        match PostgresConfig::from_json(&v) {
            Ok(cfg) => check_accepted(&cfg)?,
            Err(e) => check_refused(&e)?,
        }
    }

    #[test]
    fn urls(url in url()) {
        let from_url = PostgresConfig::from_url(&url);
        let from_json = PostgresConfig::from_json(&json!({ "url": url }));
        match (&from_url, &from_json) {
            (Ok(a), Ok(b)) => {
                check_accepted(a)?;
                prop_assert!(a == b, "from_url and from_json disagree");
            }
            (Err(a), Err(b)) => {
                check_refused(a)?;
                check_refused(b)?;
            }
            _ => prop_assert!(false, "from_url and from_json disagree on acceptance"),
        }
    }

    #[test]
    fn url_parts_round_trip(
        user in "[a-z][a-z0-9_]{0,8}",
        host in "[a-z][a-z0-9]{0,12}(\\.[a-z]{2,5})?|127\\.0\\.0\\.[0-9]{1,2}",
        port in 1_u16..,
        dbname in prop::option::of("[a-z][a-z0-9_]{0,10}"),
        schema in "[a-z][a-z0-9_]{0,10}",
        pool in 1_usize..=10_000,
    ) {
        prop_assume!(!schema.starts_with("pg_"));
        let path = dbname.as_ref().map_or(String::new(), |d| format!("/{d}"));
        let url = format!("postgres://{user}:{PASSWORD}@{host}:{port}{path}?schema={schema}&pool_size={pool}");
        let cfg = PostgresConfig::from_url(&url).unwrap();
        prop_assert_eq!(&cfg.user, &user);
        prop_assert_eq!(cfg.password.as_ref().map(|p| p.expose()), Some(PASSWORD));
        prop_assert_eq!(&cfg.host, &host);
        prop_assert_eq!(cfg.port, port);
        prop_assert_eq!(cfg.dbname.as_deref(), dbname.as_deref());
        prop_assert_eq!(&cfg.schema, &schema);
        prop_assert_eq!(cfg.pool_size, pool);
        check_accepted(&cfg)?;
    }
}
