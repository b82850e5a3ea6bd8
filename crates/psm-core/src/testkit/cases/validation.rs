//! Bad input never reaches a store: every bad value of RULES.md's table fails at the type boundary
//! with the right kind, so no store method can be called with it, and the store's state is the same
//! afterwards. The longest and largest valid values do reach the store and round-trip exactly.
//!
//! Each case stores two sessions and snapshots the store. Then, for every method taking an
//! argument of the value's type, it builds each bad value the way that method's caller would and
//! calls the method with it only if the value was accepted (which fails the case). Finally it
//! compares snapshots.

use std::time::Duration;

use serde_json::{Value, json};

use super::support::{
    Must, Snapshot, all, entries, expiring, get_live, info_live, meta, must_fail, perm, perms, put,
    session, sid, snapshot, ttl, uid,
};
use crate::{
    DynPermissionStore, ErrorKind, LimitPolicy, MAX_METADATA_BYTES, MAX_TTL_SECS, Metadata,
    NewSession, Page, Permission, PermissionList, PermissionRef, SessionId, SessionIdRef,
    SessionLimit, Ttl, UserId,
    testkit::{PermissionStoreFixture, permission_store},
};

/// Ids and users the snapshots probe.
const PROBE_IDS: &[&str] = &["s1", "s2", "x"];
/// Users the snapshots probe.
const PROBE_USERS: &[&str] = &["alice", "bob", "x"];

/// The methods taking a session id.
const ID_METHODS: [&str; 9] = [
    "store_permissions",
    "create_session",
    "check_permission",
    "check_permissions",
    "get_permissions",
    "invalidate_session",
    "update_permissions",
    "extend_session_ttl",
    "get_session_info",
];
/// The methods taking a user id (inside `NewSession` or directly).
const USER_METHODS: [&str; 4] = [
    "store_permissions",
    "create_session",
    "list_sessions",
    "invalidate_user_sessions",
];
/// The methods taking a permission list.
const LIST_METHODS: [&str; 4] = [
    "store_permissions",
    "create_session",
    "check_permissions",
    "update_permissions",
];
/// The methods taking a ttl.
const TTL_METHODS: [&str; 4] = [
    "store_permissions",
    "create_session",
    "update_permissions",
    "extend_session_ttl",
];
/// The methods taking metadata (inside `NewSession`).
const METADATA_METHODS: [&str; 2] = ["store_permissions", "create_session"];

/// A store holding two sessions, and its snapshot.
async fn seeded<F: PermissionStoreFixture + ?Sized>(f: &F) -> (DynPermissionStore, Snapshot) {
    let (store, _) = permission_store(f).await;
    let md = meta(json!({ "k": 1 }));
    put(
        &store,
        "s1",
        session("alice", &["read", "write"]).with_metadata(md),
    )
    .await;
    put(&store, "s2", expiring("bob", &["read"], 3600)).await;
    let before = snapshot(&store, PROBE_IDS, PROBE_USERS).await;
    (store, before)
}

/// Asserts the store shows exactly `before`.
async fn assert_unchanged(store: &DynPermissionStore, before: &Snapshot, what: &str) {
    let after = snapshot(store, PROBE_IDS, PROBE_USERS).await;
    assert_eq!(
        &after, before,
        "rejecting {what} must leave the store unchanged"
    );
}

/// Fails the case: a bad value was accepted and has just been handed to a store method.
#[track_caller]
fn accepted(what: &str, value: &str) -> ! {
    panic!("{what} {value:?} was accepted; it must be rejected before any store call")
}

/// Calls `method` with `id` as its session id (reached only when a bad id was accepted).
async fn call_with_id(store: &DynPermissionStore, method: &str, id: &SessionIdRef) {
    let s = || session("x", &["read"]);
    let _ = match method {
        "store_permissions" => store.store_permissions(id, s()).await,
        "create_session" => store
            .create_session(id, s(), SessionLimit::unlimited())
            .await
            .map(drop),
        "check_permission" => store.check_permission(id, &perm("read")).await.map(drop),
        "check_permissions" => store
            .check_permissions(id, &perms(&["read"]))
            .await
            .map(drop),
        "get_permissions" => store.get_permissions(id).await.map(drop),
        "invalidate_session" => store.invalidate_session(id).await.map(drop),
        "update_permissions" => store
            .update_permissions(id, perms(&["x"]), None)
            .await
            .map(drop),
        "extend_session_ttl" => store.extend_session_ttl(id, ttl(60)).await.map(drop),
        "get_session_info" => store.get_session_info(id).await.map(drop),
        other => panic!("the case names an unknown method {other}"),
    };
}

/// Calls `method` with `user` as its user id (reached only when a bad user id was accepted).
async fn call_with_user(store: &DynPermissionStore, method: &str, user: UserId) {
    let s = NewSession::new(user.clone(), perms(&["read"]));
    let _ = match method {
        "store_permissions" => store.store_permissions(&sid("x"), s).await,
        "create_session" => store
            .create_session(&sid("x"), s, SessionLimit::unlimited())
            .await
            .map(drop),
        "list_sessions" => store.list_sessions(Some(&user), all()).await.map(drop),
        "invalidate_user_sessions" => store.invalidate_user_sessions(&user).await.map(drop),
        other => panic!("the case names an unknown method {other}"),
    };
}

/// Calls `method` with `list` as its permissions (reached only when a bad list was accepted).
async fn call_with_list(store: &DynPermissionStore, method: &str, list: PermissionList) {
    let s = NewSession::new(uid("alice"), list.clone());
    let _ = match method {
        "store_permissions" => store.store_permissions(&sid("s1"), s).await,
        "create_session" => store
            .create_session(&sid("x"), s, SessionLimit::unlimited())
            .await
            .map(drop),
        "check_permissions" => store.check_permissions(&sid("s1"), &list).await.map(drop),
        "update_permissions" => store
            .update_permissions(&sid("s1"), list, None)
            .await
            .map(drop),
        other => panic!("the case names an unknown method {other}"),
    };
}

/// Calls `method` with `t` as its ttl (reached only when a bad ttl was accepted).
async fn call_with_ttl(store: &DynPermissionStore, method: &str, t: Ttl) {
    let s = session("alice", &["read"]).with_ttl(Some(t));
    let _ = match method {
        "store_permissions" => store.store_permissions(&sid("s1"), s).await,
        "create_session" => store
            .create_session(&sid("x"), s, SessionLimit::unlimited())
            .await
            .map(drop),
        "update_permissions" => store
            .update_permissions(&sid("s1"), perms(&["x"]), Some(t))
            .await
            .map(drop),
        "extend_session_ttl" => store.extend_session_ttl(&sid("s1"), t).await.map(drop),
        other => panic!("the case names an unknown method {other}"),
    };
}

/// Calls `method` with `md` as its metadata (reached only when bad metadata was accepted).
async fn call_with_metadata(store: &DynPermissionStore, method: &str, md: Metadata) {
    let s = session("alice", &["read"]).with_metadata(md);
    let _ = match method {
        "store_permissions" => store.store_permissions(&sid("s1"), s).await,
        "create_session" => store
            .create_session(&sid("x"), s, SessionLimit::unlimited())
            .await
            .map(drop),
        other => panic!("the case names an unknown method {other}"),
    };
}

/// Bad session ids (empty, too long, other characters) fail with `InvalidSessionId` for every
/// method taking an id, and the error never echoes a long id.
pub async fn bad_session_ids_are_rejected_and_change_nothing<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let long = "x".repeat(256);
    let bad = [
        "",
        " ",
        "a b",
        "a/b",
        "../s1",
        "s1\0",
        "s1\n",
        "\u{e9}",
        "a.b",
        "a:b",
        "a*",
        "s1%00",
        long.as_str(),
    ];
    for value in bad {
        for method in ID_METHODS {
            match SessionIdRef::parse(value) {
                Ok(id) => {
                    call_with_id(&store, method, id).await;
                    accepted(&format!("session id for {method}"), value);
                }
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::InvalidSessionId,
                    "session id {value:?} for {method}"
                ),
            }
        }
        must_fail(
            SessionId::try_from(value.to_owned()),
            ErrorKind::InvalidSessionId,
            &format!("SessionId::try_from({value:?})"),
        );
        let e = must_fail(
            value.parse::<SessionId>(),
            ErrorKind::InvalidSessionId,
            &format!("{value:?}.parse::<SessionId>()"),
        );
        if value.len() > 8 {
            assert!(
                !e.to_string().contains(value),
                "the error must not echo a whole session id"
            );
        }
    }
    assert_unchanged(&store, &before, "bad session ids").await;
}

/// Bad user ids (empty, too long, control characters) fail with `InvalidUserId` for every method
/// taking a user id.
pub async fn bad_user_ids_are_rejected_and_change_nothing<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let long = "u".repeat(256);
    let long_multibyte = "\u{fc}".repeat(128);
    let bad = [
        "",
        "a\0b",
        "alice\n",
        "\t",
        "\u{1b}[31m",
        "a\u{7f}",
        "a\u{85}b",
        long.as_str(),
        long_multibyte.as_str(),
    ];
    for value in bad {
        for method in USER_METHODS {
            match UserId::parse(value) {
                Ok(user) => {
                    call_with_user(&store, method, user).await;
                    accepted(&format!("user id for {method}"), value);
                }
                Err(e) => {
                    assert_eq!(
                        e.kind(),
                        ErrorKind::InvalidUserId,
                        "user id {value:?} for {method}"
                    )
                }
            }
        }
        must_fail(
            UserId::try_from(value.to_owned()),
            ErrorKind::InvalidUserId,
            &format!("UserId::try_from({value:?})"),
        );
    }
    assert_unchanged(&store, &before, "bad user ids").await;
}

/// Bad permissions (empty, too long, whitespace, control characters) fail with `InvalidPermission`,
/// alone for `check_permission` and inside a list (reported with their index) for the others.
pub async fn bad_permissions_are_rejected_and_change_nothing<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let long = "p".repeat(256);
    let bad = [
        "",
        " ",
        "read ",
        " read",
        "a b",
        "a\tb",
        "a\nb",
        "a\0b",
        "a\u{7f}",
        "a\u{a0}b",
        "a\u{3000}b",
        long.as_str(),
    ];
    for value in bad {
        match PermissionRef::parse(value) {
            Ok(p) => {
                let _ = store.check_permission(&sid("s1"), p).await;
                accepted("permission for check_permission", value);
            }
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::InvalidPermission,
                "permission {value:?}"
            ),
        }
        must_fail(
            Permission::parse(value),
            ErrorKind::InvalidPermission,
            &format!("Permission::parse({value:?})"),
        );
        for method in LIST_METHODS {
            match PermissionList::parse(["read", value]) {
                Ok(list) => {
                    call_with_list(&store, method, list).await;
                    accepted(&format!("permission list for {method}"), value);
                }
                Err(e) => {
                    assert_eq!(
                        e.kind(),
                        ErrorKind::InvalidPermission,
                        "list with {value:?} for {method}"
                    );
                    assert_eq!(
                        e.detail("index"),
                        Some("1"),
                        "the error must name the bad entry's index"
                    );
                }
            }
        }
    }
    assert_unchanged(&store, &before, "bad permissions").await;
}

/// An empty permission list and one of 4,097 distinct entries fail with `Validation` for every
/// method taking a list. The bound counts entries given, duplicates included (so repeated input
/// cannot be unbounded): 4,096 entries with 10 distinct are fine, 4,097 with 10 distinct are not.
pub async fn bad_permission_list_sizes_are_rejected_and_change_nothing<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let empty: [&str; 0] = [];
    let over: Vec<String> = (0..4097).map(|i| format!("p{i}")).collect();
    for method in LIST_METHODS {
        for (what, r) in [
            ("an empty list", PermissionList::parse(empty)),
            ("4097 entries", PermissionList::parse(&over)),
            (
                "an empty list of permissions",
                PermissionList::from_permissions(Vec::new()),
            ),
        ] {
            match r {
                Ok(list) => {
                    call_with_list(&store, method, list).await;
                    accepted(&format!("permission list for {method}"), what);
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Validation, "{what} for {method}"),
            }
        }
    }
    assert_unchanged(&store, &before, "bad permission lists").await;
    let dups_over: Vec<String> = (0..4097).map(|i| format!("p{}", i % 10)).collect();
    assert_eq!(
        PermissionList::parse(&dups_over).err().map(|e| e.kind()),
        Some(ErrorKind::Validation),
        "4097 entries are too many even when most are duplicates"
    );
    let dups: Vec<String> = (0..4096).map(|i| format!("p{}", i % 10)).collect();
    let list = PermissionList::parse(&dups).must("4096 entries with 10 distinct");
    assert_eq!(list.len(), 10, "duplicates must be dropped");
    let updated = store
        .update_permissions(&sid("s1"), list, None)
        .await
        .must("update_permissions");
    assert!(updated, "update_permissions with the deduplicated list");
    let got = get_live(&store, "s1").await.permissions.to_strings();
    let want: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    assert_eq!(
        got, want,
        "the deduplicated list must be stored in first-occurrence order"
    );
}

/// Ttls of 0, over one year, negative or fractional fail with `Ttl` for every method taking a ttl.
pub async fn bad_ttls_are_rejected_and_change_nothing<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, before) = seeded(f).await;
    for method in TTL_METHODS {
        for (what, r) in [
            ("0", Ttl::from_secs(0)),
            ("one year + 1 s", Ttl::from_secs(MAX_TTL_SECS + 1)),
            ("u64::MAX", Ttl::from_secs(u64::MAX)),
            ("-1", Ttl::from_secs_i64(-1)),
            ("i64::MIN", Ttl::from_secs_i64(i64::MIN)),
            ("1.5 s", Ttl::try_from(Duration::from_millis(1500))),
            ("a zero duration", Ttl::try_from(Duration::ZERO)),
        ] {
            match r {
                Ok(t) => {
                    call_with_ttl(&store, method, t).await;
                    accepted(&format!("ttl for {method}"), what);
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Ttl, "ttl {what} for {method}"),
            }
        }
    }
    assert_unchanged(&store, &before, "bad ttls").await;
}

/// A JSON object nested `depth` levels (the top level is 1).
fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

/// Metadata nested 33 levels, over 64 KiB, not an object, or not JSON fails with `Validation` for
/// every method taking metadata.
pub async fn bad_metadata_is_rejected_and_changes_nothing<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let arrays = format!("{}{}", "[".repeat(32), "]".repeat(32));
    let arrays: Value = serde_json::from_str(&arrays).unwrap_or(Value::Null);
    for method in METADATA_METHODS {
        for (what, r) in [
            ("33 levels of objects", Metadata::from_value(nested(33))),
            (
                "33 levels of arrays",
                Metadata::from_value(json!({ "a": arrays.clone() })),
            ),
            (
                "64 KiB + 1",
                Metadata::from_value(json!({ "k": "x".repeat(MAX_METADATA_BYTES) })),
            ),
            ("an array", Metadata::from_value(json!([1, 2]))),
            ("a string", Metadata::from_value(json!("meta"))),
            ("a number", Metadata::from_value(json!(1))),
            ("invalid json", Metadata::from_json("{\"k\": ")),
        ] {
            match r {
                Ok(md) => {
                    call_with_metadata(&store, method, md).await;
                    accepted(&format!("metadata for {method}"), what);
                }
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Validation,
                    "metadata {what} for {method}"
                ),
            }
        }
    }
    assert_unchanged(&store, &before, "bad metadata").await;
}

/// Page limits of 0 or over 10,000 and negative offsets or limits fail with `Validation` for
/// `list_sessions` (per user and global), and a session limit of 0 fails with `Validation` for
/// `create_session`.
pub async fn bad_pages_and_limits_are_rejected_and_change_nothing<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, before) = seeded(f).await;
    let alice = uid("alice");
    for user in [Some(&alice), None] {
        for (what, r) in [
            ("limit 0", Page::new(0, 0)),
            ("limit 10001", Page::new(10_001, 0)),
            ("limit u64::MAX", Page::new(u64::MAX, 0)),
            ("offset -1", Page::from_i64(10, -1)),
            ("limit -1", Page::from_i64(-1, 0)),
            ("limit 0 (signed)", Page::from_i64(0, 0)),
            ("limit 10001 (signed)", Page::from_i64(10_001, 0)),
        ] {
            match r {
                Ok(p) => {
                    let _ = store.list_sessions(user, p).await;
                    accepted("page for list_sessions", what);
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Validation, "page {what}"),
            }
        }
    }
    for policy in [LimitPolicy::Reject, LimitPolicy::EvictOldest] {
        match SessionLimit::new(0, policy) {
            Ok(l) => {
                let _ = store
                    .create_session(&sid("x"), session("alice", &["read"]), l)
                    .await;
                accepted("session limit for create_session", "0");
            }
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Validation,
                "session limit 0 ({policy:?})"
            ),
        }
    }
    assert_unchanged(&store, &before, "bad pages and limits").await;
}

/// The longest and largest valid values reach the store and round-trip exactly: a 255-byte session
/// id, a 255-byte multi-byte user id, 255-byte permissions, 4,096 permissions, a one-year ttl, and
/// metadata 32 levels deep and close to 64 KiB.
pub async fn largest_valid_values_round_trip<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let id = "s".repeat(255);
    let user = format!("{}u", "ü".repeat(127));
    let long_perm = format!("{}x", "é".repeat(127));
    let mut list: Vec<String> = (0..4094).map(|i| format!("perm:{i}")).collect();
    list.push(long_perm.clone());
    list.push("p".repeat(255));
    let permissions = PermissionList::parse(&list).must("4096 permissions");
    // The top-level object is level 1, so a 31-level value under one of its keys reaches level 32.
    let big = json!({ "deep": nested(31), "blob": "x".repeat(MAX_METADATA_BYTES - 1_000) });
    let md = Metadata::from_value(big.clone()).must("metadata 32 levels deep and close to 64 KiB");
    let s = NewSession::new(uid(&user), permissions.clone())
        .with_ttl(Some(ttl(MAX_TTL_SECS)))
        .with_metadata(md);
    put(&store, &id, s).await;
    let i = info_live(&store, &id).await;
    assert_eq!(
        i.data.user_id,
        uid(&user),
        "a 255-byte user id must round-trip"
    );
    assert_eq!(
        i.data.permissions, permissions,
        "4096 permissions must round-trip in order"
    );
    assert_eq!(
        i.data.metadata.to_value(),
        big,
        "the largest metadata must round-trip exactly"
    );
    assert_eq!(
        i.ttl_remaining,
        Some(MAX_TTL_SECS),
        "a one-year ttl must round-trip"
    );
    assert!(
        super::support::check(&store, &id, &long_perm).await,
        "a 255-byte multi-byte permission must check"
    );
    let c = store
        .check_permissions(&sid(&id), &perms(&["perm:0", "perm:4094"]))
        .await
        .must("check_permissions");
    assert_eq!(
        c.entries(),
        entries(&[("perm:0", true), ("perm:4094", false)]).as_slice(),
        "checks on the long id"
    );
    assert_eq!(
        super::support::list_user(&store, &user).await,
        vec![sid(&id)],
        "the long ids must be listed"
    );
}
