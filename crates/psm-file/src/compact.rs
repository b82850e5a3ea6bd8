//! Compaction and backups.
//!
//! The writer starts a compaction by sealing its segment: every change before that point is in
//! segments numbered below `base`, every later one in `base` and after. This thread then writes
//! `snapshot-<base>` from the live in-memory state while writes go on. The snapshot may already
//! hold some changes of segment `base`, but every record carries the whole state of one thing, so
//! replaying segment `base` and later over it still ends in the right state. Once the snapshot is
//! durable (written to a temporary name, fsynced, renamed, directory fsynced), the older snapshot
//! and segments are removed: disk use stays proportional to the live data.
//!
//! A backup is the snapshot plus the segments up to a second seal, hard-linked (they are never
//! written again) into `backups/backup-<sealed segment>`: replaying them yields exactly the state
//! at the second seal, a consistent point in time, taken without stopping writes.

use std::{
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering, mpsc},
};

use psm_core::{Error, Result};
use tokio::sync::oneshot;

use crate::{
    dir::{self, BACKUPS_DIR, DELETING_SUFFIX, StorageDir, TMP_SUFFIX, io_error},
    format::{FLAG_COMPRESSED, FileKind, encode_header, push_frame},
    journal::{self, JournalStats, Msg},
    records::{self, Entry},
};

/// Uncompressed bytes gathered into one compressed block.
const BLOCK_BYTES: usize = 64 << 10;
/// The prefix of backup directory names.
pub(crate) const BACKUP_PREFIX: &str = "backup-";

/// Everything a snapshot must hold, enumerated record by record.
pub(crate) trait StateSource: Send + Sync {
    /// Calls `f` with a record for every live session, user, token family and epoch.
    fn for_each_entry(&self, f: &mut dyn FnMut(&Entry<'_>));
}

/// A request for a compaction, optionally with a backup.
#[derive(Debug)]
pub(crate) struct CompactRequest {
    pub(crate) backup: bool,
    pub(crate) done: Option<oneshot::Sender<Result<Option<PathBuf>>>>,
}

impl CompactRequest {
    /// Answers the requester, if it waits.
    pub(crate) fn answer(self, result: Result<Option<PathBuf>>) {
        if let Some(tx) = self.done {
            let _ = tx.send(result);
        }
    }
}

/// What a finished compaction reports.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) snapshot_bytes: u64,
    pub(crate) backup: Option<PathBuf>,
}

/// One compaction, run on its own thread.
pub(crate) struct Job {
    pub(crate) dir: Arc<StorageDir>,
    pub(crate) base: u64,
    pub(crate) backup: bool,
    pub(crate) max_backup_files: usize,
    pub(crate) compress: bool,
    pub(crate) source: Arc<dyn StateSource>,
    pub(crate) stats: Arc<JournalStats>,
    pub(crate) writer: mpsc::Sender<Msg>,
}

impl Job {
    /// Runs the compaction and reports to the writer.
    pub(crate) fn run(self) {
        let result = self.work();
        journal::compaction_done(&self.writer, result);
    }

    fn work(&self) -> Result<Outcome> {
        let path = self.dir.snapshot_path(self.base);
        // The snapshot may hold changes applied but not yet fsynced: make them durable before the
        // snapshot may become the store (and give up if the journal has failed meanwhile).
        let barrier = || journal::barrier(&self.writer);
        let snapshot_bytes =
            write_snapshot(&self.dir, &path, &*self.source, self.compress, &barrier)?;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        self.stats.file_operations.fetch_add(3, Ordering::Relaxed);
        self.remove_covered()?;
        let backup = if self.backup {
            Some(self.backup()?)
        } else {
            None
        };
        Ok(Outcome {
            snapshot_bytes,
            backup,
        })
    }

    /// Removes the snapshots and segments the new snapshot covers.
    fn remove_covered(&self) -> Result<()> {
        let listing = self.dir.list()?;
        let old_snapshots = listing.snapshots.iter().filter(|&&n| n < self.base);
        for &n in old_snapshots {
            remove(&self.dir.snapshot_path(n))?;
        }
        for &n in listing.journals.iter().filter(|&&n| n < self.base) {
            remove(&self.dir.journal_path(n))?;
        }
        self.dir.sync()
    }

    fn backup(&self) -> Result<PathBuf> {
        // Changes counted from here on belong to the next backup.
        self.stats.changes_since_backup.store(0, Ordering::Relaxed);
        let sealed = journal::seal(&self.writer)?;
        let backups = self.dir.backups();
        self.dir.create_dir(&backups)?;
        let name = format!("{BACKUP_PREFIX}{sealed:020}");
        let target = backups.join(&name);
        let tmp = backups.join(format!("{name}{TMP_SUFFIX}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io_error("cannot remove", &tmp, &e))?;
        }
        self.dir.create_dir(&tmp)?;
        let mut files = vec![dir::snapshot_name(self.base)];
        files.extend((self.base..=sealed).map(dir::journal_name));
        for f in &files {
            let from = self.dir.root().join(f);
            let to = tmp.join(f);
            // Both files are immutable from here on, so a hard link is a copy that costs nothing.
            if fs::hard_link(&from, &to).is_err() {
                // A file system without hard links: a real, durable copy.
                fs::copy(&from, &to)
                    .and_then(|_| fs::File::open(&to))
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_error("cannot copy into a backup", &to, &e))?;
            }
        }
        dir::sync_dir(&tmp)?;
        fs::rename(&tmp, &target).map_err(|e| io_error("cannot rename", &tmp, &e))?;
        dir::sync_dir(&backups)?;
        prune_backups(&backups, self.max_backup_files)?;
        self.stats.backups.fetch_add(1, Ordering::Relaxed);
        Ok(target)
    }
}

/// Writes a complete snapshot of `source` to `path` (through a temporary file, fsynced, then
/// `before_commit`, then renamed into place) and returns its size.
pub(crate) fn write_snapshot(
    dir: &StorageDir,
    path: &Path,
    source: &dyn StateSource,
    compress: bool,
    before_commit: &dyn Fn() -> Result<()>,
) -> Result<u64> {
    let tmp = path.with_extension(format!("psm{TMP_SUFFIX}"));
    if tmp.exists() {
        remove(&tmp)?;
    }
    let file = dir.create_file(&tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut failure: Option<std::io::Error> = None;
    let flags = if compress { FLAG_COMPRESSED } else { 0 };
    let mut write = |bytes: &[u8], out: &mut BufWriter<fs::File>| {
        if failure.is_none()
            && let Err(e) = out.write_all(bytes)
        {
            failure = Some(e);
        }
    };
    write(&encode_header(FileKind::Snapshot, flags), &mut out);
    let mut frames = Vec::with_capacity(BLOCK_BYTES + 4096);
    let mut block = Vec::new();
    let mut count = 0u64;
    source.for_each_entry(&mut |entry| {
        push_frame(&mut frames, |o| records::encode(entry, o));
        count += 1;
        if frames.len() >= BLOCK_BYTES {
            emit(&mut frames, &mut block, compress);
            write(&block, &mut out);
        }
    });
    push_frame(&mut frames, |o| {
        records::encode(&Entry::SnapshotEnd { records: count }, o);
    });
    emit(&mut frames, &mut block, compress);
    write(&block, &mut out);
    if let Some(e) = failure {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("cannot write", &tmp, &e));
    }
    let file = out
        .into_inner()
        .map_err(|e| io_error("cannot write", &tmp, e.error()))?;
    file.sync_all()
        .map_err(|e| io_error("cannot sync", &tmp, &e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error("cannot stat", &tmp, &e))?
        .len();
    drop(file);
    if let Err(e) = before_commit() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| io_error("cannot rename", &tmp, &e))?;
    dir.sync()?;
    Ok(size)
}

/// Moves the frames gathered so far into `block`: as they are, or as one frame holding their LZ4
/// compression.
fn emit(frames: &mut Vec<u8>, block: &mut Vec<u8>, compress: bool) {
    block.clear();
    if compress {
        let packed = lz4_flex::compress_prepend_size(frames);
        push_frame(block, |o| o.extend_from_slice(&packed));
    } else {
        std::mem::swap(frames, block);
    }
    frames.clear();
}

/// Keeps the newest `keep` backups. Each one is renamed away before it is deleted, so a crash
/// never leaves a partial backup under a backup's name.
fn prune_backups(backups: &Path, keep: usize) -> Result<()> {
    let mut names = list_backups(backups)?;
    if names.len() > keep {
        let excess = names.len() - keep;
        let mut doomed = Vec::new();
        for name in names.drain(..excess) {
            let from = backups.join(&name);
            let to = backups.join(format!("{name}{DELETING_SUFFIX}"));
            fs::rename(&from, &to).map_err(|e| io_error("cannot rename", &from, &e))?;
            doomed.push(to);
        }
        dir::sync_dir(backups)?;
        for p in doomed {
            fs::remove_dir_all(&p).map_err(|e| io_error("cannot remove", &p, &e))?;
        }
        dir::sync_dir(backups)?;
    }
    Ok(())
}

/// Removes what an interrupted backup or prune left in `backups` (`*.tmp`, `*.deleting`).
pub(crate) fn remove_backup_leftovers(backups: &Path) -> Result<()> {
    let entries = match fs::read_dir(backups) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("cannot list", backups, &e)),
    };
    let mut changed = false;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", backups, &e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let ours = name.starts_with(BACKUP_PREFIX)
            && (name.ends_with(TMP_SUFFIX) || name.ends_with(DELETING_SUFFIX));
        if ours {
            let p = entry.path();
            fs::remove_dir_all(&p).map_err(|e| io_error("cannot remove", &p, &e))?;
            changed = true;
        }
    }
    if changed {
        dir::sync_dir(backups)?;
    }
    Ok(())
}

/// Complete backups in `backups`, oldest first.
pub(crate) fn list_backups(backups: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(backups) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot list", backups, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", backups, &e))?;
        if let Some(name) = entry.file_name().to_str()
            && backup_number(name).is_some()
        {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// The number of a complete backup's directory name (`backup-<20 digits>`).
pub(crate) fn backup_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(BACKUP_PREFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("cannot remove", path, &e)),
    }
}

/// Where the backups of the store in `storage_dir` are.
pub(crate) fn backups_of(storage_dir: &Path) -> PathBuf {
    storage_dir.join(BACKUPS_DIR)
}

/// An error for a backup that cannot be restored.
pub(crate) fn bad_backup(path: &Path, why: &str) -> Error {
    Error::configuration(format!(
        "file store: {} is not a backup: {why}",
        path.display()
    ))
    .with_detail("path", path.display())
}
