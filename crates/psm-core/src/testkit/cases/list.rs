//! Listing: per-user order by `created_at` then id, the global listing, stable paging, limit and
//! offset, and user ids that look alike.

use std::collections::BTreeSet;

use super::support::{Must, STEP, ids, list_all, list_user, page, put, session, sid, sorted, uid};
use crate::{
    DynPermissionStore, SessionId, UserId,
    testkit::{PermissionStoreFixture, permission_store},
};

/// Every page of `limit` from the start until a short page, concatenated; each page is checked to
/// be full except the last.
async fn paged(store: &DynPermissionStore, user: Option<&UserId>, limit: u64) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let p = store
            .list_sessions(user, page(limit, offset))
            .await
            .must("list_sessions page");
        assert!(
            p.len() as u64 <= limit,
            "a page must hold at most `limit` ids"
        );
        let full = p.len() as u64 == limit;
        out.extend(p);
        if !full {
            return out;
        }
        offset += limit;
    }
}

/// A user's sessions are listed by `created_at`, then by id; an upsert resets `created_at` and so
/// moves the session to the end.
pub async fn user_sessions_are_listed_by_created_at_then_id<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    for id in ["c", "a", "b"] {
        put(&store, id, session("alice", &["read"])).await;
        tt.advance(STEP).await;
    }
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["c", "a", "b"]),
        "list_sessions(alice) must follow created_at"
    );
    put(&store, "c", session("alice", &["write"])).await;
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["a", "b", "c"]),
        "an upsert must move the session to the end"
    );
    assert!(
        store
            .update_permissions(&sid("a"), super::support::perms(&["x"]), None)
            .await
            .must("update_permissions(a)"),
        "update_permissions on a live session"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["a", "b", "c"]),
        "an update must not change the order"
    );
    if tt.is_exact() {
        for id in ["z", "x", "y"] {
            put(&store, id, session("bob", &["read"])).await;
        }
        assert_eq!(
            list_user(&store, "bob").await,
            ids(&["x", "y", "z"]),
            "equal created_at must be ordered by id"
        );
    }
}

/// The global listing holds every live session exactly once and keeps its order between calls.
pub async fn global_listing_holds_every_session_once_in_a_stable_order<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    let mut expected = BTreeSet::new();
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        for j in 0..4 {
            let id = format!("{user}-{j}");
            put(&store, &id, session(user, &[&format!("p{i}")])).await;
            expected.insert(sid(&id));
        }
    }
    let first = list_all(&store).await;
    let unique: BTreeSet<_> = first.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        first.len(),
        "list_sessions(None) must not repeat a session"
    );
    assert_eq!(
        unique, expected,
        "list_sessions(None) must hold every live session"
    );
    assert_eq!(
        list_all(&store).await,
        first,
        "list_sessions(None) must keep its order between calls"
    );
}

/// Paging with no concurrent writes yields every live session exactly once, per user and globally,
/// in the same order as one big page.
pub async fn paging_yields_every_session_exactly_once<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    for i in 0..23 {
        put(&store, &format!("a{i:02}"), session("alice", &["read"])).await;
    }
    for i in 0..11 {
        put(&store, &format!("b{i:02}"), session("bob", &["read"])).await;
    }
    let alice = uid("alice");
    let full = list_user(&store, "alice").await;
    assert_eq!(full.len(), 23, "alice must have 23 sessions listed");
    for limit in [1, 4, 23, 24] {
        assert_eq!(
            paged(&store, Some(&alice), limit).await,
            full,
            "pages of {limit} must concatenate to the listing"
        );
    }
    let everything = list_all(&store).await;
    assert_eq!(everything.len(), 34, "34 sessions must be listed globally");
    for limit in [1, 5, 34, 100] {
        let got = paged(&store, None, limit).await;
        assert_eq!(
            got, everything,
            "global pages of {limit} must concatenate to the listing"
        );
    }
    let unique: BTreeSet<_> = everything.iter().collect();
    assert_eq!(
        unique.len(),
        34,
        "the global listing must not repeat a session"
    );
}

/// `limit` caps a page and `offset` skips, including offsets past the end (an empty page, never an
/// error).
pub async fn limit_and_offset_are_respected<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    for id in ["s0", "s1", "s2", "s3", "s4"] {
        put(&store, id, session("alice", &["read"])).await;
        tt.advance(STEP).await;
    }
    let alice = uid("alice");
    let list = |limit, offset| {
        let (store, alice) = (store.clone(), alice.clone());
        async move {
            store
                .list_sessions(Some(&alice), page(limit, offset))
                .await
                .must("list_sessions(alice)")
        }
    };
    assert_eq!(list(1, 0).await, ids(&["s0"]), "limit 1, offset 0");
    assert_eq!(list(2, 1).await, ids(&["s1", "s2"]), "limit 2, offset 1");
    assert_eq!(list(10, 3).await, ids(&["s3", "s4"]), "limit past the end");
    assert_eq!(list(10, 5).await, ids(&[]), "offset at the end");
    assert_eq!(list(10, 1_000).await, ids(&[]), "offset past the end");
    assert_eq!(list(10, u64::MAX).await, ids(&[]), "the largest offset");
    let global = store
        .list_sessions(None, page(10, u64::MAX))
        .await
        .must("list_sessions(None, 10, max)");
    assert_eq!(
        global,
        ids(&[]),
        "the largest global offset must give an empty page"
    );
    let two = store
        .list_sessions(None, page(2, 0))
        .await
        .must("list_sessions(None, 2, 0)");
    assert_eq!(two.len(), 2, "a global page of 2 must hold 2 ids");
}

/// A user without sessions lists nothing.
pub async fn unknown_user_lists_nothing<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    assert_eq!(
        list_user(&store, "nobody").await,
        ids(&[]),
        "an unknown user must list nothing"
    );
    assert_eq!(
        list_user(&store, "alic").await,
        ids(&[]),
        "a prefix of a user id is another user"
    );
    assert_eq!(
        list_user(&store, "Alice").await,
        ids(&[]),
        "user ids are case-sensitive"
    );
}

/// User ids that look alike after escaping, hashing or pattern matching (`:`, `%`, `/`, `*`, `{}`,
/// unicode forms, 255 bytes) each have their own index.
pub async fn look_alike_user_ids_have_separate_indexes<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let long = format!("{}u", "ü".repeat(127));
    let users = [
        "a",
        "A",
        "a:b",
        "a%3Ab",
        "a_b",
        "a/b",
        "a\\b",
        "../a",
        "a*",
        "a?",
        "a[b]",
        "{a}",
        "a}b",
        "user 1",
        "user%201",
        "caf\u{e9}",
        "cafe\u{301}",
        "'; DROP TABLE sessions; --",
        long.as_str(),
    ];
    for (i, user) in users.iter().enumerate() {
        put(&store, &format!("s{i:02}"), session(user, &["read"])).await;
    }
    for (i, user) in users.iter().enumerate() {
        let want = ids(&[&format!("s{i:02}")]);
        assert_eq!(
            list_user(&store, user).await,
            want,
            "list_sessions({user:?}) must list only its own session"
        );
        assert_eq!(
            super::support::get_live(&store, &format!("s{i:02}"))
                .await
                .user_id,
            uid(user),
            "user {user:?}"
        );
    }
    let n = store
        .invalidate_user_sessions(&uid("a"))
        .await
        .must("invalidate_user_sessions(a)");
    assert_eq!(
        n, 1,
        "invalidating user \"a\" must remove only its own session"
    );
    let n = store
        .invalidate_user_sessions(&uid("a*"))
        .await
        .must("invalidate_user_sessions(a*)");
    assert_eq!(
        n, 1,
        "invalidating user \"a*\" must not treat `*` as a pattern"
    );
    assert_eq!(
        sorted(list_all(&store).await).len(),
        users.len() - 2,
        "every other user's session must stay"
    );
}
