//! [`UserTable`]: user accounts with unique, case-insensitive emails and usernames.

use std::{collections::BTreeSet, fmt, sync::Arc};

use hashbrown::HashMap;
use parking_lot::RwLock;
use psm_core::{
    Email, Error, ErrorKind, NewUser, Page, PermissionRef, Result, Timestamp, User, UserId,
    UserUpdate, Username, check_user_permissions, dedup_permissions,
};

/// User accounts with unique, case-insensitive emails and usernames (the logic of the `UserStore`
/// port, synchronous, with time passed in).
///
/// Uniqueness is checked and the user stored under one write lock, so concurrent creations with
/// one email (or username) leave exactly one user. Returned users are copies.
///
/// A sorted index of `(created_at, id)` serves [`list_users`](Self::list_users) in listing order
/// without copying or sorting the table.
///
/// # Clone
/// Cloning is cheap and **shares state**: every clone sees the same users.
#[derive(Clone, Default)]
pub struct UserTable {
    state: Arc<RwLock<Users>>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<UserId, User>,
    /// `Email::normalized` → id.
    by_email: HashMap<String, UserId>,
    /// `Username::normalized` → id.
    by_username: HashMap<String, UserId>,
    /// `(created_at, id)` of every user in `by_id`: the listing order.
    by_created: BTreeSet<(Timestamp, UserId)>,
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

    /// Removes user `id` and those of its unique keys that still point at it.
    fn remove(&mut self, id: &UserId) -> Option<User> {
        let user = self.by_id.remove(id)?;
        self.by_created.remove(&(user.created_at, user.id.clone()));
        release(&mut self.by_email, &user.email.normalized(), id);
        release(&mut self.by_username, &user.username.normalized(), id);
        Some(user)
    }

    /// Stores `user` and its unique keys (the caller checked they are free).
    fn insert(&mut self, user: User) {
        self.by_email
            .insert(user.email.normalized(), user.id.clone());
        self.by_username
            .insert(user.username.normalized(), user.id.clone());
        self.by_created.insert((user.created_at, user.id.clone()));
        self.by_id.insert(user.id.clone(), user);
    }
}

/// Removes `key` from `index` if it points at `id`. After a [`UserTable::restore`] took a key over,
/// the previous holder's record still names it, and must not free it for the new holder.
fn release(index: &mut HashMap<String, UserId>, key: &str, id: &UserId) {
    if index.get(key) == Some(id) {
        index.remove(key);
    }
}

fn exists(field: &'static str) -> Error {
    Error::new(
        ErrorKind::UserExists,
        format!("a user with this {field} already exists"),
    )
    .with_detail("field", field)
}

impl UserTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a new user created at `now` (`UserStore::create_user`).
    ///
    /// # Errors
    /// `UserExists` (detail `field`: `id`, `email` or `username`) when the id, the email or the
    /// username (both case-insensitive) is taken; a validation error for bad permissions.
    pub fn create_user(&self, user: NewUser, now: Timestamp) -> Result<User> {
        check_user_permissions(&user.permissions)?;
        let mut state = self.state.write();
        if state.by_id.contains_key(&user.id) {
            return Err(exists("id"));
        }
        state.check_free(&user.id, Some(&user.email), Some(&user.username))?;
        let stored = User {
            id: user.id,
            username: user.username,
            email: user.email,
            password_hash: user.password_hash,
            permissions: dedup_permissions(user.permissions),
            created_at: now,
            updated_at: now,
        };
        state.insert(stored.clone());
        Ok(stored)
    }

    /// The user with `id`.
    pub fn get_user(&self, id: &UserId) -> Option<User> {
        self.state.read().by_id.get(id).cloned()
    }

    /// The user with `email` (case-insensitive).
    pub fn get_user_by_email(&self, email: &Email) -> Option<User> {
        let state = self.state.read();
        state
            .by_email
            .get(&email.normalized())
            .and_then(|id| state.by_id.get(id))
            .cloned()
    }

    /// Applies `update` at `now` (`UserStore::update_user`); `None` for an unknown user.
    ///
    /// # Errors
    /// `UserExists` when the new email or username belongs to another user; a validation error for
    /// bad permissions. A failed update changes nothing.
    pub fn update_user(
        &self,
        id: &UserId,
        update: UserUpdate,
        now: Timestamp,
    ) -> Result<Option<User>> {
        if let Some(p) = &update.permissions {
            check_user_permissions(p)?;
        }
        let mut state = self.state.write();
        if !state.by_id.contains_key(id) {
            return Ok(None);
        }
        state.check_free(id, update.email.as_ref(), update.username.as_ref())?;
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
            release(&mut state.by_email, &old, id);
            state
                .by_email
                .insert(updated.email.normalized(), id.clone());
        }
        if let Some(old) = old_username {
            release(&mut state.by_username, &old, id);
            state
                .by_username
                .insert(updated.username.normalized(), id.clone());
        }
        Ok(Some(updated))
    }

    /// Deletes user `id`; `true` if it existed.
    pub fn delete_user(&self, id: &UserId) -> bool {
        self.state.write().remove(id).is_some()
    }

    /// Inserts or replaces `user` exactly as given (timestamps included), for replaying a journal;
    /// the live API ([`create_user`](Self::create_user), [`update_user`](Self::update_user)) keeps
    /// refusing clashes.
    ///
    /// The email and username indexes are last-writer-wins: they point at this user afterwards,
    /// taken over from any other user holding them, and a replaced record's old keys are freed
    /// only where they still point at this user. A clash is never an error: a journal replayed over
    /// a fuzzy snapshot may restore an older record of one user (still naming a key) after a newer
    /// one of another (who took the key since), and the first user's own later record frees it.
    /// The other user's record is left as it is; until its later record comes, it names a key that
    /// points elsewhere, and deleting or updating it leaves that key to its new holder.
    ///
    /// # Errors
    /// None: it always returns `Ok`. The `Result` is kept so that replay code handling every
    /// table alike (and written against the earlier, refusing version) needs no change.
    pub fn restore(&self, user: User) -> Result<()> {
        let mut state = self.state.write();
        let id = user.id.clone();
        let email = user.email.normalized();
        let username = user.username.normalized();
        let created = (user.created_at, id.clone());
        if let Some(old) = state.by_id.insert(id.clone(), user) {
            state.by_created.remove(&(old.created_at, id.clone()));
            release(&mut state.by_email, &old.email.normalized(), &id);
            release(&mut state.by_username, &old.username.normalized(), &id);
        }
        state.by_created.insert(created);
        state.by_email.insert(email, id.clone());
        state.by_username.insert(username, id);
        Ok(())
    }

    /// One page of users ordered by `created_at`, then id (`UserStore::list_users`); with
    /// `permission`, only the users holding exactly that permission (case-sensitive, literal).
    ///
    /// Walks the `(created_at, id)` index under the read lock and copies only the page. Without a
    /// filter that is `O(log n + offset + limit)`; with one it is a scan of the index in order up
    /// to the `offset + limit`-th match (every user when fewer match), checking each user's
    /// permission list.
    pub fn list_users(&self, permission: Option<&PermissionRef>, page: Page) -> Vec<User> {
        let state = self.state.read();
        let ordered = state.by_created.iter().map(|(_, id)| id);
        let (offset, limit) = (page.offset_usize(), page.limit());
        match permission {
            None => ordered
                .skip(offset)
                .take(limit)
                .filter_map(|id| state.by_id.get(id))
                .cloned()
                .collect(),
            Some(wanted) => ordered
                .filter_map(|id| state.by_id.get(id))
                .filter(|u| u.permissions.iter().any(|p| p.as_str() == wanted.as_str()))
                .skip(offset)
                .take(limit)
                .cloned()
                .collect(),
        }
    }

    /// Calls `f` with a copy of every user. The users are copied under the table's read lock and
    /// `f` runs after it is released, so `f` may take as long as it likes and may do anything,
    /// including writing to this table (the walk sees the table as of the copy).
    pub fn for_each_user(&self, mut f: impl FnMut(&User)) {
        let users: Vec<User> = self.state.read().by_id.values().cloned().collect();
        for user in &users {
            f(user);
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.state.read().by_id.len()
    }

    /// Whether the table holds no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for UserTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTable")
            .field("users", &self.len())
            .finish_non_exhaustive()
    }
}

impl UserTable {
    /// Removes everything (a durable adapter reloading from disk starts from an empty table).
    pub fn clear(&self) {
        *self.state.write() = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use std::{thread, time::Duration};

    use psm_core::{Clock, ManualClock, PasswordHash, Permission, PermissionRef};

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

    fn now() -> Timestamp {
        ManualClock::at_2024().now()
    }

    #[test]
    fn unique_case_insensitive_email_and_username() {
        let s = UserTable::new();
        let u = s
            .create_user(new_user("1", "Alice@Example.com", "alice"), now())
            .unwrap();
        assert_eq!(u.permissions.len(), 2);
        assert_eq!((u.created_at, u.updated_at), (now(), now()));
        for (dup, field) in [
            (new_user("2", "alice@EXAMPLE.com", "bob"), "email"),
            (new_user("2", "b@x.io", "ALICE"), "username"),
            (new_user("1", "c@x.io", "carol"), "id"),
        ] {
            let e = s.create_user(dup, now()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UserExists);
            assert_eq!(e.detail("field"), Some(field));
        }
        let email = Email::parse("ALICE@example.COM").unwrap();
        assert_eq!(s.get_user_by_email(&email).unwrap().id, u.id);
        assert_eq!(s.get_user(&u.id), Some(u));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn update_moves_the_unique_keys_and_delete_frees_them() {
        let s = UserTable::new();
        let a = s
            .create_user(new_user("1", "a@x.io", "alice"), now())
            .unwrap();
        s.create_user(new_user("2", "b@x.io", "bobby"), now())
            .unwrap();
        let taken = UserUpdate {
            email: Some(Email::parse("B@x.io").unwrap()),
            ..UserUpdate::default()
        };
        assert_eq!(
            s.update_user(&a.id, taken, now()).unwrap_err().kind(),
            ErrorKind::UserExists
        );
        let later = now().plus_secs(5);
        let change = UserUpdate {
            email: Some(Email::parse("new@x.io").unwrap()),
            ..UserUpdate::default()
        };
        let updated = s.update_user(&a.id, change, later).unwrap().unwrap();
        assert_eq!((updated.created_at, updated.updated_at), (now(), later));
        assert!(
            s.get_user_by_email(&Email::parse("a@x.io").unwrap())
                .is_none()
        );
        // Changing to one's own address (in another case) is not a conflict.
        let same = UserUpdate {
            email: Some(Email::parse("NEW@x.io").unwrap()),
            ..UserUpdate::default()
        };
        assert!(s.update_user(&a.id, same, later).unwrap().is_some());
        let unknown = UserId::parse("nobody").unwrap();
        assert!(
            s.update_user(&unknown, UserUpdate::default(), later)
                .unwrap()
                .is_none()
        );
        assert!(s.delete_user(&a.id));
        assert!(!s.delete_user(&a.id));
        assert!(
            s.create_user(new_user("3", "new@x.io", "alice"), later)
                .is_ok()
        );
    }

    #[test]
    fn concurrent_creations_with_one_email_leave_one() {
        let s = UserTable::new();
        let ok: usize = thread::scope(|scope| {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let s = s.clone();
                    scope.spawn(move || {
                        let u = new_user(&format!("u{i}"), "same@x.io", &format!("user{i}"));
                        usize::from(s.create_user(u, now()).is_ok())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(ok, 1);
        assert_eq!(s.len(), 1, "clones share state");
    }

    #[test]
    fn restore_keeps_the_record_exactly_and_the_unique_keys_consistent() {
        let clock = ManualClock::at_2024();
        let source = UserTable::new();
        let a = source
            .create_user(new_user("1", "a@x.io", "alice"), clock.now())
            .unwrap();
        clock.advance(Duration::from_secs(7));
        let b = source
            .create_user(new_user("2", "b@x.io", "bobby"), clock.now())
            .unwrap();
        let copy = UserTable::new();
        source.for_each_user(|u| copy.restore(u.clone()).unwrap());
        assert_eq!(copy.len(), 2);
        assert_eq!(copy.get_user(&a.id), Some(a.clone()));
        assert_eq!(copy.get_user(&b.id), Some(b.clone()));

        // Replacing a user frees its old keys.
        let renamed = User {
            email: Email::parse("renamed@x.io").unwrap(),
            username: Username::parse("ally").unwrap(),
            ..a.clone()
        };
        copy.restore(renamed.clone()).unwrap();
        assert_eq!(
            copy.get_user_by_email(&Email::parse("RENAMED@x.io").unwrap()),
            Some(renamed.clone())
        );
        assert!(
            copy.get_user_by_email(&Email::parse("a@x.io").unwrap())
                .is_none()
        );
        assert!(
            copy.create_user(new_user("3", "a@x.io", "alice"), clock.now())
                .is_ok()
        );

        assert_eq!(copy.len(), 3);
    }

    fn user(id: &str, email: &str, username: &str) -> User {
        let n = new_user(id, email, username);
        User {
            id: n.id,
            username: n.username,
            email: n.email,
            password_hash: n.password_hash,
            permissions: n.permissions,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn by_email(s: &UserTable, email: &str) -> Option<String> {
        s.get_user_by_email(&Email::parse(email).unwrap())
            .map(|u| u.id.as_str().to_owned())
    }

    fn by_username(s: &UserTable, username: &str) -> Option<String> {
        let key = Username::parse(username).unwrap().normalized();
        s.state
            .read()
            .by_username
            .get(&key)
            .map(|id| id.as_str().to_owned())
    }

    /// Every index entry points at a stored user, and the listing index holds each user once,
    /// under its own `created_at`.
    fn assert_indexes_point_at_users(s: &UserTable) {
        let state = s.state.read();
        for id in state.by_email.values().chain(state.by_username.values()) {
            assert!(state.by_id.contains_key(id), "{id}");
        }
        assert_eq!(state.by_created.len(), state.by_id.len());
        for (created, id) in &state.by_created {
            assert_eq!(state.by_id.get(id).map(|u| u.created_at), Some(*created));
        }
    }

    fn listed(s: &UserTable, permission: Option<&str>, limit: u64, offset: u64) -> Vec<String> {
        let permission = permission.map(|p| PermissionRef::parse(p).unwrap());
        s.list_users(permission, Page::new(limit, offset).unwrap())
            .iter()
            .map(|u| u.id.as_str().to_owned())
            .collect()
    }

    #[test]
    fn list_users_follows_the_created_index_through_updates_restores_and_deletes() {
        let s = UserTable::new();
        let t0 = now();
        s.create_user(new_user("b", "b@x.io", "bobby"), t0).unwrap();
        s.create_user(new_user("a", "a@x.io", "alice"), t0).unwrap();
        s.create_user(new_user("c", "c@x.io", "carol"), t0.plus_secs(-1))
            .unwrap();
        assert_eq!(listed(&s, None, 10, 0), ["c", "a", "b"]);
        assert_eq!(listed(&s, None, 1, 1), ["a"]);
        assert_eq!(listed(&s, None, 10, 3), Vec::<String>::new());
        assert_eq!(listed(&s, None, 10, u64::MAX), Vec::<String>::new());

        // An update keeps the place; only exact permissions match.
        let only_admin = UserUpdate {
            permissions: Some(vec![Permission::parse("Admin").unwrap()]),
            ..UserUpdate::default()
        };
        s.update_user(&UserId::parse("a").unwrap(), only_admin, t0.plus_secs(9))
            .unwrap();
        assert_eq!(listed(&s, None, 10, 0), ["c", "a", "b"]);
        assert_eq!(listed(&s, Some("read"), 10, 0), ["c", "b"]);
        assert_eq!(listed(&s, Some("read"), 1, 1), ["b"]);
        assert_eq!(listed(&s, Some("Admin"), 10, 0), ["a"]);
        assert_eq!(listed(&s, Some("admin"), 10, 0), Vec::<String>::new());

        // A restore with another created_at moves the user and leaves no stale entry.
        let mut moved = s.get_user(&UserId::parse("c").unwrap()).unwrap();
        moved.created_at = t0.plus_secs(5);
        s.restore(moved).unwrap();
        assert_eq!(listed(&s, None, 10, 0), ["a", "b", "c"]);
        assert_indexes_point_at_users(&s);

        assert!(s.delete_user(&UserId::parse("a").unwrap()));
        assert_eq!(listed(&s, None, 10, 0), ["b", "c"]);
        assert_indexes_point_at_users(&s);
        s.clear();
        assert_eq!(listed(&s, None, 10, 0), Vec::<String>::new());
        assert_indexes_point_at_users(&s);
    }

    /// A journal replayed over a fuzzy snapshot: B's older record (still holding X) comes after A
    /// took X, and B's later record gives X up.
    #[test]
    fn restore_is_last_writer_wins_through_a_transient_clash() {
        let s = UserTable::new();
        s.restore(user("b", "x@x.io", "shared")).unwrap();
        s.restore(user("a", "X@x.io", "SHARED")).unwrap();
        assert_eq!(by_email(&s, "x@x.io").as_deref(), Some("a"), "taken over");
        assert_eq!(by_username(&s, "shared").as_deref(), Some("a"));
        assert_eq!(
            s.get_user(&UserId::parse("b").unwrap()).unwrap().email,
            Email::parse("x@x.io").unwrap(),
            "the other user's record is left as it is"
        );
        s.restore(user("b", "y@x.io", "bobby")).unwrap();
        assert_eq!(by_email(&s, "x@x.io").as_deref(), Some("a"));
        assert_eq!(by_email(&s, "y@x.io").as_deref(), Some("b"));
        assert_eq!(by_username(&s, "shared").as_deref(), Some("a"));
        assert_eq!(by_username(&s, "bobby").as_deref(), Some("b"));
        assert_eq!(s.len(), 2);
        let state = s.state.read();
        assert_eq!((state.by_email.len(), state.by_username.len()), (2, 2));
    }

    #[test]
    fn deleting_the_loser_of_a_restore_clash_keeps_the_winners_keys() {
        let s = UserTable::new();
        s.restore(user("b", "x@x.io", "shared")).unwrap();
        s.restore(user("a", "x@x.io", "shared")).unwrap();
        assert!(s.delete_user(&UserId::parse("b").unwrap()));
        assert_eq!(by_email(&s, "x@x.io").as_deref(), Some("a"));
        assert_eq!(by_username(&s, "shared").as_deref(), Some("a"));
        let e = s
            .create_user(new_user("c", "x@x.io", "carol"), now())
            .unwrap_err();
        assert_eq!(e.detail("field"), Some("email"), "x is still a's");
        assert_indexes_point_at_users(&s);
    }

    #[test]
    fn updating_the_loser_of_a_restore_clash_keeps_the_winners_keys() {
        let s = UserTable::new();
        s.restore(user("b", "x@x.io", "shared")).unwrap();
        s.restore(user("a", "x@x.io", "shared")).unwrap();
        let b = UserId::parse("b").unwrap();
        // The live API still refuses a clash, even with the key b's record names.
        let keep = UserUpdate {
            email: Some(Email::parse("x@x.io").unwrap()),
            ..UserUpdate::default()
        };
        assert_eq!(
            s.update_user(&b, keep, now()).unwrap_err().kind(),
            ErrorKind::UserExists
        );
        let moved = UserUpdate {
            email: Some(Email::parse("y@x.io").unwrap()),
            username: Some(Username::parse("bobby").unwrap()),
            ..UserUpdate::default()
        };
        s.update_user(&b, moved, now()).unwrap().unwrap();
        assert_eq!(by_email(&s, "x@x.io").as_deref(), Some("a"));
        assert_eq!(by_username(&s, "shared").as_deref(), Some("a"));
        assert_eq!(by_email(&s, "y@x.io").as_deref(), Some("b"));
        assert_eq!(by_username(&s, "bobby").as_deref(), Some("b"));
        assert_indexes_point_at_users(&s);

        // The winner's own change still frees its old keys.
        let a_moves = UserUpdate {
            email: Some(Email::parse("z@x.io").unwrap()),
            ..UserUpdate::default()
        };
        s.update_user(&UserId::parse("a").unwrap(), a_moves, now())
            .unwrap()
            .unwrap();
        assert!(by_email(&s, "x@x.io").is_none());
        assert!(
            s.create_user(new_user("c", "x@x.io", "carol"), now())
                .is_ok()
        );
        assert_indexes_point_at_users(&s);
    }

    #[test]
    fn for_each_user_may_write_to_the_table() {
        let s = UserTable::new();
        s.restore(user("a", "a@x.io", "alice")).unwrap();
        s.restore(user("b", "b@x.io", "bobby")).unwrap();
        let mut seen = 0;
        s.for_each_user(|u| {
            seen += 1;
            // Would deadlock if `f` ran under the table's lock.
            assert!(s.delete_user(&u.id));
        });
        assert_eq!(seen, 2);
        assert!(s.is_empty());
    }
}
