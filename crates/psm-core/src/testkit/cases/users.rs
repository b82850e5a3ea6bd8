//! The `UserStore` port: unique case-insensitive email and username, partial updates, deletion,
//! and listing (order, paging, the exact permission filter).

use std::collections::BTreeSet;

use super::support::{
    Must, NowWindow, STEP, SUB_SECOND, all, concurrently, must_fail, page, perm, uid,
};
use crate::{
    DynUserStore, Email, ErrorKind, MAX_PAGE_LIMIT, NewUser, Page, PasswordHash, User, UserId,
    UserUpdate, Username,
    testkit::{UserStoreFixture, user_store},
};

/// A username the case knows to be valid.
#[track_caller]
fn username(s: &str) -> Username {
    Username::parse(s).must("building a test username")
}

/// An email the case knows to be valid.
#[track_caller]
fn email(s: &str) -> Email {
    Email::parse(s).must("building a test email")
}

/// A password hash the case knows to be valid.
#[track_caller]
fn hash(tag: &str) -> PasswordHash {
    PasswordHash::new(&format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${tag}"))
        .must("building a test hash")
}

/// A new user with the given id, username, email and permissions.
#[track_caller]
fn new_user(id: &str, name: &str, mail: &str, permissions: &[&str]) -> NewUser {
    NewUser {
        id: uid(id),
        username: username(name),
        email: email(mail),
        password_hash: hash(id),
        permissions: permissions.iter().map(|p| perm(p)).collect(),
    }
}

/// `create_user`, failing the case on error.
async fn create(store: &DynUserStore, u: NewUser) -> User {
    store.create_user(u).await.must("create_user")
}

/// `get_user`, failing the case on error.
async fn get(store: &DynUserStore, id: &str) -> Option<User> {
    store
        .get_user(&uid(id))
        .await
        .must(&format!("get_user({id})"))
}

/// `get_user_by_email`, failing the case on error.
async fn by_email(store: &DynUserStore, mail: &str) -> Option<User> {
    store
        .get_user_by_email(&email(mail))
        .await
        .must(&format!("get_user_by_email({mail})"))
}

/// `list_users`, failing the case on error; `permission` is parsed as a permission.
async fn list(store: &DynUserStore, permission: Option<&str>, p: Page) -> Vec<User> {
    let permission = permission.map(perm);
    let listed = store
        .list_users(permission.as_deref(), p)
        .await
        .must(&format!("list_users({permission:?}, {p:?})"));
    assert!(
        listed.len() <= p.limit(),
        "list_users must return at most `limit` users"
    );
    listed
}

/// The ids of `users`, in order.
fn ids_of(users: &[User]) -> Vec<UserId> {
    users.iter().map(|u| u.id.clone()).collect()
}

/// Several user ids.
#[track_caller]
fn uids(s: &[&str]) -> Vec<UserId> {
    s.iter().map(|s| uid(s)).collect()
}

/// Asserts that `users` are ordered by `created_at`, then by id, strictly (no user twice).
#[track_caller]
fn assert_listing_order(users: &[User], what: &str) {
    for pair in users.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            (a.created_at, &a.id) < (b.created_at, &b.id),
            "{what}: {} ({}) must come after {} ({}): order is created_at, then id, each user once",
            b.id,
            b.created_at,
            a.id,
            a.created_at
        );
    }
}

/// Every page of `limit` from the start until a short page, concatenated.
async fn paged(store: &DynUserStore, permission: Option<&str>, limit: u64) -> Vec<User> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let p = list(store, permission, page(limit, offset)).await;
        let full = p.len() as u64 == limit;
        out.extend(p);
        if !full {
            return out;
        }
        offset += limit;
    }
}

/// `create_user` returns the stored user (`created_at == updated_at`), and `get_user` and
/// `get_user_by_email` return the same record.
pub async fn create_user_then_get_returns_it<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = user_store(f).await;
    assert!(
        !store.provider_name().is_empty(),
        "provider_name must not be empty"
    );
    let given = new_user("u1", "alice", "alice@example.com", &["read", "write"]);
    // A sub-second instant, so a store keeping less than microsecond precision is caught.
    tt.advance(SUB_SECOND).await;
    let now = NowWindow::open(&tt);
    let created = create(&store, given.clone()).await;
    now.assert_now(created.created_at, "created_at");
    assert_eq!(created.id, given.id, "create_user: id");
    assert_eq!(created.username, given.username, "create_user: username");
    assert_eq!(
        created.email, given.email,
        "create_user: email kept as given"
    );
    assert_eq!(
        created.password_hash, given.password_hash,
        "create_user: password hash"
    );
    assert_eq!(
        created.permissions, given.permissions,
        "create_user: permissions in order"
    );
    assert_eq!(
        created.created_at, created.updated_at,
        "a new user's created_at and updated_at must be equal"
    );
    assert_eq!(
        get(&store, "u1").await.as_ref(),
        Some(&created),
        "get_user must return the created user"
    );
    assert_eq!(
        by_email(&store, "alice@example.com").await.as_ref(),
        Some(&created),
        "get_user_by_email"
    );
}

/// Email lookups ignore case (including non-ASCII letters) and return the email as it was given.
pub async fn email_lookup_is_case_insensitive<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    create(&store, new_user("u1", "alice", "Alice@Example.com", &[])).await;
    create(&store, new_user("u2", "jorg", "J\u{d6}RG@example.com", &[])).await;
    for mail in [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "Alice@Example.com",
        "aLiCe@eXaMpLe.CoM",
    ] {
        let u = by_email(&store, mail).await;
        assert_eq!(
            u.map(|u| u.id),
            Some(uid("u1")),
            "get_user_by_email({mail:?}) must find alice"
        );
    }
    let found = by_email(&store, "alice@example.com").await;
    assert_eq!(
        found.map(|u| u.email),
        Some(email("Alice@Example.com")),
        "the email must come back as given"
    );
    let u = by_email(&store, "j\u{f6}rg@EXAMPLE.com").await;
    assert_eq!(
        u.map(|u| u.id),
        Some(uid("u2")),
        "case-insensitive lookups must fold non-ASCII letters"
    );
    assert_eq!(
        by_email(&store, "alice@example.org").await,
        None,
        "another domain is another email"
    );
    assert_eq!(
        by_email(&store, "alic@example.com").await,
        None,
        "a prefix is another email"
    );
}

/// A taken id, email or username (case-insensitively) fails with `UserExists` and changes nothing.
pub async fn duplicate_id_email_or_username_fails_with_user_exists<F: UserStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = user_store(f).await;
    let alice = create(
        &store,
        new_user("u1", "alice", "alice@example.com", &["read"]),
    )
    .await;
    for (what, dup) in [
        (
            "the same id",
            new_user("u1", "other", "other@example.com", &[]),
        ),
        (
            "the same email in another case",
            new_user("u2", "other", "ALICE@example.COM", &[]),
        ),
        (
            "the same username in another case",
            new_user("u2", "ALICE", "other@example.com", &[]),
        ),
    ] {
        must_fail(
            store.create_user(dup).await,
            ErrorKind::UserExists,
            &format!("create_user with {what}"),
        );
    }
    assert_eq!(
        get(&store, "u1").await,
        Some(alice),
        "a refused create_user must not change the existing user"
    );
    assert_eq!(
        get(&store, "u2").await,
        None,
        "a refused create_user must store nothing"
    );
    assert_eq!(
        by_email(&store, "other@example.com").await,
        None,
        "a refused create_user must not claim its email"
    );
    create(&store, new_user("u2", "other", "other@example.com", &[])).await;
}

/// Duplicate permissions are dropped on creation, first occurrence kept.
pub async fn duplicate_user_permissions_are_dropped<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    let created = create(
        &store,
        new_user(
            "u1",
            "alice",
            "alice@example.com",
            &["b", "a", "b", "c", "a"],
        ),
    )
    .await;
    let want = vec![perm("b"), perm("a"), perm("c")];
    assert_eq!(
        created.permissions, want,
        "create_user must drop duplicate permissions, first occurrence kept"
    );
    assert_eq!(
        get(&store, "u1").await.map(|u| u.permissions),
        Some(want),
        "the stored user must be deduplicated"
    );
}

/// An unknown user reads as `None`, updates as `None`, and deletes as `false`.
pub async fn unknown_user_reads_as_missing<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    assert_eq!(
        get(&store, "nobody").await,
        None,
        "get_user on an unknown id"
    );
    assert_eq!(
        by_email(&store, "nobody@example.com").await,
        None,
        "get_user_by_email on an unknown email"
    );
    let update = UserUpdate {
        username: Some(username("nobody")),
        ..UserUpdate::default()
    };
    assert_eq!(
        store
            .update_user(&uid("nobody"), update)
            .await
            .must("update_user"),
        None,
        "update_user on unknown"
    );
    assert!(
        !store.delete_user(&uid("nobody")).await.must("delete_user"),
        "delete_user on an unknown id"
    );
    assert_eq!(
        by_email(&store, "nobody@example.com").await,
        None,
        "nothing may be created by these calls"
    );
}

/// `update_user` changes only the given fields, sets `updated_at`, keeps `created_at`, and after an
/// email change the old email finds nobody.
pub async fn update_user_changes_only_the_given_fields<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = user_store(f).await;
    let before = create(
        &store,
        new_user("u1", "alice", "alice@example.com", &["read"]),
    )
    .await;
    tt.advance(STEP).await;
    let now = NowWindow::open(&tt);
    let update = UserUpdate {
        username: Some(username("alice2")),
        ..UserUpdate::default()
    };
    let after = store
        .update_user(&uid("u1"), update)
        .await
        .must("update_user(username)");
    let after = after.unwrap_or_else(|| panic!("update_user on an existing user returned None"));
    assert_eq!(
        after.username,
        username("alice2"),
        "update_user must set the username"
    );
    assert_eq!(after.email, before.email, "update_user must keep the email");
    assert_eq!(
        after.password_hash, before.password_hash,
        "update_user must keep the password hash"
    );
    assert_eq!(
        after.permissions, before.permissions,
        "update_user must keep the permissions"
    );
    assert_eq!(
        after.created_at, before.created_at,
        "update_user must keep created_at"
    );
    assert!(
        after.updated_at > before.updated_at,
        "update_user must set updated_at"
    );
    now.assert_now(after.updated_at, "updated_at");
    assert_eq!(
        get(&store, "u1").await.as_ref(),
        Some(&after),
        "get_user must return the updated user"
    );

    let update = UserUpdate {
        email: Some(email("new@example.com")),
        password_hash: Some(hash("new")),
        permissions: Some(vec![perm("admin")]),
        ..UserUpdate::default()
    };
    let after = store
        .update_user(&uid("u1"), update)
        .await
        .must("update_user(email, hash, permissions)");
    let after = after.unwrap_or_else(|| panic!("update_user on an existing user returned None"));
    assert_eq!(
        after.username,
        username("alice2"),
        "a later update must keep the earlier username"
    );
    assert_eq!(
        after.password_hash,
        hash("new"),
        "update_user must set the password hash"
    );
    assert_eq!(
        after.permissions,
        vec![perm("admin")],
        "update_user must replace the permissions"
    );
    assert_eq!(
        by_email(&store, "alice@example.com").await,
        None,
        "after an email change the old email finds nobody"
    );
    assert_eq!(
        by_email(&store, "NEW@example.com").await.map(|u| u.id),
        Some(uid("u1")),
        "the new email finds the user"
    );
    create(&store, new_user("u2", "alice", "alice@example.com", &[])).await;
}

/// Updating to another user's email or username (case-insensitively) fails with `UserExists` and
/// changes nothing; changing the case of one's own email is allowed.
pub async fn update_user_to_a_taken_email_or_username_fails<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    create(&store, new_user("u1", "alice", "alice@example.com", &[])).await;
    let bob = create(&store, new_user("u2", "bob", "bob@example.com", &[])).await;
    let taken_email = UserUpdate {
        email: Some(email("ALICE@example.com")),
        ..UserUpdate::default()
    };
    must_fail(
        store.update_user(&uid("u2"), taken_email).await,
        ErrorKind::UserExists,
        "update to a taken email",
    );
    let taken_name = UserUpdate {
        username: Some(username("Alice")),
        password_hash: Some(hash("changed")),
        ..UserUpdate::default()
    };
    must_fail(
        store.update_user(&uid("u2"), taken_name).await,
        ErrorKind::UserExists,
        "update to a taken username",
    );
    assert_eq!(
        get(&store, "u2").await,
        Some(bob),
        "a refused update_user must change nothing"
    );
    let own = UserUpdate {
        email: Some(email("Alice@EXAMPLE.com")),
        ..UserUpdate::default()
    };
    let updated = store
        .update_user(&uid("u1"), own)
        .await
        .must("update to one's own email in another case");
    assert_eq!(
        updated.map(|u| u.email),
        Some(email("Alice@EXAMPLE.com")),
        "the new spelling must be kept"
    );
    assert_eq!(
        by_email(&store, "alice@example.com").await.map(|u| u.id),
        Some(uid("u1")),
        "lookups must still work"
    );
}

/// `delete_user` returns `true` once, and frees the email and username for a new user.
pub async fn delete_user_frees_email_and_username<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    create(&store, new_user("u1", "alice", "alice@example.com", &[])).await;
    create(&store, new_user("u2", "bob", "bob@example.com", &[])).await;
    assert!(
        store.delete_user(&uid("u1")).await.must("delete_user(u1)"),
        "deleting an existing user returns true"
    );
    assert!(
        !store
            .delete_user(&uid("u1"))
            .await
            .must("delete_user(u1) again"),
        "a second delete returns false"
    );
    assert_eq!(get(&store, "u1").await, None, "a deleted user must be gone");
    assert_eq!(
        by_email(&store, "alice@example.com").await,
        None,
        "a deleted user's email must find nobody"
    );
    assert!(
        get(&store, "u2").await.is_some(),
        "deleting a user must leave the others"
    );
    let again = create(&store, new_user("u3", "ALICE", "Alice@Example.com", &[])).await;
    assert_eq!(
        by_email(&store, "alice@example.com").await,
        Some(again),
        "the freed email and username are reusable"
    );
}

/// Of 32 concurrent creations with one email (in varying case), exactly one succeeds; the others
/// fail with `UserExists`.
pub async fn concurrent_create_user_with_one_email_leaves_one<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    let results = concurrently(32, |i| {
        let store = store.clone();
        let mail = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        let u = new_user(&format!("u{i}"), &format!("user{i}"), mail, &[]);
        async move { store.create_user(u).await }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(u) => winners.push(u),
            Err(e) => assert_eq!(e.kind(), ErrorKind::UserExists, "a losing create_user: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create_user with one email must succeed"
    );
    assert_eq!(
        by_email(&store, "race@example.com").await,
        winners.pop(),
        "the email must find the winner"
    );
}

/// Of 32 concurrent creations with one username (in varying case), exactly one succeeds.
pub async fn concurrent_create_user_with_one_username_leaves_one<F: UserStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = user_store(f).await;
    let results = concurrently(32, |i| {
        let store = store.clone();
        let name = if i % 2 == 0 { "racer" } else { "RACER" };
        let u = new_user(&format!("u{i}"), name, &format!("user{i}@example.com"), &[]);
        async move { store.create_user(u).await }
    })
    .await;
    let mut winners = 0;
    let mut losers = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(_) => winners += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::UserExists, "a losing create_user: {e}");
                losers.push(i);
            }
        }
    }
    assert_eq!(
        winners, 1,
        "exactly one concurrent create_user with one username must succeed"
    );
    for i in losers {
        assert_eq!(
            get(&store, &format!("u{i}")).await,
            None,
            "a losing create_user must store nothing"
        );
    }
}

/// `list_users` orders by `created_at`, then by id (bytewise); updates do not move a user, deleted
/// users are not listed, and each listed user equals `get_user`'s.
pub async fn users_are_listed_by_created_at_then_id<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = user_store(f).await;
    for (id, name) in [("c", "carol"), ("a", "alice"), ("b", "bobby")] {
        let mail = format!("{name}@example.com");
        create(&store, new_user(id, name, &mail, &["read"])).await;
        tt.advance(STEP).await;
    }
    assert_eq!(
        ids_of(&list(&store, None, all()).await),
        uids(&["c", "a", "b"]),
        "list_users must follow created_at"
    );
    let update = UserUpdate {
        username: Some(username("carol2")),
        permissions: Some(vec![perm("write")]),
        ..UserUpdate::default()
    };
    store
        .update_user(&uid("c"), update)
        .await
        .must("update_user(c)");
    let listed = list(&store, None, all()).await;
    assert_eq!(
        ids_of(&listed),
        uids(&["c", "a", "b"]),
        "update_user must not move a user"
    );
    for u in &listed {
        assert_eq!(
            get(&store, u.id.as_str()).await.as_ref(),
            Some(u),
            "a listed user must equal get_user's"
        );
    }
    assert_eq!(
        listed[0].username,
        username("carol2"),
        "the listing must show the update"
    );
    assert!(
        store.delete_user(&uid("a")).await.must("delete_user(a)"),
        "deleting an existing user"
    );
    assert_eq!(
        ids_of(&list(&store, None, all()).await),
        uids(&["c", "b"]),
        "a deleted user must not be listed"
    );
    if tt.is_exact() {
        // One instant for all four: the id decides, bytewise ('X' < 'x', "x10" < "x9").
        for (id, name) in [
            ("y", "yvonne"),
            ("x9", "xnine"),
            ("X", "xavier"),
            ("x10", "xten"),
        ] {
            let mail = format!("{name}@example.com");
            create(&store, new_user(id, name, &mail, &[])).await;
        }
        assert_eq!(
            ids_of(&list(&store, None, all()).await),
            uids(&["c", "b", "X", "x10", "x9", "y"]),
            "equal created_at must be ordered by id, bytewise"
        );
    } else {
        create(&store, new_user("a", "alice", "alice@example.com", &[])).await;
        assert_eq!(
            ids_of(&list(&store, None, all()).await),
            uids(&["c", "b", "a"]),
            "a recreated user is listed as new"
        );
    }
    assert_listing_order(&list(&store, None, all()).await, "list_users");
}

/// Paging with no concurrent writes yields every user exactly once, in the order of one big page,
/// with and without a permission filter.
pub async fn paging_users_yields_everyone_exactly_once<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = user_store(f).await;
    let mut expected = BTreeSet::new();
    let mut admins = BTreeSet::new();
    for i in 0..23 {
        // Ids run against creation order, and users share instants in groups of four (on a clock
        // the store reads), so the id tie-break is paged across too.
        let id = format!("u{:02}", 22 - i);
        let name = format!("user{i:02}");
        let perms: &[&str] = if i % 3 == 0 {
            &["read", "admin"]
        } else {
            &["read"]
        };
        create(
            &store,
            new_user(&id, &name, &format!("{name}@example.com"), perms),
        )
        .await;
        expected.insert(uid(&id));
        if i % 3 == 0 {
            admins.insert(uid(&id));
        }
        if i % 4 == 3 {
            tt.advance(STEP).await;
        }
    }
    let everyone = list(&store, None, all()).await;
    assert_listing_order(&everyone, "list_users(None)");
    assert_eq!(
        ids_of(&everyone).into_iter().collect::<BTreeSet<_>>(),
        expected,
        "list_users(None) must hold every user"
    );
    assert_eq!(everyone.len(), 23, "list_users(None) must list 23 users");
    for limit in [1, 4, 22, 23, 24] {
        assert_eq!(
            paged(&store, None, limit).await,
            everyone,
            "pages of {limit} must concatenate to the listing"
        );
    }
    let listed_admins = list(&store, Some("admin"), all()).await;
    assert_eq!(
        ids_of(&listed_admins).into_iter().collect::<BTreeSet<_>>(),
        admins,
        "list_users(admin) must hold every admin"
    );
    let in_order: Vec<User> = everyone
        .iter()
        .filter(|u| admins.contains(&u.id))
        .cloned()
        .collect();
    assert_eq!(
        listed_admins, in_order,
        "the filtered listing must keep the listing's order"
    );
    for limit in [1, 3, 8, 9] {
        assert_eq!(
            paged(&store, Some("admin"), limit).await,
            listed_admins,
            "filtered pages of {limit} must concatenate to the filtered listing"
        );
    }
}

/// The permission filter compares exactly and case-sensitively: no prefix, case or Unicode
/// folding, and `*` or `?` are literal; it follows updates and deletions.
pub async fn user_permission_filter_is_exact_and_case_sensitive<F: UserStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = user_store(f).await;
    let decomposed = "e\u{301}crire";
    let users: [(&str, &[&str]); 7] = [
        ("u1", &["read"]),
        ("u2", &["Read"]),
        ("u3", &["read:all", "reader"]),
        ("u4", &["re*", "write"]),
        ("u5", &["\u{e9}crire", "read"]),
        ("u6", &[]),
        ("u7", &["READ", decomposed]),
    ];
    for (id, perms) in users {
        let name = format!("user_{id}");
        create(
            &store,
            new_user(id, &name, &format!("{name}@example.com"), perms),
        )
        .await;
        tt.advance(STEP).await;
    }
    for (filter, want) in [
        ("read", &["u1", "u5"][..]),
        ("Read", &["u2"]),
        ("READ", &["u7"]),
        ("rea", &[]),
        ("read:all", &["u3"]),
        ("reader", &["u3"]),
        ("re*", &["u4"]),
        ("r*", &[]),
        ("re?", &[]),
        ("*", &[]),
        ("write", &["u4"]),
        ("\u{e9}crire", &["u5"]),
        (decomposed, &["u7"]),
        ("nobody-has-this", &[]),
    ] {
        assert_eq!(
            ids_of(&list(&store, Some(filter), all()).await),
            uids(want),
            "list_users({filter:?}) must match exactly and case-sensitively"
        );
    }
    let update = UserUpdate {
        permissions: Some(vec![perm("read")]),
        ..UserUpdate::default()
    };
    store
        .update_user(&uid("u2"), update)
        .await
        .must("update_user(u2)");
    assert_eq!(
        ids_of(&list(&store, Some("read"), all()).await),
        uids(&["u1", "u2", "u5"]),
        "the filter must follow update_user"
    );
    assert_eq!(
        ids_of(&list(&store, Some("Read"), all()).await),
        uids(&[]),
        "a removed permission must no longer match"
    );
    assert!(
        store.delete_user(&uid("u1")).await.must("delete_user(u1)"),
        "deleting an existing user"
    );
    assert_eq!(
        ids_of(&list(&store, Some("read"), all()).await),
        uids(&["u2", "u5"]),
        "a deleted user must not match"
    );
    assert_eq!(
        list(&store, None, all()).await.len(),
        6,
        "without a filter every user is listed"
    );
}

/// An empty store lists nothing, on any page and with any filter, also after its only user left.
pub async fn empty_user_store_lists_nothing<F: UserStoreFixture + ?Sized>(f: &F) {
    let (store, _) = user_store(f).await;
    for (filter, p) in [
        (None, all()),
        (None, page(1, 0)),
        (None, page(10, 5)),
        (Some("read"), all()),
    ] {
        assert_eq!(
            list(&store, filter, p).await,
            Vec::new(),
            "an empty store must list nothing ({filter:?}, {p:?})"
        );
    }
    create(
        &store,
        new_user("u1", "alice", "alice@example.com", &["read"]),
    )
    .await;
    assert!(
        store.delete_user(&uid("u1")).await.must("delete_user(u1)"),
        "deleting the only user"
    );
    for filter in [None, Some("read")] {
        assert_eq!(
            list(&store, filter, all()).await,
            Vec::new(),
            "a store whose only user was deleted must list nothing ({filter:?})"
        );
    }
}

/// `limit` caps a page and `offset` skips, also past the end (an empty page, never an error); the
/// bounds are `Page`'s: limit 1 to 10,000, offset not negative.
pub async fn user_listing_respects_limit_and_offset<F: UserStoreFixture + ?Sized>(f: &F) {
    for (what, bad) in [
        ("limit 0", Page::new(0, 0)),
        ("limit 10001", Page::new(u64::from(MAX_PAGE_LIMIT) + 1, 0)),
        ("offset -1", Page::from_i64(10, -1)),
        ("limit -1", Page::from_i64(-1, 0)),
    ] {
        must_fail(bad, ErrorKind::Validation, &format!("a page with {what}"));
    }
    let (store, tt) = user_store(f).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let name = format!("user{i}");
        let perms: &[&str] = if i % 2 == 0 { &["even"] } else { &[] };
        made.push(uid(&name));
        create(
            &store,
            new_user(&name, &name, &format!("{name}@example.com"), perms),
        )
        .await;
        tt.advance(STEP).await;
    }
    let everyone = ids_of(&list(&store, None, all()).await);
    assert_eq!(everyone, made, "creation order must be the listing order");
    for (limit, offset, want) in [
        (3, 0, &made[0..3]),
        (3, 3, &made[3..6]),
        (3, 6, &made[6..]),
        (1, 4, &made[4..5]),
        (10, 2, &made[2..]),
        (u64::from(MAX_PAGE_LIMIT), 0, &made[..]),
        (3, 7, &[]),
        (3, 1_000, &[]),
        (u64::from(MAX_PAGE_LIMIT), u64::MAX, &[]),
    ] {
        assert_eq!(
            ids_of(&list(&store, None, page(limit, offset)).await),
            want,
            "list_users(limit {limit}, offset {offset})"
        );
    }
    let evens = [
        made[0].clone(),
        made[2].clone(),
        made[4].clone(),
        made[6].clone(),
    ];
    for (limit, offset, want) in [
        (2, 0, &evens[0..2]),
        (2, 2, &evens[2..]),
        (3, 3, &evens[3..]),
        (2, 4, &[]),
        (1, u64::MAX, &[]),
    ] {
        assert_eq!(
            ids_of(&list(&store, Some("even"), page(limit, offset)).await),
            want,
            "list_users(even, limit {limit}, offset {offset}) counts matching users only"
        );
    }
}
