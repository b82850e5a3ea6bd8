//! Fuzz properties for the memory provider's configuration parser (from JSON and from a
//! `memory://` URL), run by `cargo xtask fuzz`.
//!
//! Under a plain `cargo test` each property runs a few hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many.

use proptest::prelude::*;
use psm_core::testkit::fuzz::{config, config_object};
use psm_core::{ErrorKind, util::parse_provider_url};
use serde_json::Value;

use crate::{MAX_SHARDS, MemoryConfig};

const KEYS: &[&str] = &[
    "cleanup_interval",
    "max_sessions",
    "enable_monitoring",
    "shards",
];

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
