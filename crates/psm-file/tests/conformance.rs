//! The psm-core conformance suite against every file adapter, plus the session store once more
//! with compaction (and a backup) after every journal batch, so the suite also runs while
//! snapshots are being written; and the file store's own promises (`durability`).
//!
//! This is the crate's one libtest binary; `crash.rs` is a second, harness-less one because it
//! runs itself as the child process it kills.

#[path = "conformance/durability.rs"]
mod durability;

use std::{path::PathBuf, sync::Arc};

use psm_core::{
    DynCache, DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock, async_trait,
    testkit::{CacheFixture, PermissionStoreFixture, TokenStateFixture, UserStoreFixture},
};
use psm_file::{FileConfig, FileStorage};

/// A fresh directory under cargo's per-target temporary directory, in one directory per test
/// process. The stores outlive the fixture (the suite holds them as trait objects), so they are
/// kept until a later run removes the directories of processes that are no longer running.
fn fresh_dir() -> PathBuf {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("psm-file-conformance");
    CLEANED.call_once(|| {
        let Ok(entries) = std::fs::read_dir(&base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let gone = name
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
            if gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
    let root = base.join(std::process::id().to_string());
    if let Err(e) = std::fs::create_dir_all(&root) {
        panic!("cannot create {}: {e}", root.display());
    }
    match tempfile::Builder::new().prefix("store-").tempdir_in(&root) {
        Ok(d) => d.keep(),
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

fn open(clock: ManualClock, compact_min_bytes: u64) -> FileStorage {
    let config = FileConfig {
        compact_min_bytes,
        ..FileConfig::new(fresh_dir())
    };
    match FileStorage::open_with_clock(config, Arc::new(clock)) {
        Ok(s) => s,
        Err(e) => panic!("open failed: {e}"),
    }
}

struct Sessions {
    compact_min_bytes: u64,
}

#[async_trait]
impl PermissionStoreFixture for Sessions {
    async fn create(&self, clock: ManualClock) -> DynPermissionStore {
        Arc::new(open(clock, self.compact_min_bytes).sessions())
    }
}

struct Users;

#[async_trait]
impl UserStoreFixture for Users {
    async fn create(&self, clock: ManualClock) -> DynUserStore {
        Arc::new(open(clock, psm_file::DEFAULT_COMPACT_MIN_BYTES).users())
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

struct Tokens;

#[async_trait]
impl TokenStateFixture for Tokens {
    async fn create(&self, clock: ManualClock) -> DynTokenStateStore {
        Arc::new(open(clock, psm_file::DEFAULT_COMPACT_MIN_BYTES).tokens())
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

struct Caches;

#[async_trait]
impl CacheFixture for Caches {
    async fn create(&self, clock: ManualClock) -> DynCache {
        Arc::new(open(clock, psm_file::DEFAULT_COMPACT_MIN_BYTES).cache())
    }
    fn honours_clock(&self) -> bool {
        true
    }
}

psm_core::conformance_tests!(
    Sessions {
        compact_min_bytes: psm_file::DEFAULT_COMPACT_MIN_BYTES
    },
    Users,
    Tokens,
    Caches
);

psm_core::permission_store_tests!(mod compacting_after_every_batch, Sessions { compact_min_bytes: 0 });
