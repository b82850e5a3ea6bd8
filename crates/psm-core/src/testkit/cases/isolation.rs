//! Two stores from one fixture never see each other's data, for every port.

use super::support::{Must, all, get, ids, list_all, list_user, put, session, sid, ttl, uid};
use crate::{
    CacheKey, CacheTag, ConsumeOutcome, Email, FamilyId, NewTokenFamily, NewUser, PasswordHash,
    TokenId, Username,
    testkit::{
        CacheFixture, PermissionStoreFixture, TokenStateFixture, UserStoreFixture, cache,
        permission_store, token_state, user_store,
    },
};

/// Permission stores from one fixture are isolated: same ids, different data, and no operation in
/// one reaches the other.
pub async fn permission_stores_are_isolated<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (a, _) = permission_store(f).await;
    let (b, _) = permission_store(f).await;
    put(&a, "s1", session("alice", &["read"])).await;
    put(&a, "s2", session("alice", &["read"])).await;
    assert_eq!(
        get(&b, "s1").await,
        None,
        "store b must not see store a's session"
    );
    assert_eq!(list_all(&b).await, ids(&[]), "store b must list nothing");
    assert_eq!(
        list_user(&b, "alice").await,
        ids(&[]),
        "store b must not list a's user index"
    );
    put(&b, "s1", session("bob", &["write"])).await;
    assert_eq!(
        get(&a, "s1").await.map(|d| d.user_id),
        Some(uid("alice")),
        "store a must keep its own s1"
    );
    assert!(
        !super::support::check(&a, "s1", "write").await,
        "store a must not see b's permissions"
    );
    assert!(
        b.invalidate_session(&sid("s2")).await.is_ok_and(|r| !r),
        "invalidating in b must not find a's s2"
    );
    assert_eq!(
        b.invalidate_user_sessions(&uid("alice"))
            .await
            .must("invalidate_user_sessions in b"),
        0,
        "b: alice"
    );
    assert_eq!(
        b.cleanup_expired_sessions().await.must("cleanup in b"),
        0,
        "cleanup in b removes nothing"
    );
    assert_eq!(
        list_user(&a, "alice").await.len(),
        2,
        "store a must keep both of alice's sessions"
    );
    assert!(
        a.invalidate_session(&sid("s1"))
            .await
            .must("invalidate in a"),
        "invalidating a's own s1"
    );
    assert_eq!(
        get(&b, "s1").await.map(|d| d.user_id),
        Some(uid("bob")),
        "invalidating in a must not touch b"
    );
}

/// A new user the case knows to be valid.
fn new_user(id: &str, name: &str, mail: &str) -> NewUser {
    NewUser {
        id: uid(id),
        username: Username::parse(name).must("username"),
        email: Email::parse(mail).must("email"),
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
            .must("hash"),
        permissions: Vec::new(),
    }
}

/// User stores from one fixture are isolated: the same id, email and username can exist in both.
pub async fn user_stores_are_isolated<F: UserStoreFixture + ?Sized>(f: &F) {
    let (a, _) = user_store(f).await;
    let (b, _) = user_store(f).await;
    a.create_user(new_user("u1", "alice", "alice@example.com"))
        .await
        .must("create_user in a");
    assert_eq!(
        b.get_user(&uid("u1")).await.must("get_user in b"),
        None,
        "store b must not see a's user"
    );
    let mail = Email::parse("alice@example.com").must("email");
    assert_eq!(
        b.get_user_by_email(&mail)
            .await
            .must("get_user_by_email in b"),
        None,
        "b must not see a's email"
    );
    assert_eq!(
        b.list_users(None, all()).await.must("list_users in b"),
        Vec::new(),
        "b must not list a's user"
    );
    b.create_user(new_user("u1", "alice", "alice@example.com"))
        .await
        .must("the same user in b");
    assert!(
        b.delete_user(&uid("u1")).await.must("delete_user in b"),
        "deleting b's own user"
    );
    assert!(
        a.get_user(&uid("u1")).await.must("get_user in a").is_some(),
        "deleting in b must not touch a"
    );
    let listed = a.list_users(None, all()).await.must("list_users in a");
    assert_eq!(
        listed.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        vec![uid("u1")],
        "a must list its own user only"
    );
}

/// Token state stores from one fixture are isolated: families and epochs are per store.
pub async fn token_states_are_isolated<F: TokenStateFixture + ?Sized>(f: &F) {
    let (a, tt) = token_state(f).await;
    let (b, _) = token_state(f).await;
    let family = |first: &str| NewTokenFamily {
        id: FamilyId::parse("f1").must("family id"),
        user_id: uid("alice"),
        session_id: None,
        first_token: TokenId::parse(first).must("token id"),
        expires_at: tt.now().plus_secs(3600),
    };
    let (fid, t1, t2) = (
        FamilyId::parse("f1").must("id"),
        TokenId::parse("t1").must("id"),
        TokenId::parse("t2").must("id"),
    );
    a.create_family(family("t1"))
        .await
        .must("create_family in a");
    assert_eq!(
        b.get_family(&fid).await.must("get_family in b"),
        None,
        "store b must not see a's family"
    );
    assert_eq!(
        b.consume(&fid, &t1, &t2).await.must("consume in b"),
        ConsumeOutcome::Unknown,
        "b: unknown family"
    );
    b.create_family(family("t1"))
        .await
        .must("the same family id in b");
    assert!(
        matches!(
            a.consume(&fid, &t1, &t2).await.must("consume in a"),
            ConsumeOutcome::Rotated(_)
        ),
        "a rotates"
    );
    assert!(
        matches!(
            b.consume(&fid, &t1, &t2).await.must("consume in b"),
            ConsumeOutcome::Rotated(_)
        ),
        "b rotates"
    );
    assert_eq!(
        b.revoke_user_families(&uid("alice"))
            .await
            .must("revoke in b"),
        1,
        "b revokes only its own family"
    );
    assert!(
        a.get_family(&fid)
            .await
            .must("get_family in a")
            .is_some_and(|f| !f.revoked),
        "a's family stays live"
    );
    assert_eq!(
        a.bump_user_epoch(&uid("alice")).await.must("bump in a"),
        1,
        "a's first bump"
    );
    assert_eq!(
        b.user_epoch(&uid("alice")).await.must("user_epoch in b"),
        0,
        "epochs are per store"
    );
}

/// Caches from one fixture are isolated: keys and tags are per cache.
pub async fn caches_are_isolated<F: CacheFixture + ?Sized>(f: &F) {
    let (a, _) = cache(f).await;
    let (b, _) = cache(f).await;
    let (k, t) = (
        CacheKey::parse("k").must("key"),
        CacheTag::parse("t").must("tag"),
    );
    a.set(&k, b"a", ttl(60), std::slice::from_ref(&t))
        .await
        .must("set in a");
    assert_eq!(
        b.get(&k).await.must("get in b"),
        None,
        "cache b must not see a's value"
    );
    assert_eq!(
        b.delete_tag(&t).await.must("delete_tag in b"),
        0,
        "delete_tag in b must not reach a"
    );
    assert!(
        !b.delete(&k).await.must("delete in b"),
        "delete in b must not reach a"
    );
    b.set(&k, b"b", ttl(60), std::slice::from_ref(&t))
        .await
        .must("set in b");
    assert_eq!(
        a.get(&k).await.must("get in a"),
        Some(b"a".to_vec()),
        "cache a must keep its own value"
    );
    assert_eq!(
        b.delete_tag(&t).await.must("delete_tag in b"),
        1,
        "b removes only its own value"
    );
    assert_eq!(
        a.get(&k).await.must("get in a"),
        Some(b"a".to_vec()),
        "a's value must survive b's delete_tag"
    );
}
