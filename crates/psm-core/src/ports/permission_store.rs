//! The `PermissionStore` port: the seed's provider contract plus atomic session limits.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{
    Capabilities, NewSession, Page, PermissionCheck, PermissionList, PermissionRef, Result,
    SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, Ttl, UserId,
};

/// Per-session permission storage with TTL (the seed's `BaseProvider`).
///
/// Every argument is already validated (the types guarantee it), so implementations never validate
/// again and a call with bad input cannot reach them. Shared behaviour, for every method:
/// - A session is expired when `now >= expires_at`; an expired session behaves exactly like a missing
///   one in every method.
/// - Returned data is a copy; changing it changes nothing stored.
/// - Metadata is stored and returned exactly as given.
/// - Calls before [`initialize`](Self::initialize) or after [`close`](Self::close) fail with
///   `ProviderNotInitialized` where the provider needs initialization; providers that need none
///   accept calls at once.
///
/// Each bullet in the method docs is a case in the `testkit` conformance suite.
#[async_trait]
pub trait PermissionStore: fmt::Debug + Send + Sync + 'static {
    /// The provider's name (`"memory"`, `"file"`, `"redis"`, `"postgres"`, …).
    fn provider_name(&self) -> &str;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// Whether the backend expires data natively (the seed's `supports_ttl`).
    fn supports_ttl(&self) -> bool {
        self.capabilities().native_ttl
    }

    /// Prepares connections and resources.
    ///
    /// # Behavior
    /// - Calling it twice is harmless.
    async fn initialize(&self) -> Result<()>;

    /// Releases connections and resources.
    ///
    /// # Behavior
    /// - Calling it twice is harmless.
    async fn close(&self) -> Result<()>;

    /// Stores a session, replacing any existing one with the same id (upsert).
    ///
    /// # Behavior
    /// - Replaces an existing session whole: user, permissions, metadata and expiry; `created_at` and
    ///   `updated_at` are reset to now.
    /// - `session.ttl == None` stores a session that never expires.
    /// - Replacing a session of another user moves it to the new user's index.
    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()>;

    /// Creates a session under a per-user concurrent-session limit, atomically.
    ///
    /// # Behavior
    /// - Never overwrites: a live session with this id fails with `SessionExists` and changes nothing.
    ///   An expired one with the same id is replaced.
    /// - Only live sessions count towards the limit.
    /// - With `LimitPolicy::Reject` at the limit, fails with `SessionLimitReached` and stores nothing.
    /// - With `LimitPolicy::EvictOldest` at the limit, removes the oldest sessions (by `created_at`, then
    ///   id) to make room and returns their ids, oldest first.
    /// - Any number of concurrent calls for one user leave at most `limit.max` live sessions.
    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>>;

    /// Whether the session holds `permission`.
    ///
    /// # Behavior
    /// - Compares exactly and case-sensitively; `*` and `?` in stored permissions are literal.
    /// - A missing or expired session yields `false`.
    async fn check_permission(&self, id: &SessionIdRef, permission: &PermissionRef)
    -> Result<bool>;

    /// Checks several permissions at once.
    ///
    /// # Behavior
    /// - The result has one entry per asked permission, in the order asked.
    /// - A missing or expired session yields all `false`.
    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck>;

    /// The session's record.
    ///
    /// # Behavior
    /// - A missing or expired session yields `None`.
    /// - Permissions come back in stored order.
    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>>;

    /// Removes a session.
    ///
    /// # Behavior
    /// - Returns `true` if a live session was removed; `false` for a missing or expired one.
    /// - The session disappears from its user's index.
    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool>;

    /// Replaces a session's permissions.
    ///
    /// # Behavior
    /// - Returns `false` (and changes nothing) for a missing or expired session.
    /// - Sets `updated_at`; `created_at`, user and metadata stay.
    /// - `ttl == None` keeps the current expiry (a session never becomes immortal by an update);
    ///   `Some(ttl)` sets the expiry to now + ttl.
    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool>;

    /// Renews a session: sets its expiry to now + `ttl` and sets `updated_at`.
    ///
    /// # Behavior
    /// - Returns `false` for a missing or expired session; never revives an expired one.
    /// - Works on a session that had no expiry (it gains one).
    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool>;

    /// The session's record plus its ttl state.
    ///
    /// # Behavior
    /// - A missing or expired session yields `None`.
    /// - `ttl_remaining` is whole seconds rounded up (a fresh ttl of 100 reports 100); `None` and
    ///   `has_ttl == false` when the session never expires.
    /// - `provider` is [`provider_name`](Self::provider_name).
    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>>;

    /// Lists live session ids.
    ///
    /// # Behavior
    /// - With a user: that user's sessions ordered by `created_at`, then id, from a per-user index.
    /// - Without a user: every live session in a stable order the provider documents.
    /// - Expired sessions are never listed.
    /// - Paging with no concurrent writes yields every live session exactly once.
    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>>;

    /// Removes every expired session and every index entry that points nowhere.
    ///
    /// # Behavior
    /// - Returns how many sessions it removed (0 when none had expired).
    /// - Live sessions are untouched.
    async fn cleanup_expired_sessions(&self) -> Result<u64>;

    /// Removes every session of `user`.
    ///
    /// # Behavior
    /// - Returns how many live sessions it removed.
    /// - Other users' sessions are untouched.
    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64>;
}

/// A shared, type-erased permission store.
pub type DynPermissionStore = Arc<dyn PermissionStore>;

macro_rules! forward_permission_store {
    ($ptr:ty) => {
        #[async_trait]
        impl<T: PermissionStore + ?Sized> PermissionStore for $ptr {
            fn provider_name(&self) -> &str {
                (**self).provider_name()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn supports_ttl(&self) -> bool {
                (**self).supports_ttl()
            }
            async fn initialize(&self) -> Result<()> {
                (**self).initialize().await
            }
            async fn close(&self) -> Result<()> {
                (**self).close().await
            }
            async fn store_permissions(
                &self,
                id: &SessionIdRef,
                session: NewSession,
            ) -> Result<()> {
                (**self).store_permissions(id, session).await
            }
            async fn create_session(
                &self,
                id: &SessionIdRef,
                session: NewSession,
                limit: SessionLimit,
            ) -> Result<Vec<SessionId>> {
                (**self).create_session(id, session, limit).await
            }
            async fn check_permission(
                &self,
                id: &SessionIdRef,
                permission: &PermissionRef,
            ) -> Result<bool> {
                (**self).check_permission(id, permission).await
            }
            async fn check_permissions(
                &self,
                id: &SessionIdRef,
                permissions: &PermissionList,
            ) -> Result<PermissionCheck> {
                (**self).check_permissions(id, permissions).await
            }
            async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
                (**self).get_permissions(id).await
            }
            async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
                (**self).invalidate_session(id).await
            }
            async fn update_permissions(
                &self,
                id: &SessionIdRef,
                permissions: PermissionList,
                ttl: Option<Ttl>,
            ) -> Result<bool> {
                (**self).update_permissions(id, permissions, ttl).await
            }
            async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
                (**self).extend_session_ttl(id, ttl).await
            }
            async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
                (**self).get_session_info(id).await
            }
            async fn list_sessions(
                &self,
                user: Option<&UserId>,
                page: Page,
            ) -> Result<Vec<SessionId>> {
                (**self).list_sessions(user, page).await
            }
            async fn cleanup_expired_sessions(&self) -> Result<u64> {
                (**self).cleanup_expired_sessions().await
            }
            async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
                (**self).invalidate_user_sessions(user).await
            }
        }
    };
}

forward_permission_store!(Arc<T>);
forward_permission_store!(Box<T>);
