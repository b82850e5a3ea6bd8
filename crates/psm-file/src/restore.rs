//! Restoring a backup into a (closed) storage directory.

use std::{fs, path::Path};

use psm_core::Result;

use crate::{
    compact::bad_backup,
    dir::{self, StorageDir, io_error, list},
    records::Change,
    recovery::{self, Apply},
};

/// Accepts every record (the decoder has validated it): used to read a backup through before it
/// replaces anything.
struct Check;

impl Apply for Check {
    fn apply(&self, _: Change) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn restore(backup: &Path, storage_dir: &Path, mode: u32) -> Result<()> {
    let files = list(backup).map_err(|_| bad_backup(backup, "cannot list it"))?;
    if files.snapshots.is_empty() {
        return Err(bad_backup(backup, "it holds no snapshot"));
    }
    // Lock the target first: restoring under an open store would corrupt it.
    let target = StorageDir::open(storage_dir, mode, psm_core::Timestamp::UNIX_EPOCH)?;
    let staging = storage_dir.join("restore.tmp");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_error("cannot remove", &staging, &e))?;
    }
    dir::create_dir(&staging)?;
    let names: Vec<String> = files
        .snapshots
        .iter()
        .map(|&n| dir::snapshot_name(n))
        .chain(files.journals.iter().map(|&n| dir::journal_name(n)))
        .collect();
    for name in &names {
        let from = backup.join(name);
        let to = staging.join(name);
        fs::copy(&from, &to).map_err(|e| io_error("cannot copy", &from, &e))?;
        fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error("cannot sync", &to, &e))?;
    }
    dir::sync_dir(&staging)?;
    // Read the copy through: a backup that cannot be opened must not replace anything.
    {
        let check = StorageDirView::new(&staging, mode)?;
        recovery::recover(&check.0, &Check)
            .map_err(|e| bad_backup(backup, &format!("it cannot be read: {}", e.message())))?;
    }
    // The read-through may have tidied the copy (empty segments, a torn tail): move what is there.
    let staged = list(&staging)?;
    let names: Vec<String> = staged
        .snapshots
        .iter()
        .map(|&n| dir::snapshot_name(n))
        .chain(staged.journals.iter().map(|&n| dir::journal_name(n)))
        .collect();
    // Move the current data files aside, then the backup's in.
    let current = target.list()?;
    let n = (0u32..)
        .find(|i| !storage_dir.join(format!("replaced-{i}")).exists())
        .unwrap_or(0);
    let aside = storage_dir.join(format!("replaced-{n}"));
    dir::create_dir(&aside)?;
    let current_names = current
        .snapshots
        .iter()
        .map(|&n| dir::snapshot_name(n))
        .chain(current.journals.iter().map(|&n| dir::journal_name(n)));
    for name in current_names {
        let from = storage_dir.join(&name);
        fs::rename(&from, aside.join(&name)).map_err(|e| io_error("cannot move", &from, &e))?;
    }
    dir::sync_dir(&aside)?;
    for name in &names {
        let from = staging.join(name);
        fs::rename(&from, storage_dir.join(name))
            .map_err(|e| io_error("cannot move", &from, &e))?;
    }
    target.sync()?;
    fs::remove_dir_all(&staging).map_err(|e| io_error("cannot remove", &staging, &e))?;
    target.sync()
}

/// A locked view of the staging directory, so the read-through uses the normal open path.
struct StorageDirView(StorageDir);

impl StorageDirView {
    fn new(path: &Path, mode: u32) -> Result<Self> {
        StorageDir::open(path, mode, psm_core::Timestamp::UNIX_EPOCH).map(Self)
    }
}
