//! The `UserStore` port: user accounts with unique case-insensitive email and username.

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{Email, NewUser, Page, PermissionRef, Result, User, UserId, UserUpdate};

/// User accounts.
///
/// Cascading a deletion to the user's sessions and token families is the service's job, not the
/// store's: adapters never reach into each other.
#[async_trait]
pub trait UserStore: fmt::Debug + Send + Sync + 'static {
    /// The provider's name.
    fn provider_name(&self) -> &str;

    /// Creates a user.
    ///
    /// # Behavior
    /// - Fails with `UserExists` (changing nothing) when the id, the email (case-insensitively) or the
    ///   username (case-insensitively) is taken; concurrent creations with one email leave exactly one.
    /// - Duplicate permissions are dropped, first occurrence kept.
    /// - Returns the stored user with `created_at == updated_at == now`.
    async fn create_user(&self, user: NewUser) -> Result<User>;

    /// The user with `id`, or `None`.
    async fn get_user(&self, id: &UserId) -> Result<Option<User>>;

    /// The user whose email equals `email` case-insensitively, or `None`.
    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>>;

    /// Applies a partial update.
    ///
    /// # Behavior
    /// - Returns `None` for an unknown user.
    /// - Fails with `UserExists` (changing nothing) when the new email or username is taken by another user.
    /// - Sets `updated_at`; `created_at` stays. After an email change the old email finds nobody.
    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>>;

    /// Deletes a user.
    ///
    /// # Behavior
    /// - Returns `true` if the user existed; its email and username become free again.
    async fn delete_user(&self, id: &UserId) -> Result<bool>;

    /// Lists users, oldest first, one page at a time.
    ///
    /// # Behavior
    /// - Users are ordered by `created_at`, then by id (bytewise); `update_user` never moves a user,
    ///   a deleted user is no longer listed.
    /// - With `permission`, only users whose permissions contain it exactly: case-sensitive, and a
    ///   stored `*` or `?` is a literal character, as in `check_permission`. Without, every user.
    /// - `page` skips `offset` listed users and returns at most `limit` (its bounds, 1 to 10,000, are
    ///   [`Page`]'s); an offset past the end yields an empty list, never an error. An empty store
    ///   lists nothing.
    /// - Paging with no concurrent writes yields every listed user exactly once.
    /// - Each listed user equals what [`get_user`](Self::get_user) returns for its id.
    async fn list_users(&self, permission: Option<&PermissionRef>, page: Page)
    -> Result<Vec<User>>;
}

/// A shared, type-erased user store.
pub type DynUserStore = Arc<dyn UserStore>;

macro_rules! forward_user_store {
    ($ptr:ty) => {
        #[async_trait]
        impl<T: UserStore + ?Sized> UserStore for $ptr {
            fn provider_name(&self) -> &str {
                (**self).provider_name()
            }
            async fn create_user(&self, user: NewUser) -> Result<User> {
                (**self).create_user(user).await
            }
            async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
                (**self).get_user(id).await
            }
            async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
                (**self).get_user_by_email(email).await
            }
            async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
                (**self).update_user(id, update).await
            }
            async fn delete_user(&self, id: &UserId) -> Result<bool> {
                (**self).delete_user(id).await
            }
            async fn list_users(
                &self,
                permission: Option<&PermissionRef>,
                page: Page,
            ) -> Result<Vec<User>> {
                (**self).list_users(permission, page).await
            }
        }
    };
}

forward_user_store!(Arc<T>);
forward_user_store!(Box<T>);
