//! The storage directory: its files and their names, modes, the cross-process lock and directory
//! fsyncs.
//!
//! Every file name is built here from fixed words and numbers the store chooses
//! (`journal-00000000000000000001.log`, `snapshot-00000000000000000001.psm`, `backups/…`); no
//! name ever contains a session id, user id or permission.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use psm_core::{Error, ErrorKind, Result, Timestamp};

/// The lock file's name.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The backups directory's name.
pub(crate) const BACKUPS_DIR: &str = "backups";
const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".log";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".psm";
/// Suffix of files being written; they are renamed when complete and removed on open otherwise.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Suffix of backups being removed (renamed first, so a crash never leaves a partial backup
/// under a backup's name).
pub(crate) const DELETING_SUFFIX: &str = ".deleting";

/// An I/O error on `path` as a psm error.
pub(crate) fn io_error(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::new(
        ErrorKind::ProviderConnection,
        format!("file store: {what} {}: {e}", path.display()),
    )
    .with_detail("path", path.display())
}

/// The open, locked storage directory.
#[derive(Debug)]
pub(crate) struct StorageDir {
    root: PathBuf,
    mode: u32,
    /// Held open for the store's life: the lock lives as long as this file description.
    _lock: File,
}

/// The data files found in a directory, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) snapshots: Vec<u64>,
    pub(crate) journals: Vec<u64>,
    pub(crate) temporary: Vec<PathBuf>,
}

impl StorageDir {
    /// Creates `root` (mode 0700) if missing, leaves an existing directory's mode alone, and takes
    /// the exclusive lock.
    ///
    /// # Errors
    /// `Concurrency` naming the holder when another store (in this or another process) has the
    /// directory open; `ProviderConnection` for I/O errors.
    pub(crate) fn open(root: &Path, mode: u32, now: Timestamp) -> Result<Self> {
        create_dir(root)?;
        let lock_path = root.join(LOCK_FILE);
        let mut lock = open_options(mode)
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open lock file", &lock_path, &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder may be rewriting it this very moment.
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim().replace('\n', ", ");
                let holder = if holder.is_empty() {
                    "an unknown process".to_owned()
                } else {
                    holder
                };
                return Err(Error::new(
                    ErrorKind::Concurrency,
                    format!(
                        "file store: {} is locked by another store ({holder}); \
                         one directory has one writer",
                        root.display()
                    ),
                )
                .with_detail("path", root.display())
                .with_detail("holder", holder));
            }
            Err(TryLockError::Error(e)) => {
                return Err(io_error("cannot lock", &lock_path, &e));
            }
        }
        // Tell a second opener who holds the lock. Not needed for safety, so errors are ignored.
        let info = format!(
            "pid {}\nhost {}\nsince {}\n",
            std::process::id(),
            hostname(),
            now.to_rfc3339()
        );
        let _ = lock.set_len(0);
        let _ = lock.write_all(info.as_bytes());
        let _ = lock.sync_data();
        let dir = Self {
            root: root.to_path_buf(),
            mode,
            _lock: lock,
        };
        dir.sync()?;
        Ok(dir)
    }

    /// The directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The path of journal segment `n`.
    pub(crate) fn journal_path(&self, n: u64) -> PathBuf {
        self.root.join(journal_name(n))
    }

    /// The path of the snapshot covering every journal segment before `n`.
    pub(crate) fn snapshot_path(&self, n: u64) -> PathBuf {
        self.root.join(snapshot_name(n))
    }

    /// The backups directory (not created here).
    pub(crate) fn backups(&self) -> PathBuf {
        self.root.join(BACKUPS_DIR)
    }

    /// The data files in the directory.
    pub(crate) fn list(&self) -> Result<Listing> {
        list(&self.root)
    }

    /// Creates a new file (failing if it exists) with the configured mode.
    pub(crate) fn create_file(&self, path: &Path) -> Result<File> {
        create_file(path, self.mode)
    }

    /// Creates a directory (0700) inside the store.
    pub(crate) fn create_dir(&self, path: &Path) -> Result<()> {
        create_dir(path)
    }

    /// Makes renames, creations and removals in the directory durable.
    pub(crate) fn sync(&self) -> Result<()> {
        sync_dir(&self.root)
    }
}

/// The name of journal segment `n`.
pub(crate) fn journal_name(n: u64) -> String {
    format!("{JOURNAL_PREFIX}{n:020}{JOURNAL_SUFFIX}")
}

/// The name of the snapshot that covers the journal segments before `n`.
pub(crate) fn snapshot_name(n: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{n:020}{SNAPSHOT_SUFFIX}")
}

/// The data files in `root`, oldest first. Unknown files are left alone and not listed.
pub(crate) fn list(root: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    let entries = fs::read_dir(root).map_err(|e| io_error("cannot list", root, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", root, &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name
            .strip_suffix(TMP_SUFFIX)
            .and_then(|n| number(n, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX))
            .is_some()
        {
            // Only the store's own temporary names: anything else in the directory is left alone.
            out.temporary.push(entry.path());
        } else if let Some(n) = number(name, JOURNAL_PREFIX, JOURNAL_SUFFIX) {
            out.journals.push(n);
        } else if let Some(n) = number(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
            out.snapshots.push(n);
        }
    }
    out.journals.sort_unstable();
    out.snapshots.sort_unstable();
    Ok(out)
}

fn number(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Creates `path` (and missing parents) with mode 0700, durably (each new directory's parent is
/// fsynced); an existing directory is left as it is.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir(parent)?;
    }
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    match b.create(path) {
        Ok(()) => {}
        // Created meanwhile by someone else: fine, it exists.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(io_error("cannot create directory", path, &e)),
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

fn open_options(mode: u32) -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o
}

/// Creates a new file with exactly `mode` (the umask cannot widen it, so it is set again after
/// creation to also keep bits the umask would have cleared).
pub(crate) fn create_file(path: &Path, mode: u32) -> Result<File> {
    let f = open_options(mode)
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error("cannot create", path, &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("cannot set the mode of", path, &e))?;
    }
    Ok(f)
}

/// Fsyncs a directory so the names in it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync directory", path, &e))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_unix_secs(1_700_000_000)
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let tmp = tempdir();
        let t = tmp.path();
        let d = StorageDir::open(t, 0o600, now()).unwrap();
        for n in [1, 7, u64::MAX] {
            fs::write(d.journal_path(n), b"").unwrap();
            fs::write(d.snapshot_path(n), b"").unwrap();
        }
        fs::write(t.join("journal-1.log"), b"").unwrap();
        fs::write(t.join("notes.txt"), b"").unwrap();
        fs::write(t.join("snapshot-00000000000000000009.psm.tmp"), b"").unwrap();
        fs::write(t.join("notes.tmp"), b"").unwrap();
        let l = d.list().unwrap();
        assert_eq!(l.journals, [1, 7, u64::MAX]);
        assert_eq!(l.snapshots, [1, 7, u64::MAX]);
        assert_eq!(l.temporary.len(), 1);
    }

    #[test]
    fn a_second_opener_gets_a_clear_error_naming_the_holder() {
        let tmp = tempdir();
        let t = tmp.path();
        let first = StorageDir::open(t, 0o600, now()).unwrap();
        let e = StorageDir::open(t, 0o600, now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Concurrency);
        assert!(
            e.message().contains(&format!("pid {}", std::process::id())),
            "{}",
            e.message()
        );
        drop(first);
        StorageDir::open(t, 0o600, now()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn modes_new_dirs_0700_files_as_configured_existing_dirs_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempdir();
        let t = tmp.path();
        let fresh = t.join("a/b");
        let d = StorageDir::open(&fresh, 0o640, now()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&t.join("a")), 0o700);
        let f = d.journal_path(1);
        d.create_file(&f).unwrap();
        assert_eq!(mode(&f), 0o640);
        assert_eq!(mode(&fresh.join(LOCK_FILE)), 0o640);
        let existing = t.join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
        let _d2 = StorageDir::open(&existing, 0o600, now()).unwrap();
        assert_eq!(mode(&existing), 0o755);
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
