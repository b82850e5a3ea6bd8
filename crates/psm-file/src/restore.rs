//! Restoring a backup into a (closed) storage directory.
//!
//! The backup is read completely, without changing it, and refused if anything in it is damaged
//! or missing. Its state is then written into the storage directory as one new snapshot, numbered
//! above every file the directory and its backups hold. The snapshot's rename is the single
//! commit point: before it, the directory is untouched; after it, the snapshot is the newest one,
//! and every older file is a leftover that the next open removes (this function removes them at
//! once). A crash at any moment leaves either the old store or the restored one.

use std::{fs, path::Path, sync::Arc};

use psm_core::{Result, SystemClock};
use psm_tables::{CacheTable, SessionTable, TableConfig, TokenTable, UserTable};

use crate::{
    compact::{self, bad_backup},
    dir::{self, StorageDir, io_error},
    recovery,
    storage::{PROVIDER, Replay, Tables},
};

pub(crate) fn restore(backup: &Path, storage_dir: &Path, mode: u32) -> Result<()> {
    let files = dir::list(backup).map_err(|_| bad_backup(backup, "cannot list it"))?;
    let Some(&base) = files.snapshots.last() else {
        return Err(bad_backup(backup, "it holds no snapshot"));
    };
    let clock = Arc::new(SystemClock);
    let tables = Tables {
        sessions: SessionTable::with_clock(
            TableConfig {
                provider: PROVIDER,
                ..TableConfig::default()
            },
            clock,
        ),
        users: UserTable::default(),
        tokens: TokenTable::default(),
        cache: CacheTable::default(),
    };
    let now = psm_core::Clock::now(&SystemClock);
    let found = recovery::read_only(backup, &Replay::new(&tables, now))?;
    if let Some(d) = found.damage.first() {
        return Err(bad_backup(
            backup,
            &format!(
                "{} is damaged at offset {}: {} ({} problems in all)",
                d.file,
                d.offset,
                d.reason,
                found.damage.len()
            ),
        ));
    }
    let contiguous = found
        .journals
        .iter()
        .zip(base..)
        .all(|(&have, want)| have == want);
    if !contiguous || found.journals.first() != Some(&base) {
        return Err(bad_backup(
            backup,
            "its journal segments do not run on from its snapshot",
        ));
    }

    // Lock the target: restoring under an open store would corrupt it.
    let target = StorageDir::open(storage_dir, mode, now)?;
    let current = target.list()?;
    let highest_backup = compact::list_backups(&target.backups())?
        .iter()
        .filter_map(|n| compact::backup_number(n))
        .max();
    let highest = current
        .snapshots
        .iter()
        .chain(&current.journals)
        .chain(&files.snapshots)
        .chain(&files.journals)
        .copied()
        .chain(highest_backup)
        .max()
        .unwrap_or(0);
    let number = highest.saturating_add(1);
    // The commit point: once this snapshot is renamed into place, it is the store.
    compact::write_snapshot(
        &target,
        &target.snapshot_path(number),
        &tables,
        false,
        &|| Ok(()),
    )?;
    let old = current
        .snapshots
        .iter()
        .map(|&n| target.snapshot_path(n))
        .chain(current.journals.iter().map(|&n| target.journal_path(n)));
    for p in old {
        fs::remove_file(&p).map_err(|e| io_error("cannot remove", &p, &e))?;
    }
    target.sync()
}
