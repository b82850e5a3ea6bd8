//! Shared strategies of the fuzz properties (`cargo xtask fuzz` runs every test under a `fuzz::`
//! path): the case count every property takes from `PSM_FUZZ_CASES`, and the JSON values and
//! config objects the providers' configuration parsers are fed. One copy here, so the providers'
//! config fuzzing probes the same edges.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// The configuration of a property that costs `cost` times a cheap parser call: `PSM_FUZZ_CASES`
/// (set by `cargo xtask fuzz`) divided by `cost`, or 256 divided by `cost` under a plain `cargo test`.
pub fn config(cost: u32) -> ProptestConfig {
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
pub fn value() -> impl Strategy<Value = Value> {
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
pub fn config_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
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
