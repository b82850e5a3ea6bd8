//! Expiry arithmetic: the exact boundary, `ttl_remaining` rounding, and how update and extend move
//! the expiry.

use std::time::Duration;

use super::support::{
    Must, SECOND, STEP, expiring, get, get_live, info, info_live, perms, put, session, sid, ttl,
};
use crate::testkit::{PermissionStoreFixture, permission_store};

/// A fresh ttl of 100 reports `ttl_remaining == 100`; remaining time is whole seconds rounded up.
pub async fn ttl_remaining_is_whole_seconds_rounded_up<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 100)).await;
    let i = info_live(&store, "s1").await;
    assert!(
        i.has_ttl,
        "a session stored with a ttl must have has_ttl == true"
    );
    assert_eq!(
        i.ttl_remaining,
        Some(100),
        "a fresh ttl of 100 must report ttl_remaining 100"
    );
    if tt.is_exact() {
        assert_eq!(
            i.expires_at,
            Some(i.data.created_at.plus_secs(100)),
            "expires_at must be created_at + ttl"
        );
    }
    tt.advance(Duration::from_millis(500)).await;
    assert_eq!(
        info_live(&store, "s1").await.ttl_remaining,
        Some(100),
        "99.5 s left must round up to 100"
    );
    tt.advance(Duration::from_millis(500)).await;
    assert_eq!(
        info_live(&store, "s1").await.ttl_remaining,
        Some(99),
        "99 s (or a little less) left must report 99"
    );
}

/// A session is expired exactly when `now >= expires_at`: live a moment before, gone at the instant.
pub async fn session_expires_when_its_ttl_has_passed<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 2)).await;
    assert!(
        super::support::check(&store, "s1", "read").await,
        "a session must be live right after it was stored"
    );
    if tt.is_exact() {
        tt.advance(Duration::from_millis(1999)).await;
        assert!(
            get(&store, "s1").await.is_some(),
            "a session must be live 1 ms before its expiry"
        );
        assert_eq!(
            info_live(&store, "s1").await.ttl_remaining,
            Some(1),
            "1 ms left must round up to 1"
        );
        tt.advance(Duration::from_millis(1)).await;
    } else {
        tt.advance(2 * SECOND).await;
    }
    assert_eq!(
        get(&store, "s1").await,
        None,
        "a session must be expired once now >= expires_at"
    );
    assert!(
        !super::support::check(&store, "s1", "read").await,
        "an expired session must not grant anything"
    );
}

/// `update_permissions` without ttl keeps the current expiry (a session never becomes immortal by an
/// update) and keeps "no expiry" for a session without one.
pub async fn update_without_ttl_keeps_the_expiry<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 2)).await;
    put(&store, "forever", session("alice", &["read"])).await;
    let expires_at = info_live(&store, "s1").await.expires_at;
    tt.advance(SECOND).await;
    assert!(
        store
            .update_permissions(&sid("s1"), perms(&["write"]), None)
            .await
            .must("update_permissions(s1)")
    );
    assert!(
        store
            .update_permissions(&sid("forever"), perms(&["write"]), None)
            .await
            .must("update_permissions(forever)")
    );
    let i = info_live(&store, "s1").await;
    assert!(
        i.has_ttl,
        "an update without ttl must not make the session immortal"
    );
    assert_eq!(
        i.ttl_remaining,
        Some(1),
        "an update without ttl must keep the old expiry (1 s left)"
    );
    if tt.is_exact() {
        assert_eq!(
            i.expires_at, expires_at,
            "an update without ttl must keep expires_at"
        );
    }
    let forever = info_live(&store, "forever").await;
    assert!(
        !forever.has_ttl && forever.ttl_remaining.is_none(),
        "an update without ttl must not give an expiry"
    );
    tt.advance(SECOND).await;
    assert_eq!(
        get(&store, "s1").await,
        None,
        "the session must expire at its original expiry"
    );
    assert!(
        get(&store, "forever").await.is_some(),
        "the session without expiry must stay"
    );
}

/// `update_permissions` with a ttl sets the expiry to now + ttl, also for a session that had none.
pub async fn update_with_ttl_sets_now_plus_ttl<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 1)).await;
    put(&store, "forever", session("alice", &["read"])).await;
    tt.advance(Duration::from_millis(500)).await;
    let now = tt.now();
    assert!(
        store
            .update_permissions(&sid("s1"), perms(&["write"]), Some(ttl(2)))
            .await
            .must("update_permissions(s1)")
    );
    assert!(
        store
            .update_permissions(&sid("forever"), perms(&["write"]), Some(ttl(2)))
            .await
            .must("update(forever)")
    );
    let i = info_live(&store, "s1").await;
    assert_eq!(
        i.ttl_remaining,
        Some(2),
        "an update with ttl 2 must leave 2 s"
    );
    if tt.is_exact() {
        assert_eq!(
            i.expires_at,
            Some(now.plus_secs(2)),
            "an update with a ttl must set expires_at to now + ttl"
        );
    }
    let forever = info_live(&store, "forever").await;
    assert_eq!(
        forever.ttl_remaining,
        Some(2),
        "an update with a ttl must give a session without expiry one"
    );
    tt.advance(SECOND).await;
    assert!(
        get(&store, "s1").await.is_some(),
        "the session must outlive its old expiry after the update"
    );
    assert_eq!(
        info_live(&store, "s1").await.ttl_remaining,
        Some(1),
        "1 s must be left of the new ttl"
    );
    tt.advance(SECOND).await;
    assert_eq!(
        get(&store, "s1").await,
        None,
        "the session must expire at now + ttl of the update"
    );
    assert_eq!(
        get(&store, "forever").await,
        None,
        "the session given an expiry by the update must expire"
    );
}

/// `extend_session_ttl` sets the expiry to now + ttl (it renews, so it may also shorten) and sets
/// `updated_at`.
pub async fn extend_sets_the_expiry_to_now_plus_ttl<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 1)).await;
    put(&store, "long", expiring("alice", &["read"], 100)).await;
    let before = get_live(&store, "s1").await;
    tt.advance(Duration::from_millis(500)).await;
    let now = tt.now();
    assert!(
        store
            .extend_session_ttl(&sid("s1"), ttl(2))
            .await
            .must("extend_session_ttl(s1)"),
        "extend on a live session"
    );
    let i = info_live(&store, "s1").await;
    assert_eq!(i.ttl_remaining, Some(2), "extend by 2 must leave 2 s");
    assert!(
        i.data.updated_at > before.updated_at,
        "extend must set updated_at"
    );
    assert_eq!(
        i.data.created_at, before.created_at,
        "extend must keep created_at"
    );
    assert_eq!(
        i.data.permissions, before.permissions,
        "extend must keep the permissions"
    );
    if tt.is_exact() {
        assert_eq!(
            i.expires_at,
            Some(now.plus_secs(2)),
            "extend must set expires_at to now + ttl"
        );
        assert_eq!(i.data.updated_at, now, "extend must set updated_at to now");
    }
    assert!(
        store
            .extend_session_ttl(&sid("long"), ttl(1))
            .await
            .must("extend_session_ttl(long)")
    );
    assert_eq!(
        info_live(&store, "long").await.ttl_remaining,
        Some(1),
        "extend renews to now + ttl, even when shorter"
    );
    tt.advance(SECOND).await;
    assert!(
        get(&store, "s1").await.is_some(),
        "the extended session must outlive its old expiry"
    );
    assert_eq!(
        get(&store, "long").await,
        None,
        "the shortened session must expire at its new expiry"
    );
    tt.advance(SECOND).await;
    assert_eq!(
        get(&store, "s1").await,
        None,
        "the extended session must expire at now + ttl of the extend"
    );
}

/// `extend_session_ttl` on a session without expiry gives it one.
pub async fn extend_gives_an_expiry_to_a_session_without_one<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    tt.advance(STEP).await;
    assert!(
        store
            .extend_session_ttl(&sid("s1"), ttl(1))
            .await
            .must("extend_session_ttl"),
        "extend on a live session"
    );
    let i = info_live(&store, "s1").await;
    assert!(i.has_ttl, "extend must give the session an expiry");
    assert_eq!(i.ttl_remaining, Some(1), "extend by 1 must leave 1 s");
    tt.advance(SECOND).await;
    assert_eq!(
        info(&store, "s1").await,
        None,
        "the session must expire after the extended ttl"
    );
}
