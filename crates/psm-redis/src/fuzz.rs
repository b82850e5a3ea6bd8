//! Fuzz properties for the Redis configuration parsers (JSON and URL), run by `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many. A config is
//! either accepted and valid, or refused with `ProviderConfiguration`; the password never shows.

use std::time::Duration;

use proptest::prelude::*;
use psm_core::ErrorKind;
use serde_json::{Map, Value, json};

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

/// The configuration of a property that costs `cost` times a cheap parser call: `PSM_FUZZ_CASES`
/// (set by `cargo xtask fuzz`) divided by `cost`, or 256 divided by `cost` under a plain `cargo test`.
fn config(cost: u32) -> ProptestConfig {
    let base = std::env::var("PSM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / cost).max(8),
        ..ProptestConfig::default()
    }
}

/// Values near every rule a config key has: booleans and their spellings, integers at and around
/// zero and the type limits, fractional and tiny seconds, numeric strings, and wrong types.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0_i64),
            Just(1),
            Just(-1),
            Just(65_535),
            Just(65_536),
            Just(86_400),
            Just(86_401),
            any::<i64>()
        ]
        .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(-0.0_f64),
            Just(1e-300),
            Just(1e-10),
            Just(0.0005),
            Just(0.5),
            Just(86_400.0),
            Just(86_400.5),
            any::<f64>()
        ]
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "",
            "0",
            "-0",
            "1",
            "-1",
            "1e-10",
            "-1e-10",
            "0.0",
            "-0.0",
            "NaN",
            "inf",
            "1e400",
            "0600",
            "0o600",
            "true",
            "false",
            "on",
            "off",
            "yes",
            "required",
            "none",
            "verify-full",
            "psm",
            "psm:",
            "pg_x",
            "a b",
            "{x}",
            "localhost",
            "redis://h",
            "postgres://u@h/d",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(Value::from),
        prop::collection::btree_map("[a-z_]{1,12}", any::<u16>(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())),
    ]
}

/// A config object of known keys (and now and then an unknown one) with values from [`value`].
fn config_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        9 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ];
    prop_oneof![
        1 => value(),
        9 => prop::collection::btree_map(key, value(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
    ]
}

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
