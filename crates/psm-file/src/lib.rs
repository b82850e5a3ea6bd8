#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod cache;
mod compact;
mod config;
mod dir;
mod format;
#[cfg(test)]
mod fuzz;
mod journal;
mod records;
mod recovery;
mod restore;
mod sessions;
mod stats;
mod storage;
mod tokens;
mod users;

pub use cache::FileCache;
pub use config::{
    DEFAULT_CLEANUP_INTERVAL, DEFAULT_COMPACT_MIN_BYTES, DEFAULT_FILE_PERMISSIONS,
    DEFAULT_MAX_BACKUP_FILES, DEFAULT_STORAGE_DIR, FileConfig, MAX_BACKUP_FILES,
    MAX_CLEANUP_INTERVAL_SECS,
};
pub use recovery::DamageReport;
pub use sessions::FileStore;
pub use stats::StorageStats;
pub use storage::FileStorage;
pub use tokens::FileTokenStateStore;
pub use users::FileUserStore;
