//! Opening a store: the newest snapshot, then every later journal segment, replayed in order into
//! the in-memory tables.
//!
//! Damage (a torn tail after a crash, a flipped bit) is reported with a warning and skipped; the
//! records around it survive. A torn tail of the newest segment is cut off so the damage is
//! reported once. Leftovers of an interrupted compaction (temporary files, segments an existing
//! snapshot already covers) are removed.

use std::{fs, path::Path};

use psm_core::{Error, ErrorKind, Result};

use crate::{
    dir::{Listing, StorageDir, io_error},
    format::{FLAG_COMPRESSED, FileKind, Frames, HEADER_LEN, HeaderError, decode_header},
    records::{self, Entry},
};

/// The largest decompressed block accepted (blocks are written at 64 KiB; anything far larger is
/// damage, not data).
const MAX_BLOCK: usize = 64 << 20;

/// Applies replayed records to the in-memory state.
pub(crate) trait Apply {
    /// Applies one record; an error means the record is invalid and is skipped (and reported).
    fn apply(&mut self, entry: Entry<'_>) -> Result<()>;
}

/// One piece of damage found while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageReport {
    /// The damaged file, relative to the storage directory.
    pub file: String,
    /// Offset of the first damaged byte.
    pub offset: u64,
    /// Bytes skipped (0 for a record that was whole but invalid).
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

/// What opening found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The first segment number the writer may use.
    pub(crate) next_segment: u64,
    pub(crate) bytes_since_snapshot: u64,
    pub(crate) snapshot_bytes: u64,
    pub(crate) records: u64,
    pub(crate) damage: Vec<DamageReport>,
}

/// Reads the store in `dir` into `sink`.
///
/// # Errors
/// `Serialization` for a file written by an unknown format version (it is never overwritten);
/// `ProviderConnection` for I/O errors.
pub(crate) fn recover(dir: &StorageDir, sink: &mut dyn Apply) -> Result<Recovered> {
    let listing = dir.list()?;
    remove_leftovers(dir, &listing)?;
    let mut out = Recovered::default();
    let base = listing.snapshots.last().copied().unwrap_or(0);
    if let Some(&n) = listing.snapshots.last() {
        let path = dir.snapshot_path(n);
        let bytes = read(&path)?;
        out.snapshot_bytes = bytes.len() as u64;
        replay(
            dir,
            &path,
            &bytes,
            FileKind::Snapshot,
            sink,
            &mut out,
            false,
        )?;
    }
    let journals: Vec<u64> = listing
        .journals
        .iter()
        .copied()
        .filter(|&n| n >= base)
        .collect();
    for (i, &n) in journals.iter().enumerate() {
        let path = dir.journal_path(n);
        let bytes = read(&path)?;
        out.bytes_since_snapshot += bytes.len() as u64;
        let newest = i + 1 == journals.len();
        replay(
            dir,
            &path,
            &bytes,
            FileKind::Journal,
            sink,
            &mut out,
            newest,
        )?;
    }
    out.next_segment = journals.last().map_or(base.max(1), |&n| n + 1);
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error("cannot read", path, &e))
}

/// Removes temporary files and the segments and snapshots the newest snapshot covers.
fn remove_leftovers(dir: &StorageDir, listing: &Listing) -> Result<()> {
    let mut changed = false;
    for p in &listing.temporary {
        fs::remove_file(p).map_err(|e| io_error("cannot remove", p, &e))?;
        changed = true;
    }
    if let Some(&base) = listing.snapshots.last() {
        for &n in listing.snapshots.iter().filter(|&&n| n < base) {
            let p = dir.snapshot_path(n);
            fs::remove_file(&p).map_err(|e| io_error("cannot remove", &p, &e))?;
            changed = true;
        }
        for &n in listing.journals.iter().filter(|&&n| n < base) {
            let p = dir.journal_path(n);
            fs::remove_file(&p).map_err(|e| io_error("cannot remove", &p, &e))?;
            changed = true;
        }
    }
    if changed {
        dir.sync()?;
    }
    Ok(())
}

fn replay(
    dir: &StorageDir,
    path: &Path,
    bytes: &[u8],
    expect: FileKind,
    sink: &mut dyn Apply,
    out: &mut Recovered,
    newest: bool,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut report = |offset: u64, len: u64, reason: String| {
        tracing::warn!(file = %name, offset, len, reason = %reason, "file store: skipped damaged data");
        out.damage.push(DamageReport {
            file: name.clone(),
            offset,
            len,
            reason,
        });
    };
    let mut compressed = false;
    match decode_header(bytes) {
        Ok(h) if h.kind == expect => compressed = h.flags & FLAG_COMPRESSED != 0,
        Ok(_) => report(0, HEADER_LEN as u64, "header of another file kind".into()),
        Err(HeaderError::Version(v)) => {
            return Err(Error::new(
                ErrorKind::Serialization,
                format!(
                    "file store: {} was written by {}; open it with a newer psm",
                    path.display(),
                    HeaderError::Version(v)
                ),
            )
            .with_detail("path", path.display()));
        }
        Err(HeaderError::NotAStore) if bytes.len() < HEADER_LEN && newest => {
            // A segment whose creation was cut short holds nothing: remove it.
            report(0, bytes.len() as u64, "torn segment header".into());
            fs::remove_file(path).map_err(|e| io_error("cannot remove", path, &e))?;
            return dir.sync();
        }
        Err(HeaderError::NotAStore) => {
            report(
                0,
                HEADER_LEN.min(bytes.len()) as u64,
                "damaged header".into(),
            );
        }
    }
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let mut frames = Frames::new(body, HEADER_LEN as u64);
    let mut snapshot_end: Option<u64> = None;
    let mut counted = 0u64;
    let mut apply_one = |payload: &[u8], offset: u64, report: &mut dyn FnMut(u64, u64, String)| {
        match records::decode(payload) {
            Ok(Entry::SnapshotEnd { records }) => snapshot_end = Some(records),
            Ok(entry) => {
                counted += 1;
                if let Err(e) = sink.apply(entry) {
                    report(offset, 0, format!("invalid record: {}", e.message()));
                }
            }
            Err(e) => report(offset, payload.len() as u64, e.message().to_owned()),
        }
    };
    while let Some(payload) = frames.next() {
        let offset = frames.valid_end() - payload.len() as u64;
        if compressed {
            match lz4_flex::decompress_size_prepended(payload) {
                Ok(block) if block.len() <= MAX_BLOCK => {
                    let mut inner = Frames::new(&block, 0);
                    for p in inner.by_ref() {
                        apply_one(p, offset, &mut report);
                    }
                    for d in inner.damage() {
                        report(offset, d.len, "damaged record in a compressed block".into());
                    }
                }
                _ => report(
                    offset,
                    payload.len() as u64,
                    "undecodable compressed block".into(),
                ),
            }
        } else {
            apply_one(payload, offset, &mut report);
        }
    }
    out.records += counted;
    for d in frames.damage() {
        let reason = if d.tail {
            "torn or damaged tail"
        } else {
            "damaged record"
        };
        report(d.offset, d.len, reason.into());
    }
    if expect == FileKind::Snapshot && snapshot_end.is_none() {
        report(
            frames.valid_end(),
            0,
            "snapshot has no end record; it may be incomplete".into(),
        );
    }
    // Cut a torn tail off the newest segment so later opens do not report it again. The writer
    // starts a new segment anyway, so nothing is appended after it.
    if newest && expect == FileKind::Journal && frames.damage().last().is_some_and(|d| d.tail) {
        let end = frames.valid_end();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error("cannot open", path, &e))?;
        f.set_len(end)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("cannot truncate", path, &e))?;
        dir.sync()?;
    }
    Ok(())
}
