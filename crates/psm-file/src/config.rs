//! The file provider's configuration: the seed's `FileProvider` keys plus the table's own.

use std::{path::PathBuf, time::Duration};

use psm_core::{Error, Result};
use serde_json::Value;

/// The seed's default storage directory.
pub const DEFAULT_STORAGE_DIR: &str = "./permission_storage";
/// The seed's default cleanup period (300 seconds).
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(300);
/// The seed's default number of backups kept.
pub const DEFAULT_MAX_BACKUP_FILES: usize = 5;
/// The most backups a store keeps.
pub const MAX_BACKUP_FILES: usize = 1000;
/// The default mode of new files: owner read and write only.
pub const DEFAULT_FILE_PERMISSIONS: u32 = 0o600;
/// Journal bytes written since the last snapshot below which a store never compacts.
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 16 << 20;
/// The longest accepted cleanup period (one year), in seconds.
pub const MAX_CLEANUP_INTERVAL_SECS: u64 = 31_536_000;

/// Configuration of a [`FileStorage`](crate::FileStorage).
///
/// Build it with [`FileConfig::new`] and struct update syntax, or from the seed's JSON keys with
/// [`FileConfig::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The directory that holds the store (seed key `storage_dir`). Created with mode 0700 when
    /// missing; an existing directory keeps its mode.
    pub storage_dir: PathBuf,
    /// How often expired sessions, token families and cache entries are removed, and (with
    /// `enable_backup`) how often a backup is taken when something changed (seed key
    /// `cleanup_interval`, seconds; default 300). `None` disables the background task.
    pub cleanup_interval: Option<Duration>,
    /// Whether backups are taken: at every compaction and every `cleanup_interval` when data
    /// changed (seed key `enable_backup`; default `true`).
    pub enable_backup: bool,
    /// How many backups are kept, newest first (seed key `max_backup_files`; default 5).
    pub max_backup_files: usize,
    /// The mode of every file the store creates (seed key `file_permissions`; default 0o600).
    /// Must include owner read and write.
    pub file_permissions: u32,
    /// Whether snapshots and backups are compressed with LZ4 (seed key `compress_files`; default
    /// `false`). The journal itself is never compressed: its records are small and written one
    /// batch at a time.
    pub compress_files: bool,
    /// The most live sessions the store holds; `None` is unlimited.
    pub max_sessions: Option<usize>,
    /// Whether operations are counted for the statistics (default `true`).
    pub enable_monitoring: bool,
    /// Lock shards of the in-memory index (default 64).
    pub shards: usize,
    /// The journal is compacted once the bytes written since the last snapshot exceed both this
    /// and the size of that snapshot (default 16 MiB), so disk use stays within about twice the
    /// live data plus this amount.
    pub compact_min_bytes: u64,
}

impl FileConfig {
    /// The defaults, storing in `storage_dir`.
    pub fn new(storage_dir: impl Into<PathBuf>) -> Self {
        Self {
            storage_dir: storage_dir.into(),
            ..Self::default()
        }
    }

    /// Reads the seed's configuration object: `storage_dir` (string), `cleanup_interval` (whole
    /// seconds, 0 or `null` disables), `enable_backup` (boolean), `max_backup_files` (1 to 1,000),
    /// `file_permissions` (an integer such as 384, or an octal string such as `"0600"`),
    /// `atomic_writes` (only `true` is accepted: every write is atomic and durable, there is no
    /// other mode), `compress_files` (boolean), plus `max_sessions`, `enable_monitoring`,
    /// `shards` and `compact_min_bytes`. Missing keys keep their defaults.
    ///
    /// # Errors
    /// `ProviderConfiguration`, naming the key, for an unknown key, a wrong type, a value out of
    /// range or `atomic_writes: false`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut cfg = Self::default();
        let map = match v {
            Value::Null => return Ok(cfg),
            Value::Object(map) => map,
            _ => {
                return Err(Error::configuration(
                    "file provider config must be a json object",
                ));
            }
        };
        for (key, value) in map {
            let key = key.as_str();
            match key {
                "storage_dir" => {
                    let s = value.as_str().ok_or_else(|| bad(key, "must be a string"))?;
                    if s.is_empty() || s.contains('\0') {
                        return Err(bad(key, "must be a non-empty path without NUL"));
                    }
                    cfg.storage_dir = PathBuf::from(s);
                }
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
                "enable_backup" => cfg.enable_backup = boolean(key, value)?,
                "max_backup_files" => {
                    let n = uint(key, value)?;
                    if n == 0 || n > MAX_BACKUP_FILES as u64 {
                        return Err(bad(key, "must be between 1 and 1000"));
                    }
                    cfg.max_backup_files =
                        usize::try_from(n).map_err(|_| bad(key, "is too large"))?;
                }
                "file_permissions" => cfg.file_permissions = mode(key, value)?,
                "atomic_writes" => {
                    if !boolean(key, value)? {
                        return Err(bad(
                            key,
                            "cannot be false: every write is journaled, fsynced and atomic",
                        ));
                    }
                }
                "compress_files" => cfg.compress_files = boolean(key, value)?,
                "max_sessions" => {
                    cfg.max_sessions = match value {
                        Value::Null => None,
                        v => match uint(key, v)? {
                            0 => return Err(bad(key, "must be at least 1 (or null for no limit)")),
                            n => Some(usize::try_from(n).map_err(|_| bad(key, "is too large"))?),
                        },
                    };
                }
                "enable_monitoring" => cfg.enable_monitoring = boolean(key, value)?,
                "shards" => {
                    let n = uint(key, value)?;
                    if n == 0 || n > 65_536 {
                        return Err(bad(key, "must be between 1 and 65536"));
                    }
                    cfg.shards = usize::try_from(n).map_err(|_| bad(key, "is too large"))?;
                }
                "compact_min_bytes" => cfg.compact_min_bytes = uint(key, value)?,
                _ => {
                    return Err(Error::configuration(format!(
                        "unknown file provider config key `{key}`"
                    ))
                    .with_detail("key", key));
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values a struct literal may have set out of range.
    ///
    /// # Errors
    /// `ProviderConfiguration` naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.storage_dir.as_os_str().is_empty() {
            return Err(bad("storage_dir", "must be a non-empty path"));
        }
        if self.file_permissions > 0o777 || self.file_permissions & 0o600 != 0o600 {
            return Err(bad(
                "file_permissions",
                "must be a mode within 0o777 that includes owner read and write (0o600)",
            ));
        }
        if self.max_backup_files == 0 || self.max_backup_files > MAX_BACKUP_FILES {
            return Err(bad("max_backup_files", "must be between 1 and 1000"));
        }
        if self.max_sessions == Some(0) {
            return Err(bad(
                "max_sessions",
                "must be at least 1 (or null for no limit)",
            ));
        }
        Ok(())
    }

    /// The cleanup period actually used (`None` when disabled).
    pub fn effective_cleanup_interval(&self) -> Option<Duration> {
        self.cleanup_interval.filter(|d| !d.is_zero())
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            storage_dir: PathBuf::from(DEFAULT_STORAGE_DIR),
            cleanup_interval: Some(DEFAULT_CLEANUP_INTERVAL),
            enable_backup: true,
            max_backup_files: DEFAULT_MAX_BACKUP_FILES,
            file_permissions: DEFAULT_FILE_PERMISSIONS,
            compress_files: false,
            max_sessions: None,
            enable_monitoring: true,
            shards: 64,
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
        }
    }
}

fn mode(key: &str, v: &Value) -> Result<u32> {
    let n = match v {
        Value::String(s) => {
            let digits = s
                .strip_prefix("0o")
                .or_else(|| s.strip_prefix("0O"))
                .unwrap_or(s);
            if digits.is_empty() || digits.len() > 4 {
                return Err(bad(key, "must be an octal mode such as \"0600\""));
            }
            u32::from_str_radix(digits, 8)
                .map_err(|_| bad(key, "must be an octal mode such as \"0600\""))?
        }
        v => u32::try_from(uint(key, v)?).map_err(|_| bad(key, "is too large"))?,
    };
    if n > 0o777 || n & 0o600 != 0o600 {
        return Err(bad(
            key,
            "must be a mode within 0o777 that includes owner read and write (0o600)",
        ));
    }
    Ok(n)
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| bad(key, "must be a boolean"))
}

fn uint(key: &str, v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| bad(key, "must be a non-negative integer"))
}

fn bad(key: &str, what: &str) -> Error {
    Error::configuration(format!("file provider config key `{key}` {what}")).with_detail("key", key)
}

#[cfg(test)]
mod tests {
    use psm_core::ErrorKind;
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let d = FileConfig::default();
        assert_eq!(d.storage_dir, PathBuf::from("./permission_storage"));
        assert_eq!(d.cleanup_interval, Some(Duration::from_secs(300)));
        assert!(d.enable_backup);
        assert_eq!(d.max_backup_files, 5);
        assert_eq!(d.file_permissions, 0o600);
        assert!(!d.compress_files);
        assert_eq!(FileConfig::from_json(&json!({})).unwrap(), d);
        assert_eq!(FileConfig::from_json(&Value::Null).unwrap(), d);
    }

    #[test]
    fn reads_every_seed_key() {
        let c = FileConfig::from_json(&json!({
            "storage_dir": "/var/lib/psm",
            "cleanup_interval": 60,
            "enable_backup": false,
            "max_backup_files": 3,
            "file_permissions": "0640",
            "atomic_writes": true,
            "compress_files": true,
            "max_sessions": 10,
            "compact_min_bytes": 1024
        }))
        .unwrap();
        assert_eq!(c.storage_dir, PathBuf::from("/var/lib/psm"));
        assert_eq!(c.cleanup_interval, Some(Duration::from_secs(60)));
        assert!(!c.enable_backup);
        assert_eq!(c.max_backup_files, 3);
        assert_eq!(c.file_permissions, 0o640);
        assert!(c.compress_files);
        assert_eq!(c.max_sessions, Some(10));
        assert_eq!(c.compact_min_bytes, 1024);
        let n = FileConfig::from_json(&json!({"file_permissions": 384, "cleanup_interval": 0}))
            .unwrap();
        assert_eq!(n.file_permissions, 0o600);
        assert_eq!(n.effective_cleanup_interval(), None);
        assert_eq!(
            FileConfig::from_json(&json!({"file_permissions": "0o660"}))
                .unwrap()
                .file_permissions,
            0o660
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let cases = [
            (json!({"atomic_writes": false}), "atomic_writes"),
            (json!({"atomic_writes": "yes"}), "atomic_writes"),
            (json!({"storage_dir": ""}), "storage_dir"),
            (json!({"storage_dir": 5}), "storage_dir"),
            (json!({"storage_dir": "a\u{0}b"}), "storage_dir"),
            (json!({"file_permissions": "0400"}), "file_permissions"),
            (json!({"file_permissions": "rw"}), "file_permissions"),
            (json!({"file_permissions": 0o1777}), "file_permissions"),
            (json!({"file_permissions": -1}), "file_permissions"),
            (json!({"max_backup_files": 0}), "max_backup_files"),
            (json!({"max_backup_files": 1001}), "max_backup_files"),
            (json!({"cleanup_interval": 31_536_001}), "cleanup_interval"),
            (json!({"compress_files": 1}), "compress_files"),
            (json!({"max_sessions": 0}), "max_sessions"),
            (json!({"shards": 0}), "shards"),
            (json!({"storage_directory": "x"}), "storage_directory"),
        ];
        for (v, key) in cases {
            let e = FileConfig::from_json(&v).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{v}");
            assert_eq!(e.detail("key"), Some(key), "{v}");
            assert!(e.message().contains(key), "{v}");
        }
        assert!(FileConfig::from_json(&json!("x")).is_err());
        let bad_struct = FileConfig {
            file_permissions: 0o200,
            ..FileConfig::default()
        };
        assert_eq!(
            bad_struct.validate().unwrap_err().detail("key"),
            Some("file_permissions")
        );
    }
}
