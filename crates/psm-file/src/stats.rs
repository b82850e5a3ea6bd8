//! The seed's `get_storage_stats` record.

use std::{fs, path::Path, sync::atomic::Ordering};

use psm_core::Result;
use psm_tables::TableStats;
use serde::Serialize;

use crate::{
    FileConfig,
    compact::list_backups,
    dir::{StorageDir, io_error},
    journal::JournalStats,
};

/// Statistics of a [`FileStorage`](crate::FileStorage), with the seed's field names plus a few of
/// the journal's own.
///
/// Sessions are not stored one file each: `session_files` counts the journal segments and the
/// snapshot that hold them, and `user_index_files` is always 0 because the per-user index is
/// rebuilt in memory when the store opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageStats {
    /// Always `"file"`.
    pub provider: &'static str,
    /// Whole seconds since the store was opened, by its clock.
    pub uptime_seconds: u64,
    /// Sessions stored since the store was opened (replacements included).
    pub total_sessions_created: u64,
    /// Expired sessions removed from memory since the store was opened.
    pub total_sessions_expired: u64,
    /// Data-file operations: journal writes and fsyncs, segment creations, snapshot writes.
    pub total_file_operations: u64,
    /// Cleanup runs (background and explicit).
    pub total_cleanup_runs: u64,
    /// The cleanup period in seconds (0 when disabled).
    pub cleanup_interval: u64,
    /// Whether backups are taken.
    pub enable_backup: bool,
    /// How many backups are kept.
    pub max_backup_files: u64,
    /// Journal segments and snapshots in the directory.
    pub session_files: u64,
    /// Always 0: the per-user index lives in memory.
    pub user_index_files: u64,
    /// Backups kept.
    pub backup_files: u64,
    /// Bytes of the data files (journal segments, snapshot, lock file).
    pub total_size_bytes: u64,
    /// Bytes of the backups (hard-linked files are counted in full).
    pub backup_size_bytes: u64,
    /// The storage directory.
    pub storage_directory: String,
    /// Live sessions.
    pub active_sessions: u64,
    /// Journal batches written (each one fsync).
    pub journal_batches: u64,
    /// Journal records written.
    pub journal_records: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Damaged records skipped when the store was opened.
    pub damaged_records: u64,
    /// Whether a journal write failed, after which the store refuses writes until reopened.
    pub read_only_after_error: bool,
}

pub(crate) struct Inputs<'a> {
    pub(crate) dir: &'a StorageDir,
    pub(crate) config: &'a FileConfig,
    pub(crate) uptime_seconds: u64,
    pub(crate) table: &'a TableStats,
    pub(crate) journal: &'a JournalStats,
    pub(crate) cleanup_runs: u64,
    pub(crate) damaged: u64,
    pub(crate) poisoned: bool,
}

pub(crate) fn collect(i: Inputs<'_>) -> Result<StorageStats> {
    let listing = i.dir.list()?;
    let mut total = size(&i.dir.root().join(crate::dir::LOCK_FILE))?;
    for &n in &listing.journals {
        total += size(&i.dir.journal_path(n))?;
    }
    for &n in &listing.snapshots {
        total += size(&i.dir.snapshot_path(n))?;
    }
    let backups_dir = i.dir.backups();
    let backups = list_backups(&backups_dir)?;
    let mut backup_bytes = 0;
    for b in &backups {
        backup_bytes += dir_size(&backups_dir.join(b))?;
    }
    let j = i.journal;
    Ok(StorageStats {
        provider: crate::storage::PROVIDER,
        uptime_seconds: i.uptime_seconds,
        total_sessions_created: i.table.total_sessions_created,
        total_sessions_expired: i.table.total_sessions_expired,
        total_file_operations: j.file_operations.load(Ordering::Relaxed),
        total_cleanup_runs: i.cleanup_runs,
        cleanup_interval: i
            .config
            .effective_cleanup_interval()
            .map_or(0, |d| d.as_secs()),
        enable_backup: i.config.enable_backup,
        max_backup_files: i.config.max_backup_files as u64,
        session_files: (listing.journals.len() + listing.snapshots.len()) as u64,
        user_index_files: 0,
        backup_files: backups.len() as u64,
        total_size_bytes: total,
        backup_size_bytes: backup_bytes,
        storage_directory: i.dir.root().display().to_string(),
        active_sessions: i.table.active_sessions,
        journal_batches: j.batches.load(Ordering::Relaxed),
        journal_records: j.records.load(Ordering::Relaxed),
        compactions: j.compactions.load(Ordering::Relaxed),
        damaged_records: i.damaged,
        read_only_after_error: i.poisoned,
    })
}

fn size(p: &Path) -> Result<u64> {
    match fs::metadata(p) {
        Ok(m) => Ok(m.len()),
        // Removed by a compaction between listing and stat.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error("cannot stat", p, &e)),
    }
}

fn dir_size(p: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = match fs::read_dir(p) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error("cannot list", p, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", p, &e))?;
        total += size(&entry.path())?;
    }
    Ok(total)
}
