//! psm's file provider (`psm-file`) through the manager: reads from a store filled by concurrent
//! durable writers, and one durable writer against a bare "append + `fdatasync`" loop on the same
//! disk.
//!
//! Every store lives in a fresh directory under the run's `--file-dir`, which `cargo xtask bench`
//! puts under the workspace's `target/` so that it sits on the same disk as the build (not on a
//! tmpfs `/tmp`, where an fsync costs nothing).

use std::{
    fs::{self, OpenOptions},
    io::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use psm::{PermissionRef, PermissionStorageManager as Manager, SessionIdRef};
use psm_file::{FileConfig, FileStorage};
use tempfile::TempDir;

use crate::{
    BenchResult,
    ops::{Op, OpResults},
    psm_run::run_op,
    workload::Workload,
};

/// The read operations measured on the file store (its writes are measured separately).
pub(crate) const READ_OPS: [Op; 4] = [Op::Check, Op::Check5, Op::Get, Op::ListUser];

/// Bytes of each record the raw baseline appends: about what psm's journal writes per
/// `store_permissions` of the workload (see [`Durable::psm_record_bytes`]).
pub(crate) const RAW_RECORD_BYTES: usize = 150;

/// A fresh directory under `file_dir`, removed when dropped.
pub(crate) fn fresh_dir(file_dir: &Path, prefix: &str) -> BenchResult<TempDir> {
    fs::create_dir_all(file_dir)?;
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(file_dir)?)
}

/// A two-worker runtime, as in the memory provider's two-thread runs.
fn two_workers() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn current_thread() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The file store's figures of every round, and what its checks found wrong.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// `store_permissions` of the whole workload by concurrent tasks, each awaiting its own calls.
    pub(crate) concurrent_store: OpResults,
    /// One task on a current-thread runtime, as the memory provider's single-task run.
    pub(crate) single: OpResults,
    /// Two tasks on a two-worker runtime, as the memory provider's two-thread run.
    pub(crate) threads2: OpResults,
    /// The memory provider, filled the same way on the same runtimes, its reads timed right
    /// before the file store's, operation by operation: the pair behind the file / memory ratios.
    pub(crate) memory_single: OpResults,
    pub(crate) memory_threads2: OpResults,
    /// Seconds to reopen the filled store, every round.
    pub(crate) reopen_secs: Vec<f64>,
    pub(crate) problems: Vec<String>,
}

/// Stores the positions `0..n` of the insert order with `writers` tasks (contiguous slices, each
/// awaiting its calls one by one); returns the elapsed time and the tally of `true` answers.
async fn fill_concurrently(
    m: &Manager,
    w: &Arc<Workload>,
    n: usize,
    writers: usize,
) -> BenchResult<(Duration, u64)> {
    let writers = writers.clamp(1, n.max(1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let range = n * i / writers..n * (i + 1) / writers;
            let (m, w) = (m.clone(), Arc::clone(w));
            tokio::spawn(async move { run_op(&m, &w, Op::Store, range).await })
        })
        .collect();
    let mut hits = 0;
    for task in tasks {
        hits += task.await??;
    }
    Ok((start.elapsed(), hits))
}

/// Runs `calls` of `op` as two tasks, one per half; returns the elapsed time and the tally.
async fn two_halves(
    m: &Manager,
    w: &Arc<Workload>,
    op: Op,
    calls: usize,
) -> BenchResult<(Duration, u64)> {
    let mid = calls / 2;
    let start = Instant::now();
    let halves = [0..mid, mid..calls].map(|range| {
        let (m, w) = (m.clone(), Arc::clone(w));
        tokio::spawn(async move { run_op(&m, &w, op, range).await })
    });
    let mut hits = 0;
    for half in halves {
        hits += half.await??;
    }
    Ok((start.elapsed(), hits))
}

/// One round: fills a fresh file store with `writers` concurrent durable writers (timed), times the
/// reads from one task and from two threads, then closes the store, reopens it and checks that
/// every session came back with its permissions.
pub(crate) fn reads(
    w: &Arc<Workload>,
    file_dir: &Path,
    writers: usize,
    out: &mut Reads,
) -> BenchResult<()> {
    let dir = fresh_dir(file_dir, "reads-")?;
    let config = FileConfig::new(dir.path());
    let multi = two_workers()?;
    let single = current_thread()?;
    {
        let storage = FileStorage::open(config.clone())?;
        let m = multi.block_on(Manager::from_store(storage.sessions()))?;

        let (elapsed, hits) = multi.block_on(fill_concurrently(&m, w, w.len(), writers))?;
        out.concurrent_store
            .record(Op::Store, w.len(), elapsed, hits);
        let memory = multi.block_on(
            Manager::builder()
                .provider("memory")
                .default_ttl(m.default_ttl().map(psm::Ttl::as_secs))
                .build(),
        )?;
        multi.block_on(fill_concurrently(&memory, w, w.len(), writers))?;

        // Memory, then file, operation by operation: both sides of each ratio under one load.
        for op in READ_OPS {
            for (manager, results) in [(&memory, &mut out.memory_single), (&m, &mut out.single)] {
                let calls = op.calls(w);
                let start = Instant::now();
                let hits = single.block_on(run_op(manager, w, op, 0..calls))?;
                results.record(op, calls, start.elapsed(), hits);
            }
        }
        for op in READ_OPS {
            for (manager, results) in [(&memory, &mut out.memory_threads2), (&m, &mut out.threads2)]
            {
                let calls = op.calls(w);
                let (elapsed, hits) = multi.block_on(two_halves(manager, w, op, calls))?;
                results.record(op, calls, elapsed, hits);
            }
        }
        multi.block_on(memory.close())?;
        multi.block_on(m.close())?;
        storage.close();
    }

    let start = Instant::now();
    let again = FileStorage::open(config)?;
    out.reopen_secs.push(start.elapsed().as_secs_f64());
    verify_reopened(&again, w, w.len(), "file reads store", &mut out.problems)?;
    again.close();
    Ok(())
}

/// After a reopen: no damage, `n` live sessions, and the check of every position of the access
/// sequence whose session is among the first `n` stored answers as the workload dictates.
fn verify_reopened(
    storage: &FileStorage,
    w: &Workload,
    n: usize,
    what: &str,
    problems: &mut Vec<String>,
) -> BenchResult<()> {
    let damage = storage.damage();
    if !damage.is_empty() {
        problems.push(format!(
            "{what}: reopened with {} damaged records",
            damage.len()
        ));
    }
    let live = storage.storage_stats()?.active_sessions;
    if live != n as u64 {
        problems.push(format!(
            "{what}: reopened with {live} sessions, expected {n}"
        ));
    }
    let stored: std::collections::HashSet<usize> = w.insert_order[..n].iter().copied().collect();
    let sessions = storage.sessions();
    let (mut asked, mut wrong) = (0_u64, 0_u64);
    for (k, &s) in w.order.iter().enumerate() {
        if !stored.contains(&s) {
            continue;
        }
        let id = SessionIdRef::parse(&w.read_ids[k])?;
        let permission = PermissionRef::parse(&w.pool[w.check[k]])?;
        asked += 1;
        if sessions.check_permission_now(id, permission)? != (k % 2 == 0) {
            wrong += 1;
        }
    }
    if wrong > 0 || asked != n as u64 {
        problems.push(format!(
            "{what}: after reopening, {wrong} of {asked} checks answered wrong"
        ));
    }
    Ok(())
}

/// One durable writer against the bare disk, every round.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// psm's `store_permissions` per second, one task awaiting each call, every round.
    pub(crate) psm: Vec<f64>,
    /// Appends of [`RAW_RECORD_BYTES`] each followed by `File::sync_data`, per second, every round.
    pub(crate) raw: Vec<f64>,
    /// Journal bytes psm wrote per `store_permissions` (the last round's).
    pub(crate) psm_record_bytes: f64,
    pub(crate) problems: Vec<String>,
}

/// The durable single-writer runs alternate in this many slices per round.
const SLICES: usize = 10;

/// One round: `ops` durable `store_permissions` through the manager from one task, and `ops`
/// appends + `sync_data` to a plain file in a sibling directory. The two alternate in slices (psm
/// first in even slices, the raw loop first in odd ones), so both see the same machine load: a
/// shared VM's fsync latency drifts by tens of percent within seconds.
pub(crate) fn durable_single(
    w: &Workload,
    file_dir: &Path,
    ops: usize,
    out: &mut Durable,
) -> BenchResult<()> {
    let ops = ops.min(w.len());
    let psm_dir = fresh_dir(file_dir, "durable-")?;
    let config = FileConfig::new(psm_dir.path());
    let raw_dir = fresh_dir(file_dir, "raw-")?;
    let mut raw = Raw::create(raw_dir.path())?;
    let rt = current_thread()?;
    let storage = FileStorage::open(config.clone())?;
    let before = journal_bytes(psm_dir.path())?;
    let m = rt.block_on(Manager::from_store(storage.sessions()))?;

    let (mut psm_time, mut raw_time, mut hits) = (Duration::ZERO, Duration::ZERO, 0);
    let slice = ops.div_ceil(SLICES).max(1);
    for (i, from) in (0..ops).step_by(slice).enumerate() {
        let range = from..(from + slice).min(ops);
        for psm_turn in [i % 2 == 0, i % 2 == 1] {
            let start = Instant::now();
            if psm_turn {
                hits += rt.block_on(run_op(&m, w, Op::Store, range.clone()))?;
                psm_time += start.elapsed();
            } else {
                raw.append(range.len())?;
                raw_time += start.elapsed();
            }
        }
    }
    rt.block_on(m.close())?;
    storage.close();
    drop(storage);
    if hits != ops as u64 {
        out.problems.push(format!(
            "file single writer: {hits} of {ops} stores answered true"
        ));
    }
    out.psm_record_bytes = (journal_bytes(psm_dir.path())? - before) as f64 / ops as f64;
    out.psm.push(ops as f64 / psm_time.as_secs_f64().max(1e-9));
    out.raw.push(ops as f64 / raw_time.as_secs_f64().max(1e-9));
    raw.verify(ops, &mut out.problems)?;

    let again = FileStorage::open(config)?;
    verify_reopened(&again, w, ops, "file single writer", &mut out.problems)?;
    again.close();
    Ok(())
}

/// Bytes of the journal segments in `dir` (the documented `journal-<n>.log` files).
fn journal_bytes(dir: &Path) -> BenchResult<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("journal-") && name.ends_with(".log") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The disk's own rate: appends of [`RAW_RECORD_BYTES`] to a new file, each followed by
/// `File::sync_data` (fdatasync), as a journal without group commit would do.
#[derive(Debug)]
struct Raw {
    file: fs::File,
    record: [u8; RAW_RECORD_BYTES],
    written: u64,
}

impl Raw {
    fn create(dir: &Path) -> BenchResult<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(dir.join("raw.log"))?;
        let mut record = [b'r'; RAW_RECORD_BYTES];
        record[RAW_RECORD_BYTES - 1] = b'\n';
        Ok(Self {
            file,
            record,
            written: 0,
        })
    }

    fn append(&mut self, n: usize) -> BenchResult<()> {
        for _ in 0..n {
            // A different record each time, as a journal's would be.
            self.record[..8].copy_from_slice(&self.written.to_le_bytes());
            self.file.write_all(&self.record)?;
            self.file.sync_data()?;
            self.written += 1;
        }
        Ok(())
    }

    /// The file holds `ops` records.
    fn verify(&self, ops: usize, problems: &mut Vec<String>) -> BenchResult<()> {
        let len = self.file.metadata()?.len();
        let expected = (ops * RAW_RECORD_BYTES) as u64;
        if len != expected {
            problems.push(format!(
                "raw fsync baseline: the file holds {len} bytes, expected {expected}"
            ));
        }
        Ok(())
    }
}
