//! The seed's operations, blocking: validated on the calling thread, then served by the in-process
//! store's synchronous path or by the async manager on the blocking manager's runtime.

use psm_core::{
    NewSession, Page, PermissionCheck, PermissionRef, Result, SessionData, SessionId, SessionInfo,
    SessionLimit, Ttl,
    util::{DEFAULT_SESSION_PREFIX, generate_session_id},
};
use serde_json::Value;

use super::PermissionStorageManager;
use crate::{CreatedSession, args};

impl PermissionStorageManager {
    /// Blocking [`store_permissions`](crate::PermissionStorageManager::store_permissions)
    /// (seed: `store_permissions_sync`).
    ///
    /// # Errors
    /// As the async method.
    pub fn store_permissions(
        &self,
        session_id: &str,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
    ) -> Result<bool> {
        const OP: &str = "store_permissions";
        let id = self.inner.parse_id(OP, session_id)?;
        let session = self
            .inner
            .parse_session(OP, user_id, permissions, ttl, metadata)?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.store_permissions(id, session);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.store_permissions_typed(&id, session).await })
    }

    /// Blocking [`create_session`](crate::PermissionStorageManager::create_session).
    ///
    /// # Errors
    /// As the async method.
    pub fn create_session(
        &self,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        let session = self
            .inner
            .parse_session(OP, user_id, permissions, ttl, metadata)?;
        let id = generate_session_id(DEFAULT_SESSION_PREFIX).map_err(self.inner.context(OP))?;
        self.create_typed(id, session, limit)
    }

    /// Blocking [`create_session_with_id`](crate::PermissionStorageManager::create_session_with_id).
    ///
    /// # Errors
    /// As the async method.
    pub fn create_session_with_id(
        &self,
        session_id: &str,
        user_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
        metadata: Option<Value>,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        let id = self.inner.parse_id(OP, session_id)?.to_owned();
        let session = self
            .inner
            .parse_session(OP, user_id, permissions, ttl, metadata)?;
        self.create_typed(id, session, limit)
    }

    fn create_typed(
        &self,
        id: SessionId,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.create_session(id, session, limit);
        }
        self.run(|m| async move { m.create_session_typed(id, session, limit).await })
    }

    /// Blocking [`check_permission`](crate::PermissionStorageManager::check_permission)
    /// (seed: `check_permission_sync`). On the in-process store it allocates nothing.
    ///
    /// # Errors
    /// As the async method.
    pub fn check_permission(&self, session_id: &str, permission: &str) -> Result<bool> {
        const OP: &str = "check_permission";
        let id = self.inner.parse_id(OP, session_id)?;
        let permission = PermissionRef::parse(permission).map_err(self.inner.context(OP))?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.check_permission(id, permission);
        }
        let (id, permission) = (id.to_owned(), permission.to_owned());
        self.run(|m| async move { m.check_permission_typed(&id, &permission).await })
    }

    /// Blocking [`check_permissions`](crate::PermissionStorageManager::check_permissions)
    /// (seed: `check_permissions_sync`).
    ///
    /// # Errors
    /// As the async method.
    pub fn check_permissions(
        &self,
        session_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<PermissionCheck> {
        const OP: &str = "check_permissions";
        let id = self.inner.parse_id(OP, session_id)?;
        let permissions = args::permissions(permissions).map_err(self.inner.context(OP))?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.check_permissions(id, &permissions);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.check_permissions_typed(&id, &permissions).await })
    }

    /// Blocking [`get_permissions`](crate::PermissionStorageManager::get_permissions)
    /// (seed: `get_permissions_sync`).
    ///
    /// # Errors
    /// As the async method.
    pub fn get_permissions(&self, session_id: &str) -> Result<Option<SessionData>> {
        let id = self.inner.parse_id("get_permissions", session_id)?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.get_permissions(id);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.get_permissions_typed(&id).await })
    }

    /// Blocking [`invalidate_session`](crate::PermissionStorageManager::invalidate_session)
    /// (seed: `invalidate_session_sync`).
    ///
    /// # Errors
    /// As the async method.
    pub fn invalidate_session(&self, session_id: &str) -> Result<bool> {
        let id = self.inner.parse_id("invalidate_session", session_id)?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.invalidate_session(id);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.invalidate_session_typed(&id).await })
    }

    /// Blocking [`update_permissions`](crate::PermissionStorageManager::update_permissions).
    ///
    /// # Errors
    /// As the async method.
    pub fn update_permissions(
        &self,
        session_id: &str,
        permissions: impl IntoIterator<Item = impl AsRef<str>>,
        ttl: Option<u64>,
    ) -> Result<bool> {
        const OP: &str = "update_permissions";
        let id = self.inner.parse_id(OP, session_id)?;
        let permissions = args::permissions(permissions).map_err(self.inner.context(OP))?;
        let ttl = args::ttl(ttl).map_err(self.inner.context(OP))?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.update_permissions(id, permissions, ttl);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.update_permissions_typed(&id, permissions, ttl).await })
    }

    /// Blocking [`extend_session_ttl`](crate::PermissionStorageManager::extend_session_ttl).
    ///
    /// # Errors
    /// As the async method.
    pub fn extend_session_ttl(&self, session_id: &str, ttl: u64) -> Result<bool> {
        const OP: &str = "extend_session_ttl";
        let id = self.inner.parse_id(OP, session_id)?;
        let ttl = Ttl::from_secs(ttl).map_err(self.inner.context(OP))?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.extend_session_ttl(id, ttl);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.extend_session_ttl_typed(&id, ttl).await })
    }

    /// Blocking [`get_session_info`](crate::PermissionStorageManager::get_session_info).
    ///
    /// # Errors
    /// As the async method.
    pub fn get_session_info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let id = self.inner.parse_id("get_session_info", session_id)?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.get_session_info(id);
        }
        let id = id.to_owned();
        self.run(|m| async move { m.get_session_info_typed(&id).await })
    }

    /// Blocking [`list_sessions`](crate::PermissionStorageManager::list_sessions).
    ///
    /// # Errors
    /// As the async method.
    pub fn list_sessions(
        &self,
        user_id: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<SessionId>> {
        let page = Page::new(limit, offset).map_err(self.inner.context("list_sessions"))?;
        self.list_sessions_page(user_id, page)
    }

    /// Blocking [`list_sessions_page`](crate::PermissionStorageManager::list_sessions_page).
    ///
    /// # Errors
    /// As the async method.
    pub fn list_sessions_page(&self, user_id: Option<&str>, page: Page) -> Result<Vec<SessionId>> {
        let user = user_id
            .map(|u| self.inner.parse_user("list_sessions", u))
            .transpose()?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.list_sessions(user.as_ref(), page);
        }
        self.run(|m| async move { m.list_sessions_typed(user.as_ref(), page).await })
    }

    /// Blocking [`cleanup_expired_sessions`](crate::PermissionStorageManager::cleanup_expired_sessions).
    ///
    /// # Errors
    /// As the async method.
    pub fn cleanup_expired_sessions(&self) -> Result<u64> {
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.cleanup_expired_sessions();
        }
        self.run(|m| async move { m.cleanup_expired_sessions_typed().await })
    }

    /// Blocking [`invalidate_user_sessions`](crate::PermissionStorageManager::invalidate_user_sessions).
    ///
    /// # Errors
    /// As the async method.
    pub fn invalidate_user_sessions(&self, user_id: &str) -> Result<u64> {
        let user = self.inner.parse_user("invalidate_user_sessions", user_id)?;
        #[cfg(feature = "memory")]
        if let Some(fast) = self.inner.fast() {
            return fast.invalidate_user_sessions(&user);
        }
        self.run(|m| async move { m.invalidate_user_sessions_typed(&user).await })
    }
}
