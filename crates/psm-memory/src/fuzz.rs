//! Fuzz properties for the memory provider's configuration parser (from JSON and from a
//! `memory://` URL), run by `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many.

use proptest::prelude::*;
use psm_core::{ErrorKind, util::parse_provider_url};
use serde_json::{Map, Value};

use crate::{MAX_SHARDS, MemoryConfig};

const KEYS: &[&str] = &[
    "cleanup_interval",
    "max_sessions",
    "enable_monitoring",
    "shards",
];

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

fn check(result: psm_core::Result<MemoryConfig>) -> Result<(), TestCaseError> {
    match result {
        Ok(cfg) => {
            prop_assert!((1..=MAX_SHARDS).contains(&cfg.shards));
            let shards = cfg.effective_shards();
            prop_assert!(shards.is_power_of_two() && shards <= MAX_SHARDS);
            prop_assert!(cfg.max_sessions != Some(0));
            if let Some(d) = cfg.effective_cleanup_interval() {
                prop_assert!(!d.is_zero() && d.as_secs() <= 31_536_000);
            }
        }
        Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn json_configs(v in config_object(KEYS)) {
        check(MemoryConfig::from_json(&v))?;
    }

    #[test]
    fn url_configs(
        query in prop::collection::vec(
            (prop::sample::select(KEYS), "[a-z]{0,5}|-?[0-9]{1,7}|true|false|null"),
            0..4,
        ),
    ) {
        let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("memory:///?{}", pairs.join("&"));
        match parse_provider_url(&url) {
            Ok(u) => check(MemoryConfig::from_json(&Value::Object(u.into_config())))?,
            // A repeated key is the URL parser's to refuse.
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ProviderConfiguration),
        }
    }

    #[test]
    fn accepted_values_are_kept(
        interval in 0_u64..=31_536_000,
        max in prop::option::of(1_u64..1_000_000),
        monitoring in any::<bool>(),
        shards in 1_u64..=65_536,
    ) {
        let cfg = MemoryConfig::from_json(&serde_json::json!({
            "cleanup_interval": interval,
            "max_sessions": max,
            "enable_monitoring": monitoring,
            "shards": shards,
        }))
        .unwrap();
        prop_assert_eq!(cfg.effective_cleanup_interval().map(|d| d.as_secs()), (interval > 0).then_some(interval));
        prop_assert_eq!(cfg.max_sessions.map(|m| m as u64), max);
        prop_assert_eq!(cfg.enable_monitoring, monitoring);
        prop_assert_eq!(cfg.shards as u64, shards);
    }
}
