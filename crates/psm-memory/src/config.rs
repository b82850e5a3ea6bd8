//! The memory provider's configuration (the seed's `MemoryProvider` config keys).

use std::time::Duration;

use psm_core::{Error, Result};
use psm_tables::TableConfig;
pub use psm_tables::{DEFAULT_SHARDS, MAX_SHARDS};
use serde_json::Value;

use crate::PROVIDER;

/// The sweeper's default period: the seed's `cleanup_interval` of 60 seconds.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// The longest accepted sweeper period (one year), in seconds.
pub const MAX_CLEANUP_INTERVAL_SECS: u64 = 31_536_000;

/// Configuration of a [`MemoryStore`](crate::MemoryStore).
///
/// Build it with struct update syntax over [`Default`], or from the seed's JSON keys with
/// [`MemoryConfig::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// How often the background sweeper removes expired sessions (seed key `cleanup_interval`, in
    /// seconds; default 60 s). `None` (or a zero duration) disables the sweeper; expired sessions
    /// are then still invisible to every call and are removed by [`MemoryStore::cleanup`](crate::MemoryStore::cleanup).
    pub cleanup_interval: Option<Duration>,
    /// The most live sessions the store holds (seed key `max_sessions`); `None` is unlimited.
    /// A new session beyond it fails with `StorageQuotaExceeded` after expired sessions are purged.
    pub max_sessions: Option<usize>,
    /// Whether [`MemoryStats::total_operations`](crate::MemoryStats::total_operations) is counted
    /// (seed key `enable_monitoring`; default `true`).
    pub enable_monitoring: bool,
    /// The number of lock shards (default 64), rounded up to a power of two and clamped to
    /// 1 ..= 65,536. More shards mean less lock contention and a little more fixed memory.
    pub shards: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            cleanup_interval: Some(DEFAULT_CLEANUP_INTERVAL),
            max_sessions: None,
            enable_monitoring: true,
            shards: DEFAULT_SHARDS,
        }
    }
}

impl MemoryConfig {
    /// Reads the seed's configuration object: `cleanup_interval` (whole seconds, 0 disables the
    /// sweeper), `max_sessions` (positive integer or `null` for unlimited), `enable_monitoring`
    /// (boolean) and `shards` (1 to 65,536). Missing keys keep their defaults; `null` as the whole
    /// config means all defaults.
    ///
    /// # Errors
    /// [`ErrorKind::ProviderConfiguration`](psm_core::ErrorKind::ProviderConfiguration), naming the
    /// key, for an unknown key, a value of the wrong type or a value out of range.
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut cfg = Self::default();
        let map = match v {
            Value::Null => return Ok(cfg),
            Value::Object(map) => map,
            _ => {
                return Err(Error::configuration(
                    "memory provider config must be a json object",
                ));
            }
        };
        for (key, value) in map {
            match key.as_str() {
                "cleanup_interval" => {
                    cfg.cleanup_interval = match value {
                        Value::Null => None,
                        v => match uint(key, v)? {
                            0 => None,
                            s if s > MAX_CLEANUP_INTERVAL_SECS => {
                                return Err(bad(key, "must be at most 31536000 seconds"));
                            }
                            s => Some(Duration::from_secs(s)),
                        },
                    };
                }
                "max_sessions" => {
                    cfg.max_sessions = match value {
                        Value::Null => None,
                        v => match uint(key, v)? {
                            0 => return Err(bad(key, "must be at least 1 (or null for no limit)")),
                            n => Some(usize::try_from(n).map_err(|_| bad(key, "is too large"))?),
                        },
                    };
                }
                "enable_monitoring" => {
                    cfg.enable_monitoring = value
                        .as_bool()
                        .ok_or_else(|| bad(key, "must be a boolean"))?;
                }
                "shards" => {
                    let n = uint(key, value)?;
                    if n == 0 || n > MAX_SHARDS as u64 {
                        return Err(bad(key, "must be between 1 and 65536"));
                    }
                    cfg.shards = usize::try_from(n).map_err(|_| bad(key, "is too large"))?;
                }
                _ => {
                    return Err(Error::configuration(format!(
                        "unknown memory provider config key `{key}`"
                    ))
                    .with_detail("key", key));
                }
            }
        }
        Ok(cfg)
    }

    /// The shard count actually used: a power of two within 1 ..= [`MAX_SHARDS`].
    pub fn effective_shards(&self) -> usize {
        self.table_config().effective_shards()
    }

    /// The session table's share of the configuration.
    pub(crate) fn table_config(&self) -> TableConfig {
        TableConfig {
            max_sessions: self.max_sessions,
            enable_monitoring: self.enable_monitoring,
            shards: self.shards,
            provider: PROVIDER,
        }
    }

    /// The sweeper period actually used (`None` when disabled).
    pub fn effective_cleanup_interval(&self) -> Option<Duration> {
        self.cleanup_interval.filter(|d| !d.is_zero())
    }
}

fn uint(key: &str, v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| bad(key, "must be a non-negative integer"))
}

fn bad(key: &str, what: &str) -> Error {
    Error::configuration(format!("memory provider config key `{key}` {what}"))
        .with_detail("key", key)
}

#[cfg(test)]
mod tests {
    use psm_core::ErrorKind;
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let d = MemoryConfig::default();
        assert_eq!(d.cleanup_interval, Some(Duration::from_secs(60)));
        assert_eq!(d.max_sessions, None);
        assert!(d.enable_monitoring);
        assert_eq!(d.effective_shards(), 64);
        assert_eq!(MemoryConfig::from_json(&json!({})).unwrap(), d);
        assert_eq!(MemoryConfig::from_json(&Value::Null).unwrap(), d);
    }

    #[test]
    fn reads_every_seed_key() {
        let c = MemoryConfig::from_json(
            &json!({"cleanup_interval": 5, "max_sessions": 10000, "enable_monitoring": false, "shards": 3}),
        )
        .unwrap();
        assert_eq!(c.cleanup_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.max_sessions, Some(10_000));
        assert!(!c.enable_monitoring);
        assert_eq!(c.shards, 3);
        assert_eq!(c.effective_shards(), 4);
        let off =
            MemoryConfig::from_json(&json!({"cleanup_interval": 0, "max_sessions": null})).unwrap();
        assert_eq!(off.effective_cleanup_interval(), None);
        assert_eq!(off.max_sessions, None);
    }

    #[test]
    fn rejects_unknown_keys_and_wrong_types_naming_the_key() {
        let cases = [
            (json!({"max_session": 1}), "max_session"),
            (json!({"cleanup_interval": "60"}), "cleanup_interval"),
            (json!({"cleanup_interval": -1}), "cleanup_interval"),
            (json!({"cleanup_interval": 1.5}), "cleanup_interval"),
            (json!({"cleanup_interval": 31_536_001}), "cleanup_interval"),
            (json!({"max_sessions": 0}), "max_sessions"),
            (json!({"max_sessions": true}), "max_sessions"),
            (json!({"enable_monitoring": 1}), "enable_monitoring"),
            (json!({"shards": 0}), "shards"),
            (json!({"shards": 65_537}), "shards"),
        ];
        for (v, key) in cases {
            let e = MemoryConfig::from_json(&v).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{v}");
            assert_eq!(e.detail("key"), Some(key), "{v}");
            assert!(e.message().contains(key), "{v}");
        }
        let e = MemoryConfig::from_json(&json!([1])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
    }

    #[test]
    fn shard_counts_are_clamped_powers_of_two() {
        let with = |shards| {
            MemoryConfig {
                shards,
                ..MemoryConfig::default()
            }
            .effective_shards()
        };
        assert_eq!(with(0), 1);
        assert_eq!(with(1), 1);
        assert_eq!(with(100), 128);
        assert_eq!(with(usize::MAX), MAX_SHARDS);
    }
}
