//! [`MemoryUserStore`]: user accounts in memory.

use std::{fmt, sync::Arc};

use hashbrown::HashMap;
use parking_lot::RwLock;
use psm_core::{
    Email, Error, ErrorKind, NewUser, Result, SystemClock, User, UserId, UserStore, UserUpdate,
    Username, async_trait, check_user_permissions, dedup_permissions,
};

use crate::store::PROVIDER;

/// In-process user accounts with unique, case-insensitive emails and usernames.
///
/// Uniqueness is checked and the user stored under one write lock, so concurrent creations with
/// one email (or username) leave exactly one user. Returned users are copies.
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same users.
#[derive(Clone)]
pub struct MemoryUserStore {
    clock: psm_core::DynClock,
    state: Arc<RwLock<Users>>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<UserId, User>,
    /// `Email::normalized` → id.
    by_email: HashMap<String, UserId>,
    /// `Username::normalized` → id.
    by_username: HashMap<String, UserId>,
}

impl Users {
    /// Fails with `UserExists` when `email` or `username` belongs to a user other than `me`.
    fn check_free(
        &self,
        me: &UserId,
        email: Option<&Email>,
        username: Option<&Username>,
    ) -> Result<()> {
        let taken = |owner: Option<&UserId>| owner.is_some_and(|o| o != me);
        if email.is_some_and(|e| taken(self.by_email.get(&e.normalized()))) {
            return Err(exists("email"));
        }
        if username.is_some_and(|u| taken(self.by_username.get(&u.normalized()))) {
            return Err(exists("username"));
        }
        Ok(())
    }
}

fn exists(field: &'static str) -> Error {
    Error::new(
        ErrorKind::UserExists,
        format!("a user with this {field} already exists"),
    )
    .with_detail("field", field)
}

impl MemoryUserStore {
    /// An empty store reading time from the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock`.
    pub fn with_clock(clock: psm_core::DynClock) -> Self {
        Self {
            clock,
            state: Arc::default(),
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.state.read().by_id.len()
    }

    /// Whether the store holds no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        check_user_permissions(&user.permissions)?;
        let mut state = self.state.write();
        if state.by_id.contains_key(&user.id) {
            return Err(exists("id"));
        }
        state.check_free(&user.id, Some(&user.email), Some(&user.username))?;
        let now = self.clock.now();
        let stored = User {
            id: user.id,
            username: user.username,
            email: user.email,
            password_hash: user.password_hash,
            permissions: dedup_permissions(user.permissions),
            created_at: now,
            updated_at: now,
        };
        state
            .by_email
            .insert(stored.email.normalized(), stored.id.clone());
        state
            .by_username
            .insert(stored.username.normalized(), stored.id.clone());
        state.by_id.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        Ok(self.state.read().by_id.get(id).cloned())
    }

    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let state = self.state.read();
        Ok(state
            .by_email
            .get(&email.normalized())
            .and_then(|id| state.by_id.get(id))
            .cloned())
    }

    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        if let Some(p) = &update.permissions {
            check_user_permissions(p)?;
        }
        let mut state = self.state.write();
        if !state.by_id.contains_key(id) {
            return Ok(None);
        }
        state.check_free(id, update.email.as_ref(), update.username.as_ref())?;
        let now = self.clock.now();
        let Some(user) = state.by_id.get_mut(id) else {
            return Ok(None);
        };
        let old_email = update
            .email
            .map(|e| std::mem::replace(&mut user.email, e).normalized());
        let old_username = update
            .username
            .map(|u| std::mem::replace(&mut user.username, u).normalized());
        if let Some(h) = update.password_hash {
            user.password_hash = h;
        }
        if let Some(p) = update.permissions {
            user.permissions = dedup_permissions(p);
        }
        user.updated_at = now;
        let updated = user.clone();
        if let Some(old) = old_email {
            state.by_email.remove(&old);
            state
                .by_email
                .insert(updated.email.normalized(), id.clone());
        }
        if let Some(old) = old_username {
            state.by_username.remove(&old);
            state
                .by_username
                .insert(updated.username.normalized(), id.clone());
        }
        Ok(Some(updated))
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let mut state = self.state.write();
        let Some(user) = state.by_id.remove(id) else {
            return Ok(false);
        };
        state.by_email.remove(&user.email.normalized());
        state.by_username.remove(&user.username.normalized());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use psm_core::{ManualClock, PasswordHash, Permission};

    use super::*;

    fn new_user(id: &str, email: &str, username: &str) -> NewUser {
        NewUser {
            id: UserId::parse(id).unwrap(),
            username: Username::parse(username).unwrap(),
            email: Email::parse(email).unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$x").unwrap(),
            permissions: ["read", "write", "read"]
                .iter()
                .map(|p| Permission::parse(p).unwrap())
                .collect(),
        }
    }

    #[tokio::test]
    async fn unique_case_insensitive_email_and_username() {
        let s = MemoryUserStore::with_clock(Arc::new(ManualClock::at_2024()));
        let u = s
            .create_user(new_user("1", "Alice@Example.com", "alice"))
            .await
            .unwrap();
        assert_eq!(u.permissions.len(), 2);
        assert_eq!(u.created_at, u.updated_at);
        for dup in [
            new_user("2", "alice@EXAMPLE.com", "bob"),
            new_user("2", "b@x.io", "ALICE"),
            new_user("1", "c@x.io", "carol"),
        ] {
            assert_eq!(
                s.create_user(dup).await.unwrap_err().kind(),
                ErrorKind::UserExists
            );
        }
        let email = Email::parse("ALICE@example.COM").unwrap();
        assert_eq!(s.get_user_by_email(&email).await.unwrap().unwrap().id, u.id);
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn update_moves_the_unique_keys_and_delete_frees_them() {
        let clock = ManualClock::at_2024();
        let s = MemoryUserStore::with_clock(Arc::new(clock.clone()));
        let a = s
            .create_user(new_user("1", "a@x.io", "alice"))
            .await
            .unwrap();
        s.create_user(new_user("2", "b@x.io", "bobby"))
            .await
            .unwrap();
        let taken = UserUpdate {
            email: Some(Email::parse("B@x.io").unwrap()),
            ..UserUpdate::default()
        };
        assert_eq!(
            s.update_user(&a.id, taken).await.unwrap_err().kind(),
            ErrorKind::UserExists
        );
        clock.advance(std::time::Duration::from_secs(5));
        let change = UserUpdate {
            email: Some(Email::parse("new@x.io").unwrap()),
            ..UserUpdate::default()
        };
        let updated = s.update_user(&a.id, change).await.unwrap().unwrap();
        assert!(updated.updated_at > updated.created_at);
        assert!(
            s.get_user_by_email(&Email::parse("a@x.io").unwrap())
                .await
                .unwrap()
                .is_none()
        );
        // Changing to one's own address (in another case) is not a conflict.
        let same = UserUpdate {
            email: Some(Email::parse("NEW@x.io").unwrap()),
            ..UserUpdate::default()
        };
        assert!(s.update_user(&a.id, same).await.unwrap().is_some());
        let unknown = UserId::parse("nobody").unwrap();
        assert!(
            s.update_user(&unknown, UserUpdate::default())
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.delete_user(&a.id).await.unwrap());
        assert!(!s.delete_user(&a.id).await.unwrap());
        assert!(
            s.create_user(new_user("3", "new@x.io", "alice"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn concurrent_creations_with_one_email_leave_one() {
        let s = MemoryUserStore::new();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.create_user(new_user(&format!("u{i}"), "same@x.io", &format!("user{i}")))
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap().is_ok());
        }
        assert_eq!(ok, 1);
        assert_eq!(s.len(), 1, "clones share state");
    }
}
