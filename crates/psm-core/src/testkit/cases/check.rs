//! Permission checks: exact, case-sensitive, wildcards literal, results in the order asked.

use super::support::{Must, check, entries, perms, put, session, sid};
use crate::testkit::{PermissionStoreFixture, permission_store};

/// `check_permission` compares exactly and case-sensitively: no prefix, suffix or case-folded match.
pub async fn check_permission_is_exact_and_case_sensitive<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["files:read", "Admin"])).await;
    for (p, want) in [
        ("files:read", true),
        ("Admin", true),
        ("files:READ", false),
        ("FILES:read", false),
        ("admin", false),
        ("ADMIN", false),
        ("files", false),
        ("files:", false),
        ("files:rea", false),
        ("files:read:all", false),
        ("files:read2", false),
        ("iles:read", false),
    ] {
        assert_eq!(
            check(&store, "s1", p).await,
            want,
            "check_permission(s1, {p:?}) with stored [files:read, Admin]"
        );
    }
}

/// `*` and `?` in stored permissions are literal characters, never wildcards.
pub async fn stored_wildcards_are_literal<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    put(
        &store,
        "s1",
        session("alice", &["files:*", "a?c", "[ab]", "%", "_"]),
    )
    .await;
    for (p, want) in [
        ("files:*", true),
        ("a?c", true),
        ("[ab]", true),
        ("%", true),
        ("_", true),
        ("files:read", false),
        ("files:", false),
        ("*", false),
        ("abc", false),
        ("a", false),
        ("x", false),
        ("?", false),
    ] {
        assert_eq!(
            check(&store, "s1", p).await,
            want,
            "check_permission(s1, {p:?}) with stored [files:*, a?c, [ab], %, _]"
        );
    }
}

/// Unicode permissions compare by exact bytes: no case folding and no normalization.
pub async fn unicode_permissions_compare_exactly<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    // U+00E9 (precomposed é) is stored; the decomposed "e" + U+0301 looks the same but is another string.
    put(
        &store,
        "s1",
        session("alice", &["caf\u{e9}", "日本:読む", "Ünïcødé"]),
    )
    .await;
    for (p, want) in [
        ("caf\u{e9}", true),
        ("cafe\u{301}", false),
        ("日本:読む", true),
        ("日本", false),
        ("Ünïcødé", true),
        ("ünïcødé", false),
    ] {
        assert_eq!(
            check(&store, "s1", p).await,
            want,
            "check_permission(s1, {p:?})"
        );
    }
}

/// `check_permissions` answers one entry per asked permission, in the order asked.
pub async fn check_permissions_answers_in_the_order_asked<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["a", "b"])).await;
    let asked = perms(&["c", "b", "A", "a", "d"]);
    let got = store
        .check_permissions(&sid("s1"), &asked)
        .await
        .must("check_permissions");
    let want = entries(&[
        ("c", false),
        ("b", true),
        ("A", false),
        ("a", true),
        ("d", false),
    ]);
    assert_eq!(
        got.entries(),
        want.as_slice(),
        "check_permissions must answer each asked permission in order"
    );
    let one = store
        .check_permissions(&sid("s1"), &perms(&["b"]))
        .await
        .must("check_permissions([b])");
    assert_eq!(
        one.entries(),
        entries(&[("b", true)]).as_slice(),
        "check_permissions with one permission"
    );
}

/// Checks see the permissions of the latest update, and a session's checks never see another
/// session's permissions.
pub async fn checks_follow_updates_and_stay_per_session<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    put(&store, "s2", session("alice", &["write"])).await;
    assert!(
        !check(&store, "s1", "write").await,
        "s1 must not see s2's permissions"
    );
    assert!(
        store
            .update_permissions(&sid("s1"), perms(&["write"]), None)
            .await
            .must("update_permissions")
    );
    assert!(
        !check(&store, "s1", "read").await,
        "after the update s1 must no longer hold read"
    );
    assert!(
        check(&store, "s1", "write").await,
        "after the update s1 must hold write"
    );
    let c = store
        .check_permissions(&sid("s1"), &perms(&["read", "write"]))
        .await
        .must("check_permissions");
    assert_eq!(
        c.entries(),
        entries(&[("read", false), ("write", true)]).as_slice(),
        "check_permissions after update"
    );
}

/// A session with the largest permission list (4,096 entries, some 255 bytes long) checks each one.
pub async fn largest_permission_list_checks_every_entry<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    let mut all: Vec<String> = (0..4095).map(|i| format!("perm:{i:04}")).collect();
    all.push("p".repeat(255));
    let list = crate::PermissionList::parse(&all).must("building 4096 permissions");
    put(
        &store,
        "s1",
        crate::NewSession::new(super::support::uid("alice"), list.clone()),
    )
    .await;
    let got = store
        .check_permissions(&sid("s1"), &list)
        .await
        .must("check_permissions(all 4096)");
    assert_eq!(
        got.len(),
        4096,
        "check_permissions must answer all 4096 permissions"
    );
    assert!(got.all(), "every stored permission must check true");
    assert!(
        check(&store, "s1", &"p".repeat(255)).await,
        "a 255-byte permission must check true"
    );
    assert!(
        !check(&store, "s1", "perm:4095").await,
        "a permission never stored must check false"
    );
    let data = super::support::get_live(&store, "s1").await;
    assert_eq!(
        data.permissions, list,
        "the 4096 permissions must come back in stored order"
    );
}
