//! Opening a store: the newest snapshot, then every later journal segment, replayed in order into
//! the in-memory tables.
//!
//! Damage (a torn tail after a crash, a flipped bit) is reported with a warning and skipped; the
//! records around it survive. A torn tail of the newest segment is cut off so the damage is
//! reported once. Leftovers of an interrupted compaction (temporary files, segments an existing
//! snapshot already covers) are removed.

use std::{fs, path::Path, thread};

use psm_core::{Error, ErrorKind, Result};

use crate::{
    compact,
    dir::{Listing, StorageDir, io_error},
    format::{Damage, FLAG_COMPRESSED, FileKind, Frames, HEADER_LEN, HeaderError, decode_header},
    records::{self, Change},
};

/// The largest decompressed block accepted (blocks are written at 64 KiB; anything far larger is
/// damage, not data).
const MAX_BLOCK: usize = 64 << 20;

/// The smallest frame a record can take (header plus the shortest payload), for bounding size
/// hints read from a file.
const MIN_RECORD_BYTES: usize = 16;
/// Snapshots larger than this are read by several threads at once.
const PARALLEL_MIN_BYTES: usize = 1 << 20;
/// The most threads that read one snapshot.
const MAX_READERS: usize = 4;

/// Applies replayed records to the in-memory state. Shared by the threads that read a snapshot.
pub(crate) trait Apply: Sync {
    /// Applies one record; an error means the record cannot be applied and is skipped (and
    /// reported).
    fn apply(&self, change: Change) -> Result<()>;
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
    /// The snapshot read, if any.
    pub(crate) snapshot: Option<u64>,
    /// The journal segments replayed (from the snapshot on), in order.
    pub(crate) journals: Vec<u64>,
}

/// Reads the store in `dir` into `sink`.
///
/// # Errors
/// `Serialization` for a file written by an unknown format version (it is never overwritten);
/// `ProviderConnection` for I/O errors.
pub(crate) fn recover(dir: &StorageDir, sink: &dyn Apply) -> Result<Recovered> {
    recover_at(dir.root(), Some(dir), sink)
}

/// Reads the store in `root` into `sink` without changing anything on disk (no leftovers
/// removed, no torn tail cut): how a backup is checked before it is restored.
///
/// # Errors
/// As [`recover`].
pub(crate) fn read_only(root: &Path, sink: &dyn Apply) -> Result<Recovered> {
    recover_at(root, None, sink)
}

/// Reads `root`; `dir` is the same directory, open and locked, when it may be tidied.
fn recover_at(root: &Path, dir: Option<&StorageDir>, sink: &dyn Apply) -> Result<Recovered> {
    let listing = crate::dir::list(root)?;
    if let Some(dir) = dir {
        remove_leftovers(dir, &listing)?;
    }
    let mut out = Recovered::default();
    let base = listing.snapshots.last().copied().unwrap_or(0);
    out.snapshot = listing.snapshots.last().copied();
    if let Some(&n) = listing.snapshots.last() {
        let path = root.join(crate::dir::snapshot_name(n));
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
    let mut empty = Vec::new();
    for (i, &n) in journals.iter().enumerate() {
        let path = root.join(crate::dir::journal_name(n));
        let bytes = read(&path)?;
        if bytes.len() == HEADER_LEN && decode_header(&bytes).is_ok() {
            // A segment that never received a record (the store was opened and closed without
            // writing): nothing to replay, and removing it keeps such opens from piling up files.
            empty.push(path);
            continue;
        }
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
    out.journals = journals;
    if let Some(dir) = dir
        && !empty.is_empty()
    {
        for p in &empty {
            fs::remove_file(p).map_err(|e| io_error("cannot remove", p, &e))?;
        }
        dir.sync()?;
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error("cannot read", path, &e))
}

/// Removes temporary files, an interrupted backup or prune, and the segments and snapshots the
/// newest snapshot covers.
fn remove_leftovers(dir: &StorageDir, listing: &Listing) -> Result<()> {
    let mut changed = false;
    compact::remove_backup_leftovers(&dir.backups())?;
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

/// What reading one part of a file found.
#[derive(Default)]
struct Part {
    records: u64,
    end: Option<u64>,
    /// Records skipped: offset, length, reason.
    bad: Vec<(u64, u64, String)>,
    damage: Vec<Damage>,
    valid_end: u64,
    /// Journals: where the last committed batch ends.
    committed_end: u64,
    /// Journals: records after the last commit.
    uncommitted: Vec<(u64, Change)>,
    /// Journals: the latest batch whose commit counts more records than could be read, held back
    /// until it is known whether it is the file's last batch (a torn write of the newest segment,
    /// not applied) or an earlier one (damage: what survives is applied).
    suspect: Option<Suspect>,
}

impl Part {
    /// Applies one record, reporting it when the tables refuse it.
    fn apply(&mut self, offset: u64, change: Change, sink: &dyn Apply) {
        self.records += 1;
        if let Err(e) = sink.apply(change) {
            self.bad
                .push((offset, 0, format!("invalid record: {}", e.message())));
        }
    }

    /// Applies what survives of a batch that turned out not to be the file's last: damage, not a
    /// torn write, so the readable records stand.
    fn apply_short_batch(&mut self, s: Suspect, sink: &dyn Apply) {
        self.bad.push((
            s.offset,
            0,
            format!(
                "damaged batch: {} of its {} records readable",
                s.changes.len(),
                s.expected
            ),
        ));
        for (offset, change) in s.changes {
            self.apply(offset, change, sink);
        }
    }
}

/// A batch with records missing.
#[derive(Debug)]
struct Suspect {
    changes: Vec<(u64, Change)>,
    expected: u64,
    /// The commit frame's offset.
    offset: u64,
    /// Where the batch before it ended.
    start: u64,
}

fn replay(
    dir: Option<&StorageDir>,
    path: &Path,
    bytes: &[u8],
    expect: FileKind,
    sink: &dyn Apply,
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
            if let Some(dir) = dir {
                fs::remove_file(path).map_err(|e| io_error("cannot remove", path, &e))?;
                dir.sync()?;
            }
            return Ok(());
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
    // A snapshot holds each thing once, so its records may be applied in any order: a large one is
    // split on frame boundaries and read by several threads. Journal records must be applied in
    // order, so a journal is read by this thread alone.
    let readers = if expect == FileKind::Snapshot && body.len() >= PARALLEL_MIN_BYTES {
        thread::available_parallelism().map_or(1, |n| n.get().min(MAX_READERS))
    } else {
        1
    };
    let parts = split(body, readers);
    let journal = expect == FileKind::Journal;
    let results: Vec<Part> = if parts.len() == 1 {
        vec![read_part(
            body,
            HEADER_LEN as u64,
            compressed,
            sink,
            journal,
        )]
    } else {
        thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter()
                .map(|&(start, end)| {
                    let part = body.get(start..end).unwrap_or_default();
                    let base = (HEADER_LEN + start) as u64;
                    scope.spawn(move || read_part(part, base, compressed, sink, false))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().map_err(|_| {
                        Error::provider("file store: a snapshot reader thread panicked")
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?
    };
    let last = results.len().saturating_sub(1);
    let mut end = None;
    let mut tail = None;
    for (i, mut part) in results.into_iter().enumerate() {
        // Where a torn tail starts: damage from here on belongs to it.
        let mut torn_from = u64::MAX;
        if let Some(s) = part.suspect.take() {
            if newest {
                // The last batch lost records in a write whose fsync never completed (so it was
                // never acknowledged): applying the rest would make a state that never existed.
                report(
                    s.start,
                    part.valid_end.saturating_sub(s.start),
                    format!(
                        "torn tail: the last batch has {} of its {} records",
                        s.changes.len(),
                        s.expected
                    ),
                );
                part.committed_end = s.start;
                torn_from = s.start;
                tail = Some(s.start);
                part.uncommitted.clear();
            } else {
                part.apply_short_batch(s, sink);
            }
        }
        if !part.uncommitted.is_empty() {
            let n = part.uncommitted.len();
            let offset = part.uncommitted.first().map_or(0, |(o, _)| *o);
            if newest {
                // Written but never fsynced to the end, so never acknowledged: not applied.
                report(
                    offset,
                    part.valid_end.saturating_sub(offset),
                    format!(
                        "torn tail: a batch of {n} records whose commit never reached the disk"
                    ),
                );
                tail = Some(part.committed_end);
            } else {
                // An older segment always ends with a commit; its loss is damage, not a crash.
                report(
                    offset,
                    0,
                    format!("damaged record: a batch of {n} records lost its commit"),
                );
                for (offset, change) in std::mem::take(&mut part.uncommitted) {
                    part.apply(offset, change, sink);
                }
            }
        }
        out.records += part.records;
        end = end.or(part.end);
        for (offset, len, why) in part.bad {
            if offset < torn_from {
                report(offset, len, why);
            }
        }
        for d in &part.damage {
            if d.offset >= torn_from {
                continue; // reported with the torn batch above
            }
            // Damage at the end of a part that is not the last one runs up to the next part.
            let is_tail = d.tail && i == last;
            let reason = if is_tail {
                "torn or damaged tail"
            } else {
                "damaged record"
            };
            report(d.offset, d.len, reason.into());
            if is_tail {
                let end = if journal {
                    part.committed_end.min(part.valid_end)
                } else {
                    part.valid_end
                };
                tail = Some(tail.map_or(end, |t: u64| t.min(end)));
            }
        }
    }
    if expect == FileKind::Snapshot && end.is_none() {
        report(
            bytes.len() as u64,
            0,
            "snapshot has no end record; it may be incomplete".into(),
        );
    }
    // Cut a torn tail off the newest segment so later opens do not report it again. The writer
    // starts a new segment anyway, so nothing is appended after it.
    if let Some(valid_end) = tail
        && let Some(dir) = dir
        && newest
        && expect == FileKind::Journal
    {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error("cannot open", path, &e))?;
        f.set_len(valid_end)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("cannot truncate", path, &e))?;
        dir.sync()?;
    }
    Ok(())
}

/// Up to `n` ranges of `body` that each start on a frame.
fn split(body: &[u8], n: usize) -> Vec<(usize, usize)> {
    let mut cuts = vec![0];
    for i in 1..n {
        let want = body.len() / n * i;
        match Frames::frame_boundary(body, want.max(cuts.last().copied().unwrap_or(0) + 1)) {
            Some(at) => cuts.push(at),
            None => break,
        }
    }
    cuts.dedup();
    cuts.push(body.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Reads one part (starting at file offset `base`) and applies its records.
fn read_part(part: &[u8], base: u64, compressed: bool, sink: &dyn Apply, journal: bool) -> Part {
    let mut out = Part {
        committed_end: base,
        ..Part::default()
    };
    let mut frames = Frames::new(part, base);
    let max_records = (part.len() / MIN_RECORD_BYTES) as u64;
    let one = |payload: &[u8], offset: u64, out: &mut Part| match records::decode(payload)
        .and_then(records::Entry::into_change)
    {
        Ok(Change::End(n)) => out.end = Some(n),
        Ok(Change::Commit(n)) => {
            // A later batch made it to disk, so a held-back one was not the last: apply it.
            if let Some(s) = out.suspect.take() {
                out.apply_short_batch(s, sink);
            }
            let batch = std::mem::take(&mut out.uncommitted);
            if batch.len() as u64 == n {
                for (offset, change) in batch {
                    out.apply(offset, change, sink);
                }
            } else {
                out.suspect = Some(Suspect {
                    changes: batch,
                    expected: n,
                    offset,
                    start: out.committed_end,
                });
            }
            out.committed_end = offset + payload.len() as u64;
        }
        // A size hint from the file can be no larger than the file can hold.
        Ok(Change::Expect(n)) => out.apply(offset, Change::Expect(n.min(max_records)), sink),
        Ok(change) if journal => out.uncommitted.push((offset, change)),
        Ok(change) => out.apply(offset, change, sink),
        Err(e) => out
            .bad
            .push((offset, payload.len() as u64, e.message().to_owned())),
    };
    while let Some(payload) = frames.next() {
        let offset = frames.valid_end() - payload.len() as u64;
        if compressed {
            // The size prefix is checked before anything is allocated for it.
            let declared = payload.get(..4).map_or(usize::MAX, |b| {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            });
            let block = if declared <= MAX_BLOCK {
                lz4_flex::decompress_size_prepended(payload).ok()
            } else {
                None
            };
            match block {
                Some(block) => {
                    let mut inner = Frames::new(&block, 0);
                    for p in inner.by_ref() {
                        one(p, offset, &mut out);
                    }
                    for d in inner.damage() {
                        out.bad.push((
                            offset,
                            d.len,
                            "damaged record in a compressed block".into(),
                        ));
                    }
                }
                None => out.bad.push((
                    offset,
                    payload.len() as u64,
                    "undecodable compressed block".into(),
                )),
            }
        } else {
            one(payload, offset, &mut out);
        }
    }
    out.damage = frames.damage().to_vec();
    out.valid_end = frames.valid_end();
    out
}
