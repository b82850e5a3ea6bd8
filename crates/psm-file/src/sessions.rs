//! [`FileStore`]: the durable `PermissionStore`.

use psm_core::{
    Capabilities, NewSession, Page, PermissionCheck, PermissionList, PermissionRef,
    PermissionStore, Result, SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, Ttl,
    UserId, async_trait,
};

use crate::{
    FileConfig, FileStorage, StorageStats,
    journal::Batch,
    records::{Entry, metadata_json},
    storage::{PROVIDER, Tables, blocking},
};

/// The durable, crash-safe `PermissionStore` of one storage directory.
///
/// Reads (checks, `get_permissions`, listings) are served from the in-memory index and never touch
/// the disk. Writes are acknowledged only once the journal record that describes them has been
/// fsynced; see [`FileStorage`] for the journal, compaction and backups.
///
/// # Expiry
/// As in the memory store: a session is expired when `now >= expires_at` by the store's clock,
/// expired sessions are missing to every call at once and are removed from memory by the
/// background cleanup (every `cleanup_interval`) or `cleanup_expired_sessions`. An expired
/// session's journal record is dropped at the next compaction or open.
///
/// # Listing order
/// Per user: by `created_at`, then id. Without a user: shard by shard, by id within a shard (the
/// same stable order as the memory store; paging visits every live session once).
///
/// # Clone
/// Cloning is cheap and shares the open directory.
#[derive(Clone)]
pub struct FileStore {
    storage: FileStorage,
}

impl FileStore {
    pub(crate) fn new(storage: FileStorage) -> Self {
        Self { storage }
    }

    /// Opens the store in `config.storage_dir` (see [`FileStorage::open`]) and returns its session
    /// store.
    ///
    /// # Errors
    /// As [`FileStorage::open`].
    pub fn open(config: FileConfig) -> Result<Self> {
        FileStorage::open(config).map(|s| s.sessions())
    }

    /// The storage directory this store lives in (and its other stores).
    pub fn storage(&self) -> &FileStorage {
        &self.storage
    }

    /// The seed's `get_storage_stats`.
    ///
    /// # Errors
    /// As [`FileStorage::storage_stats`].
    pub fn storage_stats(&self) -> Result<StorageStats> {
        self.storage.storage_stats()
    }

    /// Removes every session, durably (the seed's `clear_all_sessions`), and returns how many
    /// live ones it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close; `ProviderConnection` if the journal cannot be written.
    pub async fn clear_all_sessions(&self) -> Result<u64> {
        self.storage
            .inner()
            .write(|t, batch| {
                let n = t.sessions.clear_all_sessions();
                batch.push(&Entry::SessionsCleared);
                Ok(n)
            })
            .await
    }

    /// Synchronous `check_permission`, served from memory (the facade's fast path).
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close.
    pub fn check_permission_now(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.sessions.check_permission_now(id, permission))
    }

    /// Synchronous `get_permissions`, served from memory.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close.
    pub fn get_permissions_now(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.sessions.get_permissions_now(id))
    }

    /// Synchronous `check_permissions`, served from memory.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close.
    pub fn check_permissions_now(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        Ok(self
            .tables()?
            .sessions
            .check_permissions_now(id, permissions))
    }

    /// Synchronous `get_session_info`, served from memory.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close.
    pub fn get_session_info_now(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        Ok(self.tables()?.sessions.get_session_info_now(id))
    }

    /// Synchronous `list_sessions`, served from memory.
    ///
    /// # Errors
    /// `ProviderNotInitialized` after close.
    pub fn list_sessions_now(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        Ok(self.tables()?.sessions.list_sessions_now(user, page))
    }

    fn tables(&self) -> Result<&Tables> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(&inner.tables)
    }
}

/// Appends the current record of `id` (if stored) to the batch.
fn push_session(t: &Tables, batch: &mut Batch, id: &SessionIdRef) {
    if let Some(r) = t.sessions.export(id) {
        let md = metadata_json(&r.metadata);
        batch.push(&Entry::session(&r, &md));
    }
}

#[async_trait]
impl PermissionStore for FileStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    /// Durable, time from the store's clock, lazy expiry (not native ttl), one process.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_honours_clock(true)
            .with_durable(true)
    }

    /// Opens the directory again after `close` (reloading it from disk) and starts the background
    /// cleanup inside a Tokio runtime.
    async fn initialize(&self) -> Result<()> {
        // Reopening reads the whole directory: keep it off the async worker threads.
        let storage = self.storage.clone();
        blocking(move || storage.reopen()).await?;
        self.storage.start_cleaner();
        Ok(())
    }

    /// Makes every queued write durable, stops the writer and releases the directory (for every
    /// store of this directory).
    async fn close(&self) -> Result<()> {
        // Closing waits for queued fsyncs and a running compaction.
        let storage = self.storage.clone();
        blocking(move || {
            storage.close();
            Ok(())
        })
        .await
    }

    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        let id = id.to_owned();
        self.storage
            .inner()
            .write(move |t, batch| {
                t.sessions.store_permissions_now(&id, session)?;
                push_session(t, batch, &id);
                Ok(())
            })
            .await
    }

    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        let id = id.to_owned();
        self.storage
            .inner()
            .write(move |t, batch| {
                let evicted = t.sessions.create_session_now(&id, session, limit)?;
                for e in &evicted {
                    batch.push(&Entry::SessionRemoved(e.as_str()));
                }
                push_session(t, batch, &id);
                Ok(evicted)
            })
            .await
    }

    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        self.check_permission_now(id, permission)
    }

    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        Ok(self
            .tables()?
            .sessions
            .check_permissions_now(id, permissions))
    }

    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        self.get_permissions_now(id)
    }

    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        let id = id.to_owned();
        self.storage
            .inner()
            .write(move |t, batch| {
                let removed = t.sessions.invalidate_session_now(&id);
                if removed {
                    batch.push(&Entry::SessionRemoved(id.as_str()));
                }
                Ok(removed)
            })
            .await
    }

    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        let id = id.to_owned();
        self.storage
            .inner()
            .write(move |t, batch| {
                let updated = t.sessions.update_permissions_now(&id, permissions, ttl);
                if updated {
                    push_session(t, batch, &id);
                }
                Ok(updated)
            })
            .await
    }

    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        let id = id.to_owned();
        self.storage
            .inner()
            .write(move |t, batch| {
                let extended = t.sessions.extend_session_ttl_now(&id, ttl);
                if extended {
                    push_session(t, batch, &id);
                }
                Ok(extended)
            })
            .await
    }

    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        self.get_session_info_now(id)
    }

    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        self.list_sessions_now(user, page)
    }

    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        self.storage.inner().cleanup().await
    }

    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        let user = user.clone();
        self.storage
            .inner()
            .write(move |t, batch| {
                let ids = t.sessions.user_session_ids(&user);
                let live = t.sessions.invalidate_user_sessions_now(&user);
                for id in &ids {
                    batch.push(&Entry::SessionRemoved(id.as_str()));
                }
                Ok(live)
            })
            .await
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("storage", &self.storage)
            .finish()
    }
}
