//! Fuzz properties for the Redis configuration parsers (JSON and URL), run by `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many. A config is
//! either accepted and valid, or refused with `ProviderConfiguration`; the password never shows.

use std::time::Duration;

use proptest::prelude::*;
use psm_core::ErrorKind;
use psm_core::testkit::fuzz::{config, config_object};
use serde_json::{Value, json};

use crate::{RedisConfig, is_valid_key_prefix};

const KEYS: &[&str] = &[
    "url",
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "health_check_interval",
    "retry_on_timeout",
    "decode_responses",
    "key_prefix",
    "ssl",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "client_cache",
    "cluster",
    "pool_size",
];

const PASSWORD: &str = "Sekr1t-pa55word";

/// What every accepted config satisfies.
fn check_accepted(cfg: &RedisConfig) -> Result<(), TestCaseError> {
    prop_assert!(cfg.validate().is_ok());
    prop_assert!(cfg.port > 0);
    prop_assert!(is_valid_key_prefix(&cfg.key_prefix));
    prop_assert!(
        cfg.socket_timeout > Duration::ZERO,
        "{:?}",
        cfg.socket_timeout
    );
    prop_assert!(
        cfg.socket_connect_timeout > Duration::ZERO,
        "{:?}",
        cfg.socket_connect_timeout
    );
    prop_assert!(cfg.health_check_interval != Some(Duration::ZERO));
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
    let scheme = prop::sample::select(vec!["redis", "rediss", "REDIS", "postgres", "memory"]);
    let userinfo = prop::sample::select(vec![
        "",
        "u@",
        ":@",
        "u:Sekr1t-pa55word@",
        ":Sekr1t-pa55word@",
        "a%zz:b@",
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
    let port = prop::sample::select(vec![
        "", ":", ":0", ":6379", ":65535", ":65536", ":-1", ":x",
    ]);
    let path = prop::sample::select(vec![
        "",
        "/",
        "/0",
        "/15",
        "/16",
        "/255",
        "/256",
        "/4294967296",
        "/a",
        "/01",
        "//",
    ]);
    let query = prop::collection::vec(
        (
            prop::sample::select(KEYS),
            "[a-z0-9.:{}*-]{0,8}|-?[0-9]{1,6}(\\.[0-9]{1,4})?",
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
        match RedisConfig::from_json(&v) {
            Ok(cfg) => check_accepted(&cfg)?,
            Err(e) => check_refused(&e)?,
        }
    }

    #[test]
    fn urls(url in url()) {
        let from_url = RedisConfig::from_url(&url);
        let from_json = RedisConfig::from_json(&json!({ "url": url }));
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
        tls in any::<bool>(),
        user in prop::option::of("[a-z][a-z0-9]{0,8}"),
        host in "[a-z][a-z0-9]{0,12}(\\.[a-z]{2,5})?|127\\.0\\.0\\.[0-9]{1,2}",
        port in 1_u16..,
        db in 0_u8..16,
        prefix in "[a-z]{1,8}:",
    ) {
        let userinfo = user.as_ref().map_or_else(|| format!(":{PASSWORD}@"), |u| format!("{u}:{PASSWORD}@"));
        let scheme = if tls { "rediss" } else { "redis" };
        let url = format!("{scheme}://{userinfo}{host}:{port}/{db}?key_prefix={prefix}");
        let cfg = RedisConfig::from_url(&url).unwrap();
        prop_assert_eq!(&cfg.host, &host);
        prop_assert_eq!(cfg.port, port);
        prop_assert_eq!(cfg.db, db);
        prop_assert_eq!(cfg.username.as_deref(), user.as_deref());
        prop_assert_eq!(cfg.password.as_deref(), Some(PASSWORD));
        prop_assert_eq!(cfg.ssl, tls);
        prop_assert_eq!(&cfg.key_prefix, &prefix);
        check_accepted(&cfg)?;
    }
}
