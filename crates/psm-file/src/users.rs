//! [`FileUserStore`]: the durable `UserStore`.

use psm_core::{
    Email, NewUser, Page, PermissionRef, Result, User, UserId, UserStore, UserUpdate, async_trait,
};

use crate::{FileStorage, records::Entry, storage::PROVIDER};

/// The durable user store of one storage directory: unique, case-insensitive email and username;
/// reads from memory, writes acknowledged after fsync (see [`FileStorage`]). Listing walks the
/// in-memory `(created_at, id)` index, rebuilt on open (see [`psm_tables::UserTable::list_users`]
/// for its cost); it reads no file.
///
/// # Clone
/// Cloning is cheap and shares the open directory.
#[derive(Debug, Clone)]
pub struct FileUserStore {
    storage: FileStorage,
}

impl FileUserStore {
    pub(crate) fn new(storage: FileStorage) -> Self {
        Self { storage }
    }

    /// The storage directory this store lives in.
    pub fn storage(&self) -> &FileStorage {
        &self.storage
    }
}

#[async_trait]
impl UserStore for FileUserStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        let inner = self.storage.inner();
        let now = inner.now();
        inner
            .write(move |t, batch| {
                let created = t.users.create_user(user, now)?;
                batch.push(&Entry::user(&created));
                Ok(created)
            })
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.users.get_user(id))
    }

    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.users.get_user_by_email(email))
    }

    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        let inner = self.storage.inner();
        let now = inner.now();
        let id = id.clone();
        inner
            .write(move |t, batch| {
                let updated = t.users.update_user(&id, update, now)?;
                if let Some(u) = &updated {
                    batch.push(&Entry::user(u));
                }
                Ok(updated)
            })
            .await
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let id = id.clone();
        self.storage
            .inner()
            .write(move |t, batch| {
                let deleted = t.users.delete_user(&id);
                if deleted {
                    batch.push(&Entry::UserRemoved(id.as_str()));
                }
                Ok(deleted)
            })
            .await
    }

    async fn list_users(
        &self,
        permission: Option<&PermissionRef>,
        page: Page,
    ) -> Result<Vec<User>> {
        let inner = self.storage.inner();
        inner.ensure_open()?;
        Ok(inner.tables.users.list_users(permission, page))
    }
}
