//! `cleanup_expired_sessions`: exact counts, no stale index entries, live sessions untouched.
//!
//! These cases never read an expired session before the cleanup, so a store with lazy expiry on
//! read still has every expired session left for the cleanup to count.

use super::support::{
    Must, SECOND, expiring, get, get_live, ids, info_live, list_all, list_user, put, session, sid,
    sorted, uid,
};
use crate::{
    LimitPolicy, SessionLimit,
    testkit::{PermissionStoreFixture, permission_store},
};

/// With nothing expired, cleanup removes nothing and returns 0.
pub async fn cleanup_with_nothing_expired_returns_zero<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    assert_eq!(
        store
            .cleanup_expired_sessions()
            .await
            .must("cleanup on an empty store"),
        0,
        "empty store: 0"
    );
    put(&store, "s1", session("alice", &["read"])).await;
    put(&store, "s2", expiring("alice", &["read"], 100)).await;
    assert_eq!(
        store.cleanup_expired_sessions().await.must("cleanup"),
        0,
        "nothing expired: cleanup must return 0"
    );
    assert_eq!(
        sorted(list_all(&store).await),
        ids(&["s1", "s2"]),
        "cleanup must not remove live sessions"
    );
}

/// Cleanup removes every expired session, returns how many, removes nothing else, and a second
/// cleanup returns 0.
pub async fn cleanup_counts_the_expired_sessions_it_removes<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    put(&store, "x1", expiring("alice", &["read"], 1)).await;
    put(&store, "x2", expiring("alice", &["read"], 1)).await;
    put(&store, "x3", expiring("bob", &["read"], 1)).await;
    put(&store, "long", expiring("alice", &["read"], 100)).await;
    put(&store, "forever", session("bob", &["read"])).await;
    let long_before = get_live(&store, "long").await;
    let forever_before = get_live(&store, "forever").await;
    tt.advance(SECOND).await;
    let n = store
        .cleanup_expired_sessions()
        .await
        .must("cleanup_expired_sessions");
    assert_eq!(
        n, 3,
        "cleanup must return the number of expired sessions it removed"
    );
    assert_eq!(
        store
            .cleanup_expired_sessions()
            .await
            .must("second cleanup"),
        0,
        "a second cleanup must return 0"
    );
    assert_eq!(
        get_live(&store, "long").await,
        long_before,
        "cleanup must not change a live session"
    );
    assert_eq!(
        get_live(&store, "forever").await,
        forever_before,
        "cleanup must not change a session without ttl"
    );
    assert_eq!(
        info_live(&store, "long").await.ttl_remaining,
        Some(99),
        "cleanup must not change a live expiry"
    );
    assert_eq!(
        sorted(list_all(&store).await),
        ids(&["forever", "long"]),
        "only live sessions are listed"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["long"]),
        "alice's index must hold only her live session"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["forever"]),
        "bob's index must hold only his live session"
    );
}

/// After cleanup no index entry points nowhere: pages are full of live sessions, limits count only
/// live ones, and a reused id belongs only to its new user.
pub async fn cleanup_leaves_no_stale_index_entries<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "x1", expiring("alice", &["read"], 1)).await;
    put(&store, "x2", expiring("alice", &["read"], 1)).await;
    put(&store, "keep", session("alice", &["read"])).await;
    tt.advance(SECOND).await;
    assert_eq!(
        store
            .cleanup_expired_sessions()
            .await
            .must("cleanup_expired_sessions"),
        2,
        "two sessions expired"
    );
    let first = store
        .list_sessions(Some(&uid("alice")), super::support::page(1, 0))
        .await
        .must("list(alice, 1, 0)");
    assert_eq!(
        first,
        ids(&["keep"]),
        "the first page of one must be the live session"
    );
    let global = store
        .list_sessions(None, super::support::page(1, 0))
        .await
        .must("list(None, 1, 0)");
    assert_eq!(
        global,
        ids(&["keep"]),
        "the first global page of one must be the live session"
    );
    let l = SessionLimit::new(2, LimitPolicy::Reject).must("limit");
    store
        .create_session(&sid("n1"), session("alice", &["read"]), l)
        .await
        .must("create_session after cleanup");
    put(&store, "x1", session("bob", &["read"])).await;
    assert_eq!(
        sorted(list_user(&store, "alice").await),
        ids(&["keep", "n1"]),
        "alice must not list the reused id"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["x1"]),
        "bob must list the reused id"
    );
}

/// An expired id reused for another user (without a cleanup in between) belongs only to the new
/// user, and a later cleanup finds nothing expired to count.
pub async fn reused_expired_id_belongs_only_to_its_new_user<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 1)).await;
    tt.advance(SECOND).await;
    put(&store, "s1", session("bob", &["write"])).await;
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&[]),
        "alice must not list the id now owned by bob"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["s1"]),
        "bob must list his session"
    );
    let n = store
        .invalidate_user_sessions(&uid("alice"))
        .await
        .must("invalidate_user_sessions(alice)");
    assert_eq!(n, 0, "alice has no live session left");
    assert!(
        get(&store, "s1").await.is_some(),
        "invalidating alice must not remove bob's session"
    );
    assert_eq!(
        store.cleanup_expired_sessions().await.must("cleanup"),
        0,
        "the replaced session is not expired"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["s1"]),
        "cleanup must keep bob's session indexed"
    );
}
