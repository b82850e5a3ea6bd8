//! The in-process store's synchronous path: plain calls into `MemoryStore`'s `_now` methods, with no
//! future and no allocation beyond what the result needs. Both managers use it, so the blocking API
//! serves the in-process store without touching its runtime.

use psm_core::{
    NewSession, Page, PermissionCheck, PermissionList, PermissionRef, Result, SessionData,
    SessionId, SessionIdRef, SessionInfo, SessionLimit, Ttl, UserId,
};
use psm_memory::MemoryStore;

use super::{CreatedSession, PermissionStorageManager};

/// A manager whose store is the in-process one, borrowed for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fast<'a> {
    manager: &'a PermissionStorageManager,
    store: &'a MemoryStore,
}

impl<'a> Fast<'a> {
    pub(crate) fn new(manager: &'a PermissionStorageManager, store: &'a MemoryStore) -> Self {
        Self { manager, store }
    }

    pub(crate) fn store_permissions(self, id: &SessionIdRef, session: NewSession) -> Result<bool> {
        const OP: &str = "store_permissions";
        self.manager.ready(OP)?;
        self.store
            .store_permissions_now(id, session)
            .map_err(self.manager.context(OP))?;
        Ok(true)
    }

    pub(crate) fn create_session(
        self,
        id: SessionId,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        self.manager.ready(OP)?;
        let evicted = self
            .store
            .create_session_now(&id, session, limit)
            .map_err(self.manager.context(OP))?;
        Ok(CreatedSession { id, evicted })
    }

    #[inline]
    pub(crate) fn check_permission(
        self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        self.manager.ready("check_permission")?;
        Ok(self.store.check_permission_now(id, permission))
    }

    pub(crate) fn check_permissions(
        self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        self.manager.ready("check_permissions")?;
        Ok(self.store.check_permissions_now(id, permissions))
    }

    pub(crate) fn get_permissions(self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        self.manager.ready("get_permissions")?;
        Ok(self.store.get_permissions_now(id))
    }

    pub(crate) fn invalidate_session(self, id: &SessionIdRef) -> Result<bool> {
        self.manager.ready("invalidate_session")?;
        Ok(self.store.invalidate_session_now(id))
    }

    pub(crate) fn update_permissions(
        self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        self.manager.ready("update_permissions")?;
        Ok(self.store.update_permissions_now(id, permissions, ttl))
    }

    pub(crate) fn extend_session_ttl(self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        self.manager.ready("extend_session_ttl")?;
        Ok(self.store.extend_session_ttl_now(id, ttl))
    }

    pub(crate) fn get_session_info(self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        self.manager.ready("get_session_info")?;
        Ok(self.store.get_session_info_now(id))
    }

    pub(crate) fn list_sessions(self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        self.manager.ready("list_sessions")?;
        Ok(self.store.list_sessions_now(user, page))
    }

    pub(crate) fn cleanup_expired_sessions(self) -> Result<u64> {
        self.manager.ready("cleanup_expired_sessions")?;
        Ok(self.store.cleanup())
    }

    pub(crate) fn invalidate_user_sessions(self, user: &UserId) -> Result<u64> {
        self.manager.ready("invalidate_user_sessions")?;
        Ok(self.store.invalidate_user_sessions_now(user))
    }
}
