//! `PermissionStore` for [`MemoryStore`]: every method forwards to its synchronous `_now` twin.

use psm_core::{
    Capabilities, NewSession, Page, PermissionCheck, PermissionList, PermissionRef,
    PermissionStore, Result, SessionData, SessionId, SessionIdRef, SessionInfo, SessionLimit, Ttl,
    UserId, async_trait,
};

use crate::{MemoryStore, PROVIDER};

#[async_trait]
impl PermissionStore for MemoryStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    /// Lazy expiry plus a sweeper is not native ttl; time comes from the store's clock; the data
    /// lives in this process only.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_honours_clock(true)
    }

    /// Starts the background sweeper when called inside a Tokio runtime (see the type docs).
    /// The store needs no other preparation and accepts calls before it.
    async fn initialize(&self) -> Result<()> {
        self.start_sweeper();
        Ok(())
    }

    /// Stops the sweeper and drops every session (the memory store's data lives until `close`).
    /// The store stays usable, empty, and `initialize` starts the sweeper again.
    async fn close(&self) -> Result<()> {
        self.stop_sweeper();
        self.clear_all_sessions();
        Ok(())
    }

    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        self.store_permissions_now(id, session)
    }

    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        self.create_session_now(id, session, limit)
    }

    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        Ok(self.check_permission_now(id, permission))
    }

    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        Ok(self.check_permissions_now(id, permissions))
    }

    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        Ok(self.get_permissions_now(id))
    }

    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        Ok(self.invalidate_session_now(id))
    }

    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        Ok(self.update_permissions_now(id, permissions, ttl))
    }

    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        Ok(self.extend_session_ttl_now(id, ttl))
    }

    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        Ok(self.get_session_info_now(id))
    }

    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        Ok(self.list_sessions_now(user, page))
    }

    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        Ok(self.cleanup())
    }

    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        Ok(self.invalidate_user_sessions_now(user))
    }
}
