//! The operations on validated arguments: the in-process store's synchronous path when there is one,
//! the port otherwise. The blocking manager calls these too.

use psm_core::{
    NewSession, Page, PermissionCheck, PermissionList, PermissionRef, PermissionStore as _, Result,
    SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, Ttl, UserId,
};

use super::{CreatedSession, PermissionStorageManager};

impl PermissionStorageManager {
    pub(crate) async fn store_permissions_typed(
        &self,
        id: &SessionIdRef,
        session: NewSession,
    ) -> Result<bool> {
        const OP: &str = "store_permissions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.store_permissions(id, session);
        }
        self.ready(OP)?;
        self.store()
            .store_permissions(id, session)
            .await
            .map_err(self.context(OP))?;
        Ok(true)
    }

    pub(crate) async fn create_session_typed(
        &self,
        id: SessionId,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<CreatedSession> {
        const OP: &str = "create_session";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.create_session(id, session, limit);
        }
        self.ready(OP)?;
        let evicted = self
            .store()
            .create_session(&id, session, limit)
            .await
            .map_err(self.context(OP))?;
        Ok(CreatedSession { id, evicted })
    }

    pub(crate) async fn check_permission_typed(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        const OP: &str = "check_permission";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.check_permission(id, permission);
        }
        #[cfg(feature = "file")]
        if let Some(file) = self.file_reads() {
            self.ready(OP)?;
            return file
                .check_permission_now(id, permission)
                .map_err(self.context(OP));
        }
        self.ready(OP)?;
        self.store()
            .check_permission(id, permission)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn check_permissions_typed(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        const OP: &str = "check_permissions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.check_permissions(id, permissions);
        }
        #[cfg(feature = "file")]
        if let Some(file) = self.file_reads() {
            self.ready(OP)?;
            return file
                .check_permissions_now(id, permissions)
                .map_err(self.context(OP));
        }
        self.ready(OP)?;
        self.store()
            .check_permissions(id, permissions)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn get_permissions_typed(
        &self,
        id: &SessionIdRef,
    ) -> Result<Option<SessionData>> {
        const OP: &str = "get_permissions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.get_permissions(id);
        }
        #[cfg(feature = "file")]
        if let Some(file) = self.file_reads() {
            self.ready(OP)?;
            return file.get_permissions_now(id).map_err(self.context(OP));
        }
        self.ready(OP)?;
        self.store()
            .get_permissions(id)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn invalidate_session_typed(&self, id: &SessionIdRef) -> Result<bool> {
        const OP: &str = "invalidate_session";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.invalidate_session(id);
        }
        self.ready(OP)?;
        self.store()
            .invalidate_session(id)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn update_permissions_typed(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        const OP: &str = "update_permissions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.update_permissions(id, permissions, ttl);
        }
        self.ready(OP)?;
        self.store()
            .update_permissions(id, permissions, ttl)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn extend_session_ttl_typed(
        &self,
        id: &SessionIdRef,
        ttl: Ttl,
    ) -> Result<bool> {
        const OP: &str = "extend_session_ttl";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.extend_session_ttl(id, ttl);
        }
        self.ready(OP)?;
        self.store()
            .extend_session_ttl(id, ttl)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn get_session_info_typed(
        &self,
        id: &SessionIdRef,
    ) -> Result<Option<SessionInfo>> {
        const OP: &str = "get_session_info";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.get_session_info(id);
        }
        #[cfg(feature = "file")]
        if let Some(file) = self.file_reads() {
            self.ready(OP)?;
            return file.get_session_info_now(id).map_err(self.context(OP));
        }
        self.ready(OP)?;
        self.store()
            .get_session_info(id)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn list_sessions_typed(
        &self,
        user: Option<&UserId>,
        page: Page,
    ) -> Result<Vec<SessionId>> {
        const OP: &str = "list_sessions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.list_sessions(user, page);
        }
        #[cfg(feature = "file")]
        if let Some(file) = self.file_reads() {
            self.ready(OP)?;
            return file.list_sessions_now(user, page).map_err(self.context(OP));
        }
        self.ready(OP)?;
        self.store()
            .list_sessions(user, page)
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn cleanup_expired_sessions_typed(&self) -> Result<u64> {
        const OP: &str = "cleanup_expired_sessions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.cleanup_expired_sessions();
        }
        self.ready(OP)?;
        self.store()
            .cleanup_expired_sessions()
            .await
            .map_err(self.context(OP))
    }

    pub(crate) async fn invalidate_user_sessions_typed(&self, user: &UserId) -> Result<u64> {
        const OP: &str = "invalidate_user_sessions";
        #[cfg(feature = "memory")]
        if let Some(fast) = self.fast() {
            return fast.invalidate_user_sessions(user);
        }
        self.ready(OP)?;
        self.store()
            .invalidate_user_sessions(user)
            .await
            .map_err(self.context(OP))
    }
}
