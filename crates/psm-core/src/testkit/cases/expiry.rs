//! An expired session behaves exactly like a missing one in every method. Each case expires session
//! `gone` of alice (beside her live session `live`) and compares every answer about `gone` with the
//! answer about `never`, an id that was never stored.

use serde_json::json;

use super::support::{
    Must, SECOND, check, entries, expiring, get, ids, info, list_all, list_user, meta, page, perms,
    put, session, sid, sorted, ttl, uid,
};
use crate::{
    DynPermissionStore, LimitPolicy, SessionLimit,
    testkit::{PermissionStoreFixture, TimeTravel, permission_store},
};

/// A store where alice's `gone` (ttl 1 s) has just expired and her `live` (no ttl) has not.
async fn with_expired<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) -> (DynPermissionStore, TimeTravel) {
    let (store, tt) = permission_store(f).await;
    put(
        &store,
        "gone",
        expiring("alice", &["read", "write"], 1).with_metadata(meta(json!({ "k": 1 }))),
    )
    .await;
    put(&store, "live", session("alice", &["read"])).await;
    tt.advance(SECOND).await;
    (store, tt)
}

/// `check_permission` on an expired session is `false`, as for a missing one.
pub async fn expired_check_permission_is_false<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    assert!(
        !check(&store, "gone", "read").await,
        "check_permission on an expired session must be false"
    );
    assert!(
        !check(&store, "never", "read").await,
        "check_permission on a missing session must be false"
    );
    assert!(
        check(&store, "live", "read").await,
        "the live session must still grant read"
    );
}

/// `check_permissions` on an expired session answers all `false`, in the order asked.
pub async fn expired_check_permissions_is_all_false<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    let asked = perms(&["write", "read"]);
    let gone = store
        .check_permissions(&sid("gone"), &asked)
        .await
        .must("check_permissions(gone)");
    let never = store
        .check_permissions(&sid("never"), &asked)
        .await
        .must("check_permissions(never)");
    assert_eq!(
        gone.entries(),
        entries(&[("write", false), ("read", false)]).as_slice(),
        "expired: all false"
    );
    assert_eq!(
        gone, never,
        "check_permissions must answer the same for an expired and a missing session"
    );
}

/// `get_permissions` on an expired session is `None`.
pub async fn expired_get_permissions_is_none<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    assert_eq!(
        get(&store, "gone").await,
        None,
        "get_permissions on an expired session must be None"
    );
    assert_eq!(
        get(&store, "never").await,
        None,
        "get_permissions on a missing session must be None"
    );
}

/// `get_session_info` on an expired session is `None`.
pub async fn expired_get_session_info_is_none<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    assert_eq!(
        info(&store, "gone").await,
        None,
        "get_session_info on an expired session must be None"
    );
    assert_eq!(
        info(&store, "never").await,
        None,
        "get_session_info on a missing session must be None"
    );
}

/// `update_permissions` on an expired session returns `false` and revives nothing, with or without
/// a ttl.
pub async fn expired_update_returns_false_and_changes_nothing<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = with_expired(f).await;
    for (what, t) in [("without ttl", None), ("with ttl", Some(ttl(100)))] {
        for id in ["gone", "never"] {
            let r = store
                .update_permissions(&sid(id), perms(&["admin"]), t)
                .await
                .must("update_permissions");
            assert!(
                !r,
                "update_permissions {what} on {id} (expired or missing) must return false"
            );
            assert_eq!(
                get(&store, id).await,
                None,
                "update_permissions {what} must not revive or create {id}"
            );
        }
    }
    assert!(
        !check(&store, "gone", "admin").await,
        "a failed update must not grant anything"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["live"]),
        "a failed update must not list the session"
    );
}

/// `extend_session_ttl` on an expired session returns `false` and never revives it.
pub async fn expired_extend_returns_false_and_never_revives<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = with_expired(f).await;
    for id in ["gone", "never"] {
        let r = store
            .extend_session_ttl(&sid(id), ttl(100))
            .await
            .must("extend_session_ttl");
        assert!(
            !r,
            "extend_session_ttl on {id} (expired or missing) must return false"
        );
        assert_eq!(
            get(&store, id).await,
            None,
            "extend_session_ttl must never revive or create {id}"
        );
    }
    assert!(
        !check(&store, "gone", "read").await,
        "extend must not revive the expired session's permissions"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["live"]),
        "extend must not list the expired session"
    );
}

/// `invalidate_session` on an expired session returns `false`.
pub async fn expired_invalidate_returns_false<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    assert!(
        !store
            .invalidate_session(&sid("gone"))
            .await
            .must("invalidate_session(gone)"),
        "expired: false"
    );
    assert!(
        !store
            .invalidate_session(&sid("never"))
            .await
            .must("invalidate_session(never)"),
        "missing: false"
    );
    assert!(
        get(&store, "live").await.is_some(),
        "invalidating others must leave the live session"
    );
}

/// Expired sessions are never listed, per user or globally, on any page.
pub async fn expired_sessions_are_never_listed<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = with_expired(f).await;
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["live"]),
        "list_sessions(alice) must skip the expired one"
    );
    assert_eq!(
        list_all(&store).await,
        ids(&["live"]),
        "list_sessions(None) must skip the expired one"
    );
    let first = store
        .list_sessions(Some(&uid("alice")), page(1, 0))
        .await
        .must("list_sessions(alice, 1, 0)");
    assert_eq!(
        first,
        ids(&["live"]),
        "a page of one must hold the live session, not the expired one"
    );
    let second = store
        .list_sessions(Some(&uid("alice")), page(1, 1))
        .await
        .must("list_sessions(alice, 1, 1)");
    assert_eq!(second, ids(&[]), "the second page of one must be empty");
    let global = store
        .list_sessions(None, page(1, 1))
        .await
        .must("list_sessions(None, 1, 1)");
    assert_eq!(
        global,
        ids(&[]),
        "the global second page of one must be empty"
    );
}

/// `create_session` does not count expired sessions towards the limit and does not report them as
/// evicted.
pub async fn expired_sessions_do_not_count_towards_the_limit<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = with_expired(f).await;
    let reject = SessionLimit::new(2, LimitPolicy::Reject).must("limit");
    let evicted = store
        .create_session(&sid("new1"), session("alice", &["read"]), reject)
        .await
        .must("create_session(new1)");
    assert_eq!(
        evicted,
        ids(&[]),
        "with one live session and limit 2 nothing is evicted"
    );
    let evict = SessionLimit::new(2, LimitPolicy::EvictOldest).must("limit");
    let evicted = store
        .create_session(&sid("new2"), session("alice", &["read"]), evict)
        .await
        .must("create_session(new2)");
    assert_eq!(
        evicted,
        ids(&["live"]),
        "eviction must pick the oldest live session, never an expired one"
    );
    assert_eq!(
        sorted(list_user(&store, "alice").await),
        ids(&["new1", "new2"]),
        "alice keeps exactly the limit"
    );
}

/// `invalidate_user_sessions` counts only live sessions.
pub async fn expired_sessions_are_not_counted_by_invalidate_user_sessions<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = with_expired(f).await;
    let n = store
        .invalidate_user_sessions(&uid("alice"))
        .await
        .must("invalidate_user_sessions(alice)");
    assert_eq!(
        n, 1,
        "invalidate_user_sessions must count only the live session"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&[]),
        "alice must have no sessions left"
    );
    assert_eq!(
        get(&store, "gone").await,
        None,
        "the expired session must stay gone"
    );
}
