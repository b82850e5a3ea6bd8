//! Storing, reading, replacing and removing sessions; returned data is a copy; metadata is kept
//! exactly as given.

use serde_json::json;

use super::support::{
    Must, NowWindow, SECOND, STEP, SUB_SECOND, check, concurrently, entries, expiring, get,
    get_live, ids, info, info_live, list_all, list_user, meta, perm, perms, put, session, sid,
    sorted, ttl, uid,
};
use crate::{
    DynPermissionStore, ErrorKind, Metadata, Timestamp,
    testkit::{PermissionStoreFixture, permission_store},
};

/// `initialize` and `close` are harmless when repeated; after `close` a call either works or fails
/// with `ProviderNotInitialized`.
pub async fn initialize_and_close_are_idempotent<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    store.initialize().await.must("a second initialize");
    put(&store, "s1", session("alice", &["read"])).await;
    store
        .initialize()
        .await
        .must("initialize on a store holding data");
    assert!(
        get(&store, "s1").await.is_some(),
        "initialize must not drop stored sessions"
    );
    store.close().await.must("close");
    store.close().await.must("a second close");
    // After close a store either refuses calls with ProviderNotInitialized or (when it needs no
    // resources) still answers; it never answers with another error. Initializing again works.
    match store.get_permissions(&sid("s1")).await {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ProviderNotInitialized,
            "a call after close failed with the wrong kind: {e}"
        ),
    }
    store.initialize().await.must("initialize after close");
    put(&store, "s2", session("alice", &["read"])).await;
    assert!(
        get(&store, "s2").await.is_some(),
        "a store initialized again after close must work"
    );
}

/// `provider_name` is non-empty, `supports_ttl` is the `native_ttl` capability, and
/// `get_session_info` reports the provider name.
pub async fn provider_name_and_capabilities_agree<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let name = store.provider_name().to_owned();
    assert!(!name.is_empty(), "provider_name must not be empty");
    assert_eq!(
        store.supports_ttl(),
        store.capabilities().native_ttl,
        "supports_ttl must be the native_ttl capability"
    );
    put(&store, "s1", session("alice", &["read"])).await;
    assert_eq!(
        info_live(&store, "s1").await.provider,
        name,
        "get_session_info().provider must be provider_name()"
    );
}

/// A stored session reads back with its user, permissions and metadata, `created_at == updated_at`
/// (the store's now when it reads the clock), and no expiry when stored without a ttl.
pub async fn store_then_get_returns_the_session<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    let md = meta(json!({ "ip": "10.0.0.1", "agent": "test" }));
    // A sub-second instant, so a store keeping less than microsecond precision is caught.
    tt.advance(SUB_SECOND).await;
    let now = NowWindow::open(&tt);
    put(
        &store,
        "s1",
        session("alice", &["read", "write"]).with_metadata(md.clone()),
    )
    .await;
    let data = get_live(&store, "s1").await;
    assert_eq!(data.user_id, uid("alice"), "get_permissions: user");
    assert_eq!(
        data.permissions,
        perms(&["read", "write"]),
        "get_permissions: permissions"
    );
    assert_eq!(data.metadata, md, "get_permissions: metadata");
    assert_eq!(
        data.created_at, data.updated_at,
        "a new session's created_at and updated_at must be equal"
    );
    now.assert_now(data.created_at, "created_at");
    let i = info_live(&store, "s1").await;
    assert_eq!(
        i.data, data,
        "get_session_info must carry the same record as get_permissions"
    );
    assert!(
        !i.has_ttl,
        "a session stored without ttl must have has_ttl == false"
    );
    assert_eq!(
        i.ttl_remaining, None,
        "a session stored without ttl must have no ttl_remaining"
    );
    assert_eq!(
        i.expires_at, None,
        "a session stored without ttl must have no expires_at"
    );
}

/// Permissions come back in stored order (not sorted, not reversed).
pub async fn permissions_come_back_in_stored_order<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let order = ["zeta", "alpha", "Alpha", "mid", "_", "0", "files:read"];
    put(&store, "s1", session("alice", &order)).await;
    let got = get_live(&store, "s1").await.permissions.to_strings();
    assert_eq!(
        got, order,
        "get_permissions must return permissions in stored order"
    );
    let updated = ["b", "c", "a"];
    assert!(
        store
            .update_permissions(&sid("s1"), perms(&updated), None)
            .await
            .must("update_permissions")
    );
    let got = get_live(&store, "s1").await.permissions.to_strings();
    assert_eq!(
        got, updated,
        "after update_permissions, permissions must come back in the new order"
    );
}

/// A session stored without ttl never expires.
pub async fn session_without_ttl_never_expires<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    tt.advance(SECOND).await;
    assert!(
        get(&store, "s1").await.is_some(),
        "a session without ttl must survive time passing"
    );
    assert!(
        !info_live(&store, "s1").await.has_ttl,
        "a session without ttl must keep has_ttl == false"
    );
}

/// `store_permissions` is an upsert that replaces the session whole (permissions, metadata, expiry)
/// and resets `created_at` and `updated_at`.
pub async fn store_replaces_the_whole_session_and_resets_created_at<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    put(
        &store,
        "s1",
        expiring("alice", &["read", "write"], 2).with_metadata(meta(json!({ "v": 1 }))),
    )
    .await;
    let first = get_live(&store, "s1").await;
    tt.advance(SECOND).await;
    put(&store, "s1", session("alice", &["admin"])).await;
    let second = get_live(&store, "s1").await;
    assert_eq!(
        second.permissions,
        perms(&["admin"]),
        "the upsert must replace the permissions, not merge them"
    );
    assert_eq!(
        second.metadata,
        Metadata::empty(),
        "the upsert must replace the metadata, not merge it"
    );
    assert!(
        second.created_at > first.created_at,
        "the upsert must reset created_at"
    );
    assert_eq!(
        second.created_at, second.updated_at,
        "after the upsert created_at and updated_at must be equal"
    );
    assert!(
        !s1_has(&store, "read").await,
        "a replaced permission must no longer check true"
    );
    assert!(
        !info_live(&store, "s1").await.has_ttl,
        "the upsert without ttl must remove the old expiry"
    );
    tt.advance(SECOND).await;
    assert!(
        get(&store, "s1").await.is_some(),
        "the old expiry must not apply to the replaced session"
    );
}

/// Whether session `s1` holds `p`.
async fn s1_has(store: &DynPermissionStore, p: &str) -> bool {
    check(store, "s1", p).await
}

/// Replacing a session of another user moves it to the new user's index.
pub async fn store_moves_a_replaced_session_to_the_new_users_index<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    put(&store, "s2", session("alice", &["read"])).await;
    put(&store, "s1", session("bob", &["write"])).await;
    assert_eq!(
        get_live(&store, "s1").await.user_id,
        uid("bob"),
        "the replaced session must belong to bob"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["s2"]),
        "alice's index must no longer list the moved session"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["s1"]),
        "bob's index must list the moved session"
    );
    assert_eq!(
        sorted(list_all(&store).await),
        ids(&["s1", "s2"]),
        "the global listing must hold each session once"
    );
    assert_eq!(
        store
            .invalidate_user_sessions(&uid("alice"))
            .await
            .must("invalidate_user_sessions(alice)"),
        1,
        "invalidating alice must remove only the session she still owns"
    );
    assert!(
        get(&store, "s1").await.is_some(),
        "invalidating alice must not remove bob's session"
    );
}

/// An id that was never stored reads as missing in every method.
pub async fn unknown_session_reads_as_missing<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let id = sid("never-stored");
    assert!(
        !store
            .check_permission(&id, &perm("read"))
            .await
            .must("check_permission"),
        "check_permission"
    );
    let c = store
        .check_permissions(&id, &perms(&["read", "write"]))
        .await
        .must("check_permissions");
    assert_eq!(
        c.entries(),
        entries(&[("read", false), ("write", false)]).as_slice(),
        "check_permissions"
    );
    assert_eq!(
        store.get_permissions(&id).await.must("get_permissions"),
        None,
        "get_permissions"
    );
    assert_eq!(
        store.get_session_info(&id).await.must("get_session_info"),
        None,
        "get_session_info"
    );
    assert!(
        !store
            .update_permissions(&id, perms(&["x"]), None)
            .await
            .must("update_permissions"),
        "update_permissions"
    );
    assert!(
        !store
            .extend_session_ttl(&id, ttl(60))
            .await
            .must("extend_session_ttl"),
        "extend_session_ttl"
    );
    assert!(
        !store
            .invalidate_session(&id)
            .await
            .must("invalidate_session"),
        "invalidate_session"
    );
    assert_eq!(
        list_all(&store).await,
        ids(&[]),
        "no call on an unknown id may create a session"
    );
}

/// `invalidate_session` removes a live session and its index entry, returns `true` once and `false`
/// after.
pub async fn invalidate_session_removes_the_session_and_its_index_entry<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    put(&store, "s2", session("alice", &["read"])).await;
    assert!(
        store
            .invalidate_session(&sid("s1"))
            .await
            .must("invalidate_session(s1)"),
        "first invalidate must return true"
    );
    assert!(
        !store
            .invalidate_session(&sid("s1"))
            .await
            .must("invalidate_session(s1) again"),
        "second invalidate must return false"
    );
    assert_eq!(
        get(&store, "s1").await,
        None,
        "an invalidated session must be gone"
    );
    assert!(
        !check(&store, "s1", "read").await,
        "an invalidated session must not grant anything"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["s2"]),
        "the invalidated session must leave its user's index"
    );
    assert_eq!(
        list_all(&store).await,
        ids(&["s2"]),
        "the invalidated session must leave the global listing"
    );
    assert!(
        get(&store, "s2").await.is_some(),
        "the other session must stay"
    );
}

/// `update_permissions` replaces the permissions and sets `updated_at`; `created_at`, user and
/// metadata stay.
pub async fn update_replaces_permissions_and_keeps_the_rest<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    let md = meta(json!({ "device": "phone" }));
    put(
        &store,
        "s1",
        session("alice", &["read"]).with_metadata(md.clone()),
    )
    .await;
    let before = get_live(&store, "s1").await;
    tt.advance(STEP).await;
    let now = NowWindow::open(&tt);
    assert!(
        store
            .update_permissions(&sid("s1"), perms(&["write", "admin"]), None)
            .await
            .must("update_permissions"),
        "update_permissions on a live session must return true"
    );
    let after = get_live(&store, "s1").await;
    assert_eq!(
        after.permissions,
        perms(&["write", "admin"]),
        "update must replace the permissions"
    );
    assert_eq!(after.user_id, before.user_id, "update must keep the user");
    assert_eq!(after.metadata, md, "update must keep the metadata");
    assert_eq!(
        after.created_at, before.created_at,
        "update must keep created_at"
    );
    assert!(
        after.updated_at > before.updated_at,
        "update must set updated_at"
    );
    now.assert_now(after.updated_at, "updated_at");
    assert!(
        !s1_has(&store, "read").await,
        "a removed permission must no longer check true"
    );
    assert!(
        s1_has(&store, "admin").await,
        "a new permission must check true"
    );
}

/// Returned records are copies: changing them changes nothing stored.
pub async fn returned_data_is_a_copy<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    put(
        &store,
        "s1",
        session("alice", &["read"]).with_metadata(meta(json!({ "k": [1, 2] }))),
    )
    .await;
    let original = get_live(&store, "s1").await;
    let mut data = original.clone();
    data.user_id = uid("mallory");
    data.permissions = perms(&["admin"]);
    data.metadata = meta(json!({ "k": "changed" }));
    data.created_at = Timestamp::UNIX_EPOCH;
    let mut i = info_live(&store, "s1").await;
    i.data.permissions = perms(&["root"]);
    i.has_ttl = true;
    i.ttl_remaining = Some(1);
    assert_eq!(
        get_live(&store, "s1").await,
        original,
        "changing returned data must not change the stored session"
    );
    let i = info_live(&store, "s1").await;
    assert_eq!(
        i.data, original,
        "changing a returned info must not change the stored session"
    );
    assert!(
        !i.has_ttl,
        "changing a returned info must not give the session a ttl"
    );
    assert!(
        !s1_has(&store, "admin").await,
        "changing returned data must not grant permissions"
    );
}

/// Metadata is stored and returned exactly as given: nested values, unicode, escapes, floats and
/// big integers.
pub async fn metadata_is_stored_exactly_as_given<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let value = json!({
        "ip": "192.168.1.1",
        "nested": { "list": [1, 2.5, null, true, false, "ü"], "deeper": { "a": { "b": { "c": [] } } } },
        "unicode": "żółć 日本語 🎉 e\u{301} \u{200b}",
        "escapes": "quote \" backslash \\ newline \n tab \t nul \u{0} slash /",
        "float": 1.5,
        "small": 0.1,
        "negative": -42,
        "zero": 0,
        "u64_max": u64::MAX,
        "i64_min": i64::MIN,
        "huge": 1e300,
        "empty_string": "",
        "empty_object": {},
        "empty_array": [],
        "key with spaces": 1,
        "ключ": "значение",
        "": "empty key",
    });
    let given = meta(value.clone());
    put(
        &store,
        "s1",
        session("alice", &["read"]).with_metadata(given.clone()),
    )
    .await;
    assert_eq!(
        given.to_value(),
        value,
        "storing must not change the caller's metadata"
    );
    assert_eq!(
        get_live(&store, "s1").await.metadata.to_value(),
        value,
        "get_permissions must return the metadata exactly"
    );
    assert_eq!(
        info_live(&store, "s1").await.data.metadata.to_value(),
        value,
        "get_session_info must return the metadata exactly"
    );
    put(&store, "s2", session("alice", &["read"])).await;
    assert!(
        get_live(&store, "s2").await.metadata.is_empty(),
        "empty metadata must come back empty"
    );
}

/// Session ids are compared exactly: ids differing only in case or in `-`/`_` are distinct sessions.
pub async fn session_ids_are_case_sensitive<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let variants = ["session", "Session", "SESSION", "a-b", "a_b"];
    for (i, id) in variants.iter().enumerate() {
        put(
            &store,
            id,
            session(&format!("user{i}"), &[&format!("p{i}")]),
        )
        .await;
    }
    for (i, id) in variants.iter().enumerate() {
        let data = get_live(&store, id).await;
        assert_eq!(
            data.user_id,
            uid(&format!("user{i}")),
            "session {id:?} must be distinct from its look-alikes"
        );
        assert_eq!(
            data.permissions,
            perms(&[&format!("p{i}")]),
            "session {id:?} must keep its own permissions"
        );
    }
    assert_eq!(
        list_all(&store).await.len(),
        variants.len(),
        "every look-alike id must be its own session"
    );
}

/// `invalidate_user_sessions` removes every session of the user, returns how many, and leaves other
/// users' sessions alone.
pub async fn invalidate_user_sessions_counts_and_leaves_others<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    for id in ["a1", "a2", "a3"] {
        put(&store, id, session("alice", &["read"])).await;
    }
    put(&store, "b1", session("bob", &["read"])).await;
    put(&store, "c1", session("alice2", &["read"])).await;
    let n = store
        .invalidate_user_sessions(&uid("alice"))
        .await
        .must("invalidate_user_sessions(alice)");
    assert_eq!(
        n, 3,
        "invalidate_user_sessions must return how many sessions it removed"
    );
    for id in ["a1", "a2", "a3"] {
        assert_eq!(
            get(&store, id).await,
            None,
            "{id} must be gone after invalidate_user_sessions"
        );
    }
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&[]),
        "alice's index must be empty"
    );
    assert_eq!(
        sorted(list_all(&store).await),
        ids(&["b1", "c1"]),
        "other users' sessions must stay"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["b1"]),
        "bob's index must be untouched"
    );
    let again = store
        .invalidate_user_sessions(&uid("alice"))
        .await
        .must("invalidate_user_sessions(alice) again");
    assert_eq!(
        again, 0,
        "a second invalidate_user_sessions must remove nothing"
    );
    let unknown = store
        .invalidate_user_sessions(&uid("nobody"))
        .await
        .must("invalidate_user_sessions(nobody)");
    assert_eq!(unknown, 0, "an unknown user has no sessions to remove");
}

/// 64 concurrent `store_permissions` calls on distinct ids all land, each listed once.
pub async fn concurrent_stores_all_land<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let results = concurrently(64, |i| {
        let store = store.clone();
        let (id, s) = (
            sid(&format!("s{i:02}")),
            session(&format!("user{}", i % 4), &["read"]),
        );
        async move { store.store_permissions(&id, s).await }
    })
    .await;
    for r in results {
        r.must("a concurrent store_permissions");
    }
    let expected: Vec<_> = (0..64).map(|i| sid(&format!("s{i:02}"))).collect();
    assert_eq!(
        sorted(list_all(&store).await),
        expected,
        "every concurrently stored session must be listed once"
    );
    for u in 0..4 {
        assert_eq!(
            list_user(&store, &format!("user{u}")).await.len(),
            16,
            "user{u} must have its 16 sessions"
        );
    }
    assert!(
        info(&store, "s00").await.is_some(),
        "a concurrently stored session must be readable"
    );
}
