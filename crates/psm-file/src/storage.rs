//! [`FileStorage`]: one open storage directory and the in-memory tables rebuilt from it, shared
//! by the four stores of the file family.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::{Mutex, RwLock};
use psm_core::{DynClock, Error, ErrorKind, Result, SystemClock, Timestamp};
use psm_tables::{CacheTable, SessionTable, TableConfig, TokenTable, UserTable};
use tokio::task::JoinHandle;

use crate::{
    FileCache, FileConfig, FileStore, FileTokenStateStore, FileUserStore,
    compact::{self, StateSource},
    dir::StorageDir,
    journal::{Batch, CLOSED, Journal, OPEN, StoreState, WriterStart, failed},
    records::{Change, Entry, metadata_json},
    recovery::{self, Apply, DamageReport},
    stats::{self, StorageStats},
};

/// The provider name every file adapter reports.
pub(crate) const PROVIDER: &str = "file";

/// One open storage directory: the durable home of sessions, users and token state.
///
/// Opening locks the directory (one store per directory, across processes), rebuilds the
/// in-memory tables from the newest snapshot and the journal, and starts the journal writer.
/// Reads are served from memory and never touch the disk. Every write is applied by the writer
/// thread, appended to the journal and acknowledged only after `fdatasync`; writes that arrive
/// together share one fsync.
///
/// Hand out the stores with [`sessions`](Self::sessions), [`users`](Self::users),
/// [`tokens`](Self::tokens) and [`cache`](Self::cache); they share this directory, its lock and its
/// journal. The cache is kept in memory only (see [`FileCache`]).
///
/// # Clone
/// Cloning is cheap and shares the open directory. It stays open until
/// [`close`](Self::close) or until the last clone (and every store handed out) is dropped.
#[derive(Clone)]
pub struct FileStorage {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: FileConfig,
    clock: DynClock,
    pub(crate) tables: Tables,
    open: RwLock<Option<Opened>>,
    /// Closed, open or failed (see `journal::OPEN`): one load on every call.
    state: Arc<StoreState>,
    damage: Mutex<Vec<DamageReport>>,
    started: Timestamp,
    cleanup_runs: AtomicU64,
    cleaner: Mutex<Option<JoinHandle<()>>>,
}

struct Opened {
    dir: Arc<StorageDir>,
    journal: Arc<Journal>,
}

/// The in-memory state, shared by the stores, the journal writer and compactions.
#[derive(Clone)]
pub(crate) struct Tables {
    pub(crate) sessions: SessionTable,
    pub(crate) users: UserTable,
    pub(crate) tokens: TokenTable,
    pub(crate) cache: CacheTable,
}

impl FileStorage {
    /// Opens (creating if needed) the store in `config.storage_dir`, reading time from the system
    /// clock. Blocks while the directory is read.
    ///
    /// # Errors
    /// `ProviderConfiguration` for a bad config; `Concurrency` when another store holds the
    /// directory; `Serialization` for files of an unknown format version; `ProviderConnection`
    /// for I/O errors.
    pub fn open(config: FileConfig) -> Result<Self> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`open`](Self::open), reading time from `clock`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_clock(config: FileConfig, clock: DynClock) -> Result<Self> {
        config.validate()?;
        let table_config = TableConfig {
            max_sessions: config.max_sessions,
            enable_monitoring: config.enable_monitoring,
            shards: config.shards,
            provider: PROVIDER,
        };
        let tables = Tables {
            sessions: SessionTable::with_clock(table_config, Arc::clone(&clock)),
            users: UserTable::default(),
            tokens: TokenTable::default(),
            cache: CacheTable::default(),
        };
        let started = clock.now();
        let inner = Arc::new(Inner {
            config,
            clock,
            tables,
            open: RwLock::new(None),
            state: Arc::new(StoreState::new(CLOSED)),
            damage: Mutex::new(Vec::new()),
            started,
            cleanup_runs: AtomicU64::new(0),
            cleaner: Mutex::new(None),
        });
        inner.reopen()?;
        Ok(Self { inner })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &FileConfig {
        &self.inner.config
    }

    /// The session store of this directory.
    pub fn sessions(&self) -> FileStore {
        FileStore::new(self.clone())
    }

    /// The user store of this directory.
    pub fn users(&self) -> FileUserStore {
        FileUserStore::new(self.clone())
    }

    /// The token state store of this directory.
    pub fn tokens(&self) -> FileTokenStateStore {
        FileTokenStateStore::new(self.clone())
    }

    /// The cache of this directory (in memory only).
    pub fn cache(&self) -> FileCache {
        FileCache::new(self.clone())
    }

    /// Whether the directory is open (false after [`close`](Self::close)). A store whose
    /// journal failed is still open (it holds the directory) but refuses every call until it is
    /// closed and reopened.
    pub fn is_open(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != CLOSED
    }

    /// The damage found when the store was last opened (torn or corrupt records that were
    /// skipped). Empty for a clean store.
    pub fn damage(&self) -> Vec<DamageReport> {
        self.inner.damage.lock().clone()
    }

    /// The seed's `get_storage_stats`.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close; `ProviderConnection` if the directory cannot be read.
    pub fn storage_stats(&self) -> Result<StorageStats> {
        let dir = self.inner.dir()?;
        let table = self.inner.tables.sessions.stats();
        let journal = self.inner.journal()?;
        let now = self.inner.clock.now();
        stats::collect(stats::Inputs {
            dir: &dir,
            config: &self.inner.config,
            uptime_seconds: u64::try_from(now.micros_since(self.inner.started) / 1_000_000)
                .unwrap_or(0),
            table: &table,
            journal: journal.stats(),
            cleanup_runs: self.inner.cleanup_runs.load(Ordering::Relaxed),
            damaged: self.inner.damage.lock().len() as u64,
            poisoned: journal.is_poisoned(),
        })
    }

    /// Writes a snapshot, removes the journal it covers and takes a backup; returns the backup's
    /// directory. Writes go on meanwhile.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close; `ProviderConnection` for I/O errors.
    pub async fn backup(&self) -> Result<PathBuf> {
        let journal = self.inner.journal()?;
        journal
            .compact(true)
            .await?
            .ok_or_else(|| Error::provider("file store: the compaction took no backup"))
    }

    /// Writes a snapshot and removes the journal segments it covers (no backup).
    ///
    /// # Errors
    /// As [`backup`](Self::backup).
    pub async fn compact(&self) -> Result<()> {
        self.inner.journal()?.compact(false).await.map(|_| ())
    }

    /// The backups of this store, oldest first.
    ///
    /// # Errors
    /// `ProviderConnection` if the backups directory cannot be read.
    pub fn list_backups(&self) -> Result<Vec<PathBuf>> {
        let dir = compact::backups_of(&self.inner.config.storage_dir);
        Ok(compact::list_backups(&dir)?
            .into_iter()
            .map(|n| dir.join(n))
            .collect())
    }

    /// Replaces the store in `storage_dir` with the backup in `backup` (a directory listed by
    /// [`list_backups`](Self::list_backups)). The store must be closed: the directory's lock is
    /// taken for the restore.
    ///
    /// The backup is read completely, without changing it, and refused if anything in it is
    /// damaged or missing. Its state then becomes one new snapshot of the store, renamed into place
    /// as the single commit point, so a crash leaves either the old store or the restored one. The
    /// replaced data is deleted (the other backups stay): back up first if you may want it.
    ///
    /// # Errors
    /// `Concurrency` if the store is open; `ProviderConfiguration` if `backup` is not a complete,
    /// undamaged backup; `Serialization` for a backup of a newer format; `ProviderConnection` for
    /// I/O errors.
    pub fn restore_backup(backup: &Path, storage_dir: &Path, file_permissions: u32) -> Result<()> {
        crate::restore::restore(backup, storage_dir, file_permissions)
    }

    /// Stops the writer after every queued write, releases the directory's lock and refuses
    /// further calls with `ProviderNotInitialized` until [`reopen`](Self::reopen).
    pub fn close(&self) {
        self.inner.close();
    }

    /// Opens the directory again after [`close`](Self::close), reloading it from disk; does
    /// nothing if it is open.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn reopen(&self) -> Result<()> {
        match self.inner.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            CLOSED => self.inner.reopen(),
            // A failed store is closed first: reopening replays what the disk really holds.
            _ => {
                self.inner.close();
                self.inner.reopen()
            }
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Starts the background cleanup (and periodic backup) inside a Tokio runtime.
    pub(crate) fn start_cleaner(&self) {
        let Some(every) = self.inner.config.effective_cleanup_interval() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = self.inner.cleaner.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        *slot = Some(rt.spawn(clean_every(weak, every)));
    }
}

/// Runs blocking file work on Tokio's blocking pool when a runtime is current, inline otherwise.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::provider(format!("file store: blocking task failed: {e}")))?,
        Err(_) => f(),
    }
}

async fn clean_every(inner: Weak<Inner>, every: Duration) {
    let Some(first) = tokio::time::Instant::now().checked_add(every) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        if let Err(e) = inner.cleanup().await {
            tracing::warn!(error = %e, "file store: background cleanup failed");
        }
    }
}

impl Inner {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Fails with `ProviderNotInitialized` when closed, and with `Provider` after a journal write
    /// failed: memory may then hold changes that never reached the disk, so reads are refused
    /// too until a reopen replays what the disk really holds.
    #[inline]
    pub(crate) fn ensure_open(&self) -> Result<()> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            CLOSED => Err(closed()),
            _ => Err(failed("an earlier write could not be made durable")),
        }
    }

    fn journal(&self) -> Result<Arc<Journal>> {
        self.open
            .read()
            .as_ref()
            .map(|o| Arc::clone(&o.journal))
            .ok_or_else(closed)
    }

    fn dir(&self) -> Result<Arc<StorageDir>> {
        self.open
            .read()
            .as_ref()
            .map(|o| Arc::clone(&o.dir))
            .ok_or_else(closed)
    }

    /// Runs `f` on the journal writer; answers once its records are durable.
    pub(crate) async fn write<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Tables, &mut Batch) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let journal = self.journal()?;
        let tables = self.tables.clone();
        journal.submit(move |batch| f(&tables, batch)).await?
    }

    /// Removes expired sessions, token families and cache entries; takes a backup when enabled
    /// and something changed. Returns the expired sessions removed.
    pub(crate) async fn cleanup(&self) -> Result<u64> {
        self.ensure_open()?;
        let now = self.now();
        // Removing expired sessions needs no record (a replay drops them by their expiry), so it
        // runs outside the writer (and, sweeping every shard, on the blocking pool); removed
        // families are journaled.
        let tables = self.tables.clone();
        let removed = blocking(move || {
            tables.cache.purge_expired(now);
            Ok(tables.sessions.cleanup())
        })
        .await?;
        self.write(move |t, batch| {
            for id in t.tokens.cleanup_expired_families(now) {
                batch.push(&Entry::FamilyRemoved(id.as_str()));
            }
            Ok(())
        })
        .await?;
        self.cleanup_runs.fetch_add(1, Ordering::Relaxed);
        if self.config.enable_backup {
            let journal = self.journal()?;
            if journal.stats().changes_since_backup.load(Ordering::Relaxed) > 0 {
                journal.compact_in_background(true)?;
            }
        }
        Ok(removed)
    }

    fn close(&self) {
        let opened = self.open.write().take();
        self.state.store(CLOSED, Ordering::Release);
        if let Some(h) = self.cleaner.lock().take() {
            h.abort();
        }
        if let Some(o) = opened {
            // Blocks until queued writes are durable; the lock goes with the directory handle.
            o.journal.stop();
        }
    }

    fn reopen(&self) -> Result<()> {
        let mut open = self.open.write();
        if open.is_some() {
            return Ok(());
        }
        let dir = Arc::new(StorageDir::open(
            &self.config.storage_dir,
            self.config.file_permissions,
            self.clock.now(),
        )?);
        self.tables.clear();
        let apply = Replay {
            tables: &self.tables,
            now: self.clock.now(),
        };
        let found = recovery::recover(&dir, &apply)?;
        if !found.damage.is_empty() {
            tracing::warn!(
                dir = %dir.root().display(),
                damaged = found.damage.len(),
                "file store: opened with damaged records skipped"
            );
        }
        *self.damage.lock() = found.damage;
        let journal = Journal::start(WriterStart {
            dir: Arc::clone(&dir),
            segment: found.next_segment,
            bytes_since_snapshot: found.bytes_since_snapshot,
            snapshot_bytes: found.snapshot_bytes,
            compact_min_bytes: self.config.compact_min_bytes,
            enable_backup: self.config.enable_backup,
            max_backup_files: self.config.max_backup_files,
            compress: self.config.compress_files,
            source: Arc::new(self.tables.clone()),
            state: Arc::clone(&self.state),
        })?;
        *open = Some(Opened {
            dir,
            journal: Arc::new(journal),
        });
        self.state.store(OPEN, Ordering::Release);
        Ok(())
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::ProviderNotInitialized, "file store is closed")
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Tables {
    fn clear(&self) {
        self.sessions.clear_all_sessions();
        self.users.clear();
        self.tokens.clear();
        self.cache.clear();
    }
}

impl StateSource for Tables {
    fn for_each_entry(&self, f: &mut dyn FnMut(&Entry<'_>)) {
        f(&Entry::SnapshotStart {
            sessions: self.sessions.len() as u64,
        });
        self.sessions.for_each_live_session(|r| {
            let md = metadata_json(&r.metadata);
            f(&Entry::session(&r, &md));
        });
        self.users.for_each_user(|u| f(&Entry::user(u)));
        self.tokens.for_each_family(|r| f(&Entry::family(&r)));
        self.tokens.for_each_epoch(|user, epoch| {
            f(&Entry::Epoch {
                user: user.as_str(),
                epoch,
            });
        });
    }
}

/// Applies replayed records to the tables.
pub(crate) struct Replay<'a> {
    tables: &'a Tables,
    now: Timestamp,
}

impl<'a> Replay<'a> {
    /// Replays into `tables`, dropping sessions that expired before `now`.
    pub(crate) fn new(tables: &'a Tables, now: Timestamp) -> Self {
        Self { tables, now }
    }
}

impl Apply for Replay<'_> {
    fn apply(&self, change: Change) -> Result<()> {
        let t = self.tables;
        match change {
            Change::Session(record) => {
                // A record that is already expired only says the session is gone.
                if record.expires_at.is_some_and(|x| x <= self.now) {
                    t.sessions.remove(&record.id);
                } else {
                    t.sessions.restore(record)?;
                }
            }
            Change::SessionRemoved(id) => {
                t.sessions.remove(&id);
            }
            Change::SessionsCleared => {
                t.sessions.clear_all_sessions();
            }
            Change::User(user) => t.users.restore(user)?,
            Change::UserRemoved(id) => {
                t.users.delete_user(&id);
            }
            Change::Family(record) => t.tokens.restore_family(record),
            Change::FamilyRemoved(id) => {
                t.tokens.remove_family(&id);
            }
            Change::Epoch(user, epoch) => t.tokens.set_user_epoch(&user, epoch),
            Change::Expect(sessions) => {
                t.sessions
                    .reserve(usize::try_from(sessions).unwrap_or(usize::MAX));
            }
            Change::End(_) | Change::Commit(_) => {}
        }
        Ok(())
    }
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("storage_dir", &self.inner.config.storage_dir)
            .field("open", &self.is_open())
            .field("sessions", &self.inner.tables.sessions.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use psm_core::{
        ErrorKind, NewSession, PermissionList, PermissionRef, PermissionStore, SessionIdRef, UserId,
    };

    use super::*;

    fn session() -> NewSession {
        NewSession::new(
            UserId::parse("alice").unwrap(),
            PermissionList::parse(["read"]).unwrap(),
        )
    }

    /// After a failed journal write, memory may hold a change the disk does not: the store refuses
    /// every call (not retryable) until a reopen replays the disk, which drops that change.
    #[tokio::test]
    async fn a_failed_journal_write_stops_the_store_until_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FileStorage::open(FileConfig::new(tmp.path())).unwrap();
        let s = storage.sessions();
        let (kept, lost) = (
            SessionIdRef::parse("kept").unwrap(),
            SessionIdRef::parse("lost").unwrap(),
        );
        s.store_permissions(kept, session()).await.unwrap();
        storage
            .inner
            .journal()
            .unwrap()
            .stats()
            .fail_next_write
            .store(true, Ordering::Relaxed);
        let e = s.store_permissions(lost, session()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Provider, "{e}");
        assert!(!e.is_retryable());
        assert!(e.message().contains("reopen"), "{e}");
        let read = PermissionRef::parse("read").unwrap();
        for result in [
            s.check_permission(kept, read).await.map(|_| ()),
            s.get_permissions(lost).await.map(|_| ()),
            s.store_permissions(kept, session()).await,
        ] {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Provider);
        }
        assert!(storage.storage_stats().unwrap().read_only_after_error);
        assert!(
            storage.backup().await.is_err(),
            "no snapshot of unsynced state"
        );
        // One initialize reopens a failed store (it closes it first).
        s.initialize().await.unwrap();
        assert!(s.check_permission(kept, read).await.unwrap());
        // The write was refused before reaching the file. (Had its fsync failed instead, it might
        // or might not be there: a failed write was never acknowledged, either way is allowed.)
        assert!(!s.check_permission(lost, read).await.unwrap());
        s.store_permissions(lost, session()).await.unwrap();
    }
}
