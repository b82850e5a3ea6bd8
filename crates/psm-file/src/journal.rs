//! The journal writer: one thread that applies every write, appends its records and makes them
//! durable with one fsync per batch (group commit).
//!
//! Callers submit a closure. The writer takes every closure waiting in its queue, runs them in
//! order (each changes the in-memory tables and appends the records that describe the new state),
//! writes the batch with one `write` and one `fdatasync`, and only then answers every caller of the
//! batch. Because one thread applies all writes and appends their records in the same order, the
//! journal's order is the order of the changes, and replaying it rebuilds the same state.
//!
//! A failed write or fsync poisons the writer: the batch's callers get the error, and every later
//! write is refused without being applied (after a failed fsync the kernel may have dropped the
//! dirty pages, so the only safe way on is to reopen and replay what is on disk).

use std::{
    fs::File,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
        mpsc,
    },
    thread,
};

use parking_lot::Mutex;
use psm_core::{Error, ErrorKind, Result};
use tokio::sync::oneshot;

use crate::{
    compact::{self, CompactRequest, StateSource},
    dir::{StorageDir, io_error},
    format::{FileKind, encode_header, push_frame},
    records::{self, Entry},
};

/// The most bytes gathered into one batch before it is written.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The records of one batch, in the order they were appended.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    records: u64,
    /// A record was too large to write; the batch fails and the store stops taking writes.
    oversized: bool,
}

impl Batch {
    /// Appends one record.
    pub(crate) fn push(&mut self, entry: &Entry<'_>) {
        if push_frame(&mut self.buf, |out| records::encode(entry, out)) {
            self.records += 1;
        } else {
            self.oversized = true;
        }
    }
}

/// The store's state, shared by the storage handle (which checks it on every call) and the
/// writer (which marks it failed).
pub(crate) const CLOSED: u8 = 0;
/// Open and healthy.
pub(crate) const OPEN: u8 = 1;
/// A journal write failed: memory may hold changes that are not on disk.
pub(crate) const FAILED: u8 = 2;

/// The store's state, alone on its cache line: every read loads it, so it must not share a line
/// with anything that is written often.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct StoreState(AtomicU8);

impl StoreState {
    pub(crate) fn new(state: u8) -> Self {
        Self(AtomicU8::new(state))
    }
}

impl std::ops::Deref for StoreState {
    type Target = AtomicU8;

    fn deref(&self) -> &AtomicU8 {
        &self.0
    }
}

/// How long the writer keeps polling its queue after a batch before it sleeps. A lone writer
/// that submits its next write within this window finds the writer awake, which saves a thread
/// wake-up (tens of microseconds on a VM) per durable write; concurrent writers keep the queue
/// busy anyway. It yields while polling, so it takes no CPU another thread wants.
const POLL_BEFORE_SLEEP: std::time::Duration = std::time::Duration::from_micros(200);

/// The next message: polled for a short while, then waited for.
fn next_message(rx: &mpsc::Receiver<Msg>) -> Option<Msg> {
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(msg) => return Some(msg),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < POLL_BEFORE_SLEEP => {
                thread::yield_now();
            }
            Err(mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// The error of a store whose journal could not be written. Not retryable: only reopening
/// (which replays what is really on disk) makes the store consistent again.
pub(crate) fn failed(why: &str) -> Error {
    Error::provider(format!(
        "file store stopped after a journal write failed ({why}); close and reopen it"
    ))
}

/// A submitted write: applied on the writer thread, answered after the batch is durable.
pub(crate) trait Work: Send {
    fn apply(&mut self, batch: &mut Batch);
    fn finish(self: Box<Self>, result: Result<()>);
}

struct Op<F, R> {
    f: Option<F>,
    out: Option<R>,
    tx: oneshot::Sender<Result<R>>,
}

impl<F, R> Work for Op<F, R>
where
    F: FnOnce(&mut Batch) -> R + Send,
    R: Send,
{
    fn apply(&mut self, batch: &mut Batch) {
        if let Some(f) = self.f.take() {
            self.out = Some(f(batch));
        }
    }

    fn finish(self: Box<Self>, result: Result<()>) {
        let answer = match (result, self.out) {
            (Ok(()), Some(out)) => Ok(out),
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::provider("file store: a write was not applied")),
        };
        // The caller may have given up waiting; the write stands either way.
        let _ = self.tx.send(answer);
    }
}

/// A message to the writer thread.
pub(crate) enum Msg {
    Work(Box<dyn Work>),
    Compact(CompactRequest),
    /// Sent by the compaction thread when it has written its snapshot: seal the current segment
    /// (for a consistent backup) and answer with the segment that was sealed.
    Seal(mpsc::Sender<Result<u64>>),
    /// Sent by the compaction thread before it renames its snapshot into place: make every applied
    /// change durable, and answer whether the journal is healthy.
    Barrier(mpsc::Sender<Result<()>>),
    CompactionDone(Result<compact::Outcome>),
    Stop(mpsc::Sender<()>),
}

/// Counters the statistics read.
#[derive(Debug, Default)]
pub(crate) struct JournalStats {
    pub(crate) batches: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Writes, fsyncs, renames and removals of data files.
    pub(crate) file_operations: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) backups: AtomicU64,
    /// Records written since the last backup started.
    pub(crate) changes_since_backup: AtomicU64,
    /// Tests only: the next journal write fails as if the disk had refused it.
    #[cfg(test)]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
}

/// The handle callers hold; the writer thread owns everything else.
#[derive(Debug)]
pub(crate) struct Journal {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    stats: Arc<JournalStats>,
    state: Arc<StoreState>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// Where the writer starts.
pub(crate) struct WriterStart {
    pub(crate) dir: Arc<StorageDir>,
    /// The first segment number to write (one past every existing segment).
    pub(crate) segment: u64,
    /// Journal bytes after the newest snapshot, already on disk.
    pub(crate) bytes_since_snapshot: u64,
    pub(crate) snapshot_bytes: u64,
    pub(crate) compact_min_bytes: u64,
    pub(crate) enable_backup: bool,
    pub(crate) max_backup_files: usize,
    pub(crate) compress: bool,
    pub(crate) source: Arc<dyn StateSource>,
    /// The store's state ([`OPEN`], [`FAILED`], …), marked failed by the writer.
    pub(crate) state: Arc<StoreState>,
}

impl Journal {
    /// Creates the first segment and starts the writer thread.
    pub(crate) fn start(start: WriterStart) -> Result<Self> {
        let file = new_segment(&start.dir, start.segment)?;
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(JournalStats::default());
        let state = start.state;
        let writer = Writer {
            file,
            segment: start.segment,
            bytes_since_snapshot: start.bytes_since_snapshot,
            snapshot_bytes: start.snapshot_bytes,
            compact_min_bytes: start.compact_min_bytes,
            enable_backup: start.enable_backup,
            max_backup_files: start.max_backup_files,
            compress: start.compress,
            dir: start.dir,
            source: start.source,
            stats: Arc::clone(&stats),
            state: Arc::clone(&state),
            failure: None,
            self_tx: tx.clone(),
            compacting: None,
            pending: Vec::new(),
        };
        let handle = thread::Builder::new()
            .name("psm-file-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::provider(format!("file store: cannot start the writer: {e}")))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            stats,
            state,
            thread: Mutex::new(Some(handle)),
        })
    }

    /// Runs `f` on the writer thread and answers once the records it appended are durable.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after [`stop`](Self::stop); `ProviderConnection` when the
    /// journal could not be written (then and ever after, until the store is reopened).
    pub(crate) async fn submit<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Batch) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Work(Box::new(Op {
            f: Some(f),
            out: None,
            tx,
        })))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Asks for a compaction (and a backup) and waits for it; returns the backup's path.
    pub(crate) async fn compact(&self, backup: bool) -> Result<Option<PathBuf>> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Compact(CompactRequest {
            backup,
            done: Some(tx),
        }))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Asks for a compaction without waiting (the periodic backup).
    pub(crate) fn compact_in_background(&self, backup: bool) -> Result<()> {
        self.send(Msg::Compact(CompactRequest { backup, done: None }))
    }

    fn send(&self, msg: Msg) -> Result<()> {
        let tx = self.tx.lock();
        let tx = tx.as_ref().ok_or_else(stopped)?;
        tx.send(msg).map_err(|_| stopped())
    }

    /// Finishes every queued write and any running compaction, then stops the writer. Blocks.
    pub(crate) fn stop(&self) {
        let tx = self.tx.lock().take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Msg::Stop(done_tx)).is_ok() {
                let _ = done_rx.recv();
            }
        }
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// Whether a write failed (the store then refuses writes until reopened).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == FAILED
    }

    pub(crate) fn stats(&self) -> &JournalStats {
        &self.stats
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::ProviderNotInitialized, "file store is closed")
}

/// Creates segment `n` with its header, durable, and returns it ready for appending.
fn new_segment(dir: &StorageDir, n: u64) -> Result<File> {
    let path = dir.journal_path(n);
    let mut f = dir.create_file(&path)?;
    f.write_all(&encode_header(FileKind::Journal, 0))
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("cannot write", &path, &e))?;
    dir.sync()?;
    Ok(f)
}

struct Writer {
    dir: Arc<StorageDir>,
    file: File,
    segment: u64,
    bytes_since_snapshot: u64,
    snapshot_bytes: u64,
    compact_min_bytes: u64,
    enable_backup: bool,
    max_backup_files: usize,
    compress: bool,
    source: Arc<dyn StateSource>,
    stats: Arc<JournalStats>,
    state: Arc<StoreState>,
    failure: Option<Error>,
    /// Handed to the compaction thread so it can ask for a seal and report its end.
    self_tx: mpsc::Sender<Msg>,
    /// The running compaction's requests and thread.
    compacting: Option<(Vec<CompactRequest>, thread::JoinHandle<()>)>,
    /// Requests that arrived while a compaction ran.
    pending: Vec<CompactRequest>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut batch = Batch::default();
        let mut work: Vec<Box<dyn Work>> = Vec::new();
        let mut stop: Option<mpsc::Sender<()>> = None;
        while stop.is_none() {
            let Some(first) = next_message(&rx) else {
                break;
            };
            let mut next = Some(first);
            // Gather everything already queued: these writes share one fsync.
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Work(mut w) => {
                        if self.failure.is_none() {
                            w.apply(&mut batch);
                        }
                        work.push(w);
                    }
                    Msg::Compact(req) => self.request_compaction(req),
                    Msg::Seal(reply) => {
                        // Everything applied so far must reach the sealed segment first.
                        self.flush(&mut batch, &mut work);
                        let _ = reply.send(self.rotate());
                    }
                    Msg::Barrier(reply) => {
                        // Everything applied so far (and so visible to a snapshot) is made
                        // durable before the snapshot may become the store.
                        self.flush(&mut batch, &mut work);
                        let _ = reply.send(self.health());
                    }
                    Msg::CompactionDone(result) => self.compaction_done(result),
                    Msg::Stop(done) => stop = Some(done),
                }
                if stop.is_some() || batch.buf.len() >= MAX_BATCH_BYTES {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.flush(&mut batch, &mut work);
            self.maybe_compact();
        }
        // Serve what is still queued, then wait for a running compaction.
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Work(mut w) = msg {
                if self.failure.is_none() {
                    w.apply(&mut batch);
                }
                work.push(w);
            }
        }
        self.flush(&mut batch, &mut work);
        // The compaction thread may ask for a seal; serve it until the compaction reports.
        while self.compacting.is_some() {
            match rx.recv_timeout(std::time::Duration::from_millis(5)) {
                Ok(Msg::Seal(reply)) => {
                    let _ = reply.send(self.rotate());
                }
                Ok(Msg::Barrier(reply)) => {
                    let _ = reply.send(self.health());
                }
                Ok(Msg::CompactionDone(result)) => {
                    self.pending.clear();
                    self.compaction_done(result);
                }
                Ok(Msg::Work(w)) => w.finish(Err(stopped())),
                Ok(Msg::Compact(req)) => req.answer(Err(stopped())),
                Ok(Msg::Stop(done)) => {
                    let _ = done.send(());
                }
                Err(_) => {
                    let finished = self
                        .compacting
                        .as_ref()
                        .is_none_or(|(_, h)| h.is_finished());
                    if finished {
                        // It ended without reporting (it panicked).
                        self.compaction_done(Err(Error::provider(
                            "file store: the compaction thread stopped",
                        )));
                    }
                }
            }
        }
        for req in self.pending.drain(..) {
            req.answer(Err(stopped()));
        }
        if let Some(done) = stop {
            let _ = done.send(());
        }
    }

    /// Writes and fsyncs the batch, then answers its callers.
    fn flush(&mut self, batch: &mut Batch, work: &mut Vec<Box<dyn Work>>) {
        if work.is_empty() && batch.buf.is_empty() {
            return;
        }
        if batch.oversized && self.failure.is_none() {
            self.fail(failed("a record is larger than 16 MiB"));
        }
        let result = match &self.failure {
            Some(e) => Err(copy_error(e)),
            None if batch.buf.is_empty() => Ok(()),
            None => {
                let records = batch.records;
                push_frame(&mut batch.buf, |out| {
                    records::encode(&Entry::Commit { records }, out);
                });
                self.write(&batch.buf, records)
            }
        };
        batch.buf.clear();
        batch.records = 0;
        batch.oversized = false;
        for w in work.drain(..) {
            w.finish(copy_result(&result));
        }
    }

    fn write(&mut self, buf: &[u8], records: u64) -> Result<()> {
        let path = self.dir.journal_path(self.segment);
        #[cfg(test)]
        if self.stats.fail_next_write.swap(false, Ordering::Relaxed) {
            // A write refused outright (disk full, say): nothing reaches the file.
            return self.write_failed(&path, &std::io::Error::other("injected fault"));
        }
        let res = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        self.stats.file_operations.fetch_add(2, Ordering::Relaxed);
        match res {
            Ok(()) => {
                let n = buf.len() as u64;
                self.bytes_since_snapshot += n;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.records.fetch_add(records, Ordering::Relaxed);
                self.stats.bytes.fetch_add(n, Ordering::Relaxed);
                self.stats
                    .changes_since_backup
                    .fetch_add(records, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => self.write_failed(&path, &e),
        }
    }

    fn write_failed(&mut self, path: &std::path::Path, e: &std::io::Error) -> Result<()> {
        let err = failed(&format!("{}: {e}", path.display()));
        self.fail(copy_error(&err));
        Err(err)
    }

    /// Stops taking writes: memory may now hold changes the disk does not.
    fn fail(&mut self, err: Error) {
        tracing::error!(error = %err, "file store: journal write failed; refusing every call until reopened");
        // Only an open store becomes failed: a store being closed stays closed, so a reopen is not
        // mistaken for a no-op.
        let _ = self
            .state
            .compare_exchange(OPEN, FAILED, Ordering::AcqRel, Ordering::Acquire);
        self.failure = Some(err);
    }

    fn health(&self) -> Result<()> {
        match &self.failure {
            Some(e) => Err(copy_error(e)),
            None => Ok(()),
        }
    }

    /// Starts a new segment and returns the number of the one it sealed.
    fn rotate(&mut self) -> Result<u64> {
        if let Some(e) = &self.failure {
            return Err(copy_error(e));
        }
        let sealed = self.segment;
        match new_segment(&self.dir, sealed + 1) {
            Ok(f) => {
                self.file = f;
                self.segment = sealed + 1;
                self.stats.file_operations.fetch_add(3, Ordering::Relaxed);
                Ok(sealed)
            }
            Err(e) => {
                let err = failed(e.message());
                self.fail(copy_error(&err));
                Err(err)
            }
        }
    }

    fn maybe_compact(&mut self) {
        if self.compacting.is_some() || self.failure.is_some() {
            return;
        }
        if self.bytes_since_snapshot > self.compact_min_bytes.max(self.snapshot_bytes) {
            self.request_compaction(CompactRequest {
                backup: self.enable_backup,
                done: None,
            });
        }
    }

    fn request_compaction(&mut self, req: CompactRequest) {
        if let Some(e) = &self.failure {
            req.answer(Err(copy_error(e)));
            return;
        }
        if self.compacting.is_some() {
            self.pending.push(req);
            return;
        }
        let mut reqs = vec![req];
        reqs.append(&mut self.pending);
        // Everything before the rotation is in the sealed segments; the snapshot covers them.
        let base = match self.rotate() {
            Ok(sealed) => sealed + 1,
            Err(e) => {
                for r in reqs {
                    r.answer(Err(copy_error(&e)));
                }
                return;
            }
        };
        self.bytes_since_snapshot = 0;
        let backup = reqs.iter().any(|r| r.backup);
        let job = compact::Job {
            dir: Arc::clone(&self.dir),
            base,
            backup,
            max_backup_files: self.max_backup_files,
            compress: self.compress,
            source: Arc::clone(&self.source),
            stats: Arc::clone(&self.stats),
            writer: self.self_tx.clone(),
        };
        let spawned = thread::Builder::new()
            .name("psm-file-compact".into())
            .spawn(move || job.run());
        match spawned {
            Ok(handle) => self.compacting = Some((reqs, handle)),
            Err(e) => {
                let err = Error::provider(format!("file store: cannot start a compaction: {e}"));
                for r in reqs {
                    r.answer(Err(copy_error(&err)));
                }
            }
        }
    }

    fn compaction_done(&mut self, result: Result<compact::Outcome>) {
        let Some((reqs, handle)) = self.compacting.take() else {
            return;
        };
        let _ = handle.join();
        let answer = match result {
            Ok(outcome) => {
                self.snapshot_bytes = outcome.snapshot_bytes;
                Ok(outcome.backup)
            }
            Err(e) => {
                tracing::warn!(error = %e, "file store: compaction failed; the journal is kept");
                Err(e)
            }
        };
        for r in reqs {
            r.answer(copy_result(&answer));
        }
        if !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            let first = pending.remove(0);
            self.pending = pending;
            self.request_compaction(first);
        }
    }
}

/// Used by the compaction thread to talk to the writer.
pub(crate) fn seal(writer: &mpsc::Sender<Msg>) -> Result<u64> {
    let (tx, rx) = mpsc::channel();
    writer.send(Msg::Seal(tx)).map_err(|_| stopped())?;
    rx.recv().map_err(|_| stopped())?
}

/// Waits until every change applied so far is durable; fails when the journal has failed.
pub(crate) fn barrier(writer: &mpsc::Sender<Msg>) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    writer.send(Msg::Barrier(tx)).map_err(|_| stopped())?;
    rx.recv().map_err(|_| stopped())?
}

/// Reports the end of a compaction to the writer.
pub(crate) fn compaction_done(writer: &mpsc::Sender<Msg>, result: Result<compact::Outcome>) {
    let _ = writer.send(Msg::CompactionDone(result));
}

/// A copy of `e` for another caller (errors carry an optional source and are not `Clone`; the
/// copy keeps kind, message and details).
pub(crate) fn copy_error(e: &Error) -> Error {
    e.details()
        .iter()
        .fold(Error::new(e.kind(), e.message().to_owned()), |n, (k, v)| {
            n.with_detail(k, v)
        })
}

fn copy_result<T: Clone>(r: &Result<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v.clone()),
        Err(e) => Err(copy_error(e)),
    }
}
