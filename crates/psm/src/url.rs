//! Choosing a provider by URL (`memory://`, `file://`, `redis://`, `rediss://`, `postgres://`).
//!
//! psm-core parses the URL into a scheme enum that is always compiled and a config map; here the
//! scheme becomes a provider name for the registry, so a scheme whose feature is off fails with
//! `ProviderNotSupported` naming the feature, and explicit config overrides what the URL says.

use psm_core::{
    Result,
    util::{merge_configs_in_place, parse_provider_url},
};
use serde_json::Value;

/// The provider name and configuration a URL stands for, with `explicit` config merged over the
/// URL's own (explicit keys win).
///
/// Malformed URLs fail with `ProviderConfiguration`, unknown schemes with `ProviderNotSupported`.
pub(crate) fn resolve(url: &str, explicit: Option<&Value>) -> Result<(&'static str, Value)> {
    let (scheme, config) = parse_provider_url(url)?.into_parts();
    let mut config = Value::Object(config);
    if let Some(explicit) = explicit {
        merge_configs_in_place(&mut config, explicit);
    }
    Ok((scheme.provider_name(), config))
}

#[cfg(test)]
mod tests {
    use psm_core::ErrorKind;
    use serde_json::json;

    use super::*;

    #[test]
    fn memory_query_becomes_config_and_explicit_keys_win() {
        let (name, config) = resolve("memory://?max_sessions=10&cleanup_interval=5", None).unwrap();
        assert_eq!(name, "memory");
        assert_eq!(config["max_sessions"], json!(10));
        let (_, config) = resolve(
            "memory://?max_sessions=10",
            Some(&json!({"max_sessions": 3})),
        )
        .unwrap();
        assert_eq!(config["max_sessions"], json!(3));
    }

    #[test]
    fn every_known_scheme_resolves_to_its_provider() {
        for (url, provider) in [
            ("file:///tmp/psm", "file"),
            ("redis://localhost:6379", "redis"),
            ("rediss://localhost:6380", "redis"),
            ("postgres://u@localhost/db", "postgres"),
            ("postgresql://u@localhost/db", "postgres"),
        ] {
            assert_eq!(resolve(url, None).unwrap().0, provider, "{url}");
        }
    }

    #[test]
    fn garbage_is_a_configuration_error() {
        for bad in ["", "memory", "::", "not a url"] {
            assert_eq!(
                resolve(bad, None).unwrap_err().kind(),
                ErrorKind::ProviderConfiguration,
                "{bad:?}"
            );
        }
        assert_eq!(
            resolve("mysql://x", None).unwrap_err().kind(),
            ErrorKind::ProviderNotSupported
        );
    }
}
