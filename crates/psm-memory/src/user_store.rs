//! [`MemoryUserStore`]: user accounts in memory, a [`UserTable`] behind the `UserStore` port.

use std::{fmt, sync::Arc};

use psm_core::{
    DynClock, Email, NewUser, Page, PermissionRef, Result, SystemClock, User, UserId, UserStore,
    UserUpdate, async_trait,
};
use psm_tables::UserTable;

use crate::PROVIDER;

/// In-process user accounts with unique, case-insensitive emails and usernames.
///
/// Uniqueness is checked and the user stored under one write lock, so concurrent creations with
/// one email (or username) leave exactly one user. Returned users are copies. Listing walks a
/// sorted `(created_at, id)` index (see [`UserTable::list_users`] for its cost).
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same users.
#[derive(Clone)]
pub struct MemoryUserStore {
    clock: DynClock,
    table: UserTable,
}

impl MemoryUserStore {
    /// An empty store reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: DynClock) -> Self {
        Self {
            clock,
            table: UserTable::new(),
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the store holds no user.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl Default for MemoryUserStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUserStore")
            .field("users", &self.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        self.table.create_user(user, self.clock.now())
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        Ok(self.table.get_user(id))
    }

    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        Ok(self.table.get_user_by_email(email))
    }

    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        self.table.update_user(id, update, self.clock.now())
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        Ok(self.table.delete_user(id))
    }

    async fn list_users(
        &self,
        permission: Option<&PermissionRef>,
        page: Page,
    ) -> Result<Vec<User>> {
        Ok(self.table.list_users(permission, page))
    }
}
