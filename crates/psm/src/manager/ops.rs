//! The seed's operations on plain arguments: validate everything first, then hand the validated values
//! to `typed.rs`. A rejected call returns before touching the store.

use psm_core::{
    Page, PermissionCheck, PermissionRef, Result, SessionData, SessionId, SessionInfo,
    SessionLimit,
    util::{DEFAULT_SESSION_PREFIX, generate_session_id},
};
use serde_json::Value;

use super::{CreatedSession, PermissionStorageManager};
use crate::args;

impl PermissionStorageManager {
    /// Stores a session's permissions, replacing any session with this id (upsert; `created_at` is
    /// reset). Returns `true` once stored, as the seed does.
    ///
    /// `ttl` in seconds; `None` uses [`default_ttl`](Self::default_ttl), and when that is `None` too
    /// the session never expires. `metadata` must be a JSON object (or `None`/`null` for empty) and is
    /// stored exactly as given.
    ///
    /// # Errors
    /// - [`InvalidSessionId`](psm_core::ErrorKind::InvalidSessionId),
    ///   [`InvalidUserId`](psm_core::ErrorKind::InvalidUserId),
    ///   [`InvalidPermission`](psm_core::ErrorKind::InvalidPermission), [`Ttl`](psm_core::ErrorKind::Ttl) or
    ///   [`Validation`](psm_core::ErrorKind::Validation) (empty or oversized list, bad metadata) for bad
    ///   input, before any I/O;
    /// - [`ProviderNotInitialized`](psm_core::ErrorKind::ProviderNotInitialized) before `initialize` or
    ///   after `close`;
    /// - the provider's errors, such as `StorageQuotaExceeded`.
    pub async fn store_permissions(
        &self,
        session_id: &str,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
    ) -> Result<bool> {
        const OP: &str = "store_permissions";
        let id = self.parse_id(OP, session_id)?;
        let session = self.parse_session(OP, user_id, permissions, ttl, metadata)?;
        self.store_permissions_typed(id, session).await
    }

    /// Creates a session with a fresh random id (`session_` and 128 bits from the OS CSPRNG, 30 bytes) under a
    /// per-user concurrent-session limit, atomically. With [`LimitPolicy::Reject`](psm_core::LimitPolicy)
    /// at the limit the call fails with `SessionLimitReached`; with `EvictOldest` the oldest sessions
    /// make room and are returned in [`CreatedSession::evicted`]. `ttl` and `metadata` as in
    /// [`store_permissions`](Self::store_permissions).
    ///
    /// # Errors
    /// As [`store_permissions`](Self::store_permissions), plus `SessionLimitReached`.
    pub async fn create_session(
        &self,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        let session = self.parse_session(OP, user_id, permissions, ttl, metadata)?;
        let id = generate_session_id(DEFAULT_SESSION_PREFIX).map_err(self.context(OP))?;
        self.create_session_typed(id, session, limit).await
    }

    /// As [`create_session`](Self::create_session) with a caller-chosen id. It never overwrites: a
    /// live session with this id fails with `SessionExists`.
    ///
    /// # Errors
    /// As [`create_session`](Self::create_session), plus `InvalidSessionId` and `SessionExists`.
    pub async fn create_session_with_id(
        &self,
        session_id: &str,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        let id = self.parse_id(OP, session_id)?.to_owned();
        let session = self.parse_session(OP, user_id, permissions, ttl, metadata)?;
        self.create_session_typed(id, session, limit).await
    }

    /// Whether the session holds `permission` (exact, case-sensitive; `*` is a literal character).
    /// A missing or expired session yields `false`.
    ///
    /// # Errors
    /// `InvalidSessionId` or `InvalidPermission` for bad input; `ProviderNotInitialized`; provider errors.
    pub async fn check_permission(&self, session_id: &str, permission: &str) -> Result<bool> {
        const OP: &str = "check_permission";
        let id = self.parse_id(OP, session_id)?;
        let permission = PermissionRef::parse(permission).map_err(self.context(OP))?;
        self.check_permission_typed(id, permission).await
    }

    /// Checks several permissions at once: one entry per distinct asked permission, in the order
    /// asked. A missing or expired session yields all `false`.
    ///
    /// # Errors
    /// `InvalidSessionId`, `InvalidPermission` or `Validation` (empty or oversized list);
    /// `ProviderNotInitialized`; provider errors.
    pub async fn check_permissions(
        &self,
        session_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<PermissionCheck> {
        const OP: &str = "check_permissions";
        let id = self.parse_id(OP, session_id)?;
        let permissions = args::permissions(permissions).map_err(self.context(OP))?;
        self.check_permissions_typed(id, &permissions).await
    }

    /// The session's record (user, permissions, timestamps, metadata), or `None` when it is missing
    /// or expired. The record is a copy.
    ///
    /// # Errors
    /// `InvalidSessionId`; `ProviderNotInitialized`; provider errors.
    pub async fn get_permissions(&self, session_id: &str) -> Result<Option<SessionData>> {
        const OP: &str = "get_permissions";
        let id = self.parse_id(OP, session_id)?;
        self.get_permissions_typed(id).await
    }

    /// Removes a session. Returns `true` if a live session was removed.
    ///
    /// # Errors
    /// `InvalidSessionId`; `ProviderNotInitialized`; provider errors.
    pub async fn invalidate_session(&self, session_id: &str) -> Result<bool> {
        const OP: &str = "invalidate_session";
        let id = self.parse_id(OP, session_id)?;
        self.invalidate_session_typed(id).await
    }

    /// Replaces a session's permissions; `created_at`, user and metadata stay. With `ttl: None` the
    /// current expiry is kept (an update never makes a session immortal); with `Some(secs)` the session
    /// expires `secs` from now. Returns `false` for a missing or expired session.
    ///
    /// # Errors
    /// `InvalidSessionId`, `InvalidPermission`, `Validation` or `Ttl`; `ProviderNotInitialized`;
    /// provider errors.
    pub async fn update_permissions(
        &self,
        session_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
    ) -> Result<bool> {
        const OP: &str = "update_permissions";
        let id = self.parse_id(OP, session_id)?;
        let permissions = args::permissions(permissions).map_err(self.context(OP))?;
        let ttl = args::ttl(ttl).map_err(self.context(OP))?;
        self.update_permissions_typed(id, permissions, ttl).await
    }

    /// Renews a session: it now expires `ttl` seconds from now (the seed's name; the effect is
    /// "renew"). Returns `false` for a missing or expired session, which is never revived.
    ///
    /// # Errors
    /// `InvalidSessionId` or `Ttl`; `ProviderNotInitialized`; provider errors.
    pub async fn extend_session_ttl(&self, session_id: &str, ttl: u64) -> Result<bool> {
        const OP: &str = "extend_session_ttl";
        let id = self.parse_id(OP, session_id)?;
        let ttl = psm_core::Ttl::from_secs(ttl).map_err(self.context(OP))?;
        self.extend_session_ttl_typed(id, ttl).await
    }

    /// The session's record plus `ttl_remaining` (whole seconds, rounded up), `has_ttl` and
    /// `provider`, or `None` when it is missing or expired.
    ///
    /// # Errors
    /// `InvalidSessionId`; `ProviderNotInitialized`; provider errors.
    pub async fn get_session_info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        const OP: &str = "get_session_info";
        let id = self.parse_id(OP, session_id)?;
        self.get_session_info_typed(id).await
    }

    /// Lists live session ids: one user's ordered by creation, or every session in the provider's
    /// documented order. The seed's defaults are `limit` 100 and `offset` 0.
    ///
    /// # Errors
    /// `InvalidUserId`, or `Validation` unless `1 <= limit <= 10_000`; `ProviderNotInitialized`;
    /// provider errors.
    pub async fn list_sessions(
        &self,
        user_id: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<SessionId>> {
        const OP: &str = "list_sessions";
        let page = Page::new(limit, offset).map_err(self.context(OP))?;
        self.list_sessions_page(user_id, page).await
    }

    /// [`list_sessions`](Self::list_sessions) with an already validated [`Page`].
    ///
    /// # Errors
    /// `InvalidUserId`; `ProviderNotInitialized`; provider errors.
    pub async fn list_sessions_page(
        &self,
        user_id: Option<&str>,
        page: Page,
    ) -> Result<Vec<SessionId>> {
        const OP: &str = "list_sessions";
        let user = user_id.map(|u| self.parse_user(OP, u)).transpose()?;
        self.list_sessions_typed(user.as_ref(), page).await
    }

    /// Removes every expired session (and dangling index entries); returns how many sessions it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized`; provider errors.
    pub async fn cleanup_expired_sessions(&self) -> Result<u64> {
        self.cleanup_expired_sessions_typed().await
    }

    /// Removes every session of a user (logout everywhere); returns how many it removed.
    ///
    /// # Errors
    /// `InvalidUserId`; `ProviderNotInitialized`; provider errors.
    pub async fn invalidate_user_sessions(&self, user_id: &str) -> Result<u64> {
        const OP: &str = "invalidate_user_sessions";
        let user = self.parse_user(OP, user_id)?;
        self.invalidate_user_sessions_typed(&user).await
    }
}
