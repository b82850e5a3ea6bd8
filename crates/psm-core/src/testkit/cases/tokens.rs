//! The `TokenStateStore` port: refresh-token families with an atomic consume, reuse detection,
//! revocation, absolute expiry, and per-user epochs.

use std::{collections::BTreeSet, time::Duration};

use super::support::{Must, NowWindow, SECOND, SUB_SECOND, concurrently, must_fail, sid, uid};
use crate::{
    ConsumeOutcome, DynTokenStateStore, ErrorKind, FamilyId, NewTokenFamily, TokenFamily, TokenId,
    testkit::{TimeTravel, TokenStateFixture, token_state},
};

/// A family id the case knows to be valid.
#[track_caller]
fn fid(s: &str) -> FamilyId {
    FamilyId::parse(s).must("building a test family id")
}

/// A token id the case knows to be valid.
#[track_caller]
fn tid(s: &str) -> TokenId {
    TokenId::parse(s).must("building a test token id")
}

/// A family `id` of `user` with first token `first`, ending `secs` seconds from the store's now.
fn family(tt: &TimeTravel, id: &str, user: &str, first: &str, secs: i64) -> NewTokenFamily {
    NewTokenFamily {
        id: fid(id),
        user_id: uid(user),
        session_id: Some(sid(&format!("session-{id}"))),
        first_token: tid(first),
        expires_at: tt.now().plus_secs(secs),
    }
}

/// `create_family`, failing the case on error.
async fn create(store: &DynTokenStateStore, f: NewTokenFamily) -> TokenFamily {
    store.create_family(f).await.must("create_family")
}

/// `get_family`, failing the case on error.
async fn get(store: &DynTokenStateStore, id: &str) -> Option<TokenFamily> {
    store
        .get_family(&fid(id))
        .await
        .must(&format!("get_family({id})"))
}

/// `consume`, failing the case on error.
async fn consume(
    store: &DynTokenStateStore,
    family: &str,
    presented: &str,
    next: &str,
) -> ConsumeOutcome {
    store
        .consume(&fid(family), &tid(presented), &tid(next))
        .await
        .must(&format!("consume({family}, {presented})"))
}

/// The family from a `Rotated` outcome, failing the case otherwise.
#[track_caller]
fn rotated(o: ConsumeOutcome, what: &str) -> TokenFamily {
    match o {
        ConsumeOutcome::Rotated(f) => f,
        other => panic!("{what}: expected Rotated, got {other:?}"),
    }
}

/// The family from a `ReuseDetected` outcome, failing the case otherwise.
#[track_caller]
fn reuse(o: ConsumeOutcome, what: &str) -> TokenFamily {
    match o {
        ConsumeOutcome::ReuseDetected(f) => f,
        other => panic!("{what}: expected ReuseDetected, got {other:?}"),
    }
}

/// `create_family` stores a live family whose current token is the first one; `get_family` returns
/// the same record.
pub async fn create_family_then_get_returns_it<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    assert!(
        !store.provider_name().is_empty(),
        "provider_name must not be empty"
    );
    // A sub-second instant, so a store keeping less than microsecond precision is caught.
    tt.advance(SUB_SECOND).await;
    let now = NowWindow::open(&tt);
    let given = family(&tt, "f1", "alice", "t1", 3600);
    let created = create(&store, given.clone()).await;
    assert_eq!(created.id, given.id, "create_family: id");
    assert_eq!(created.user_id, given.user_id, "create_family: user");
    assert_eq!(
        created.session_id, given.session_id,
        "create_family: session"
    );
    assert_eq!(
        created.current_token, given.first_token,
        "the first token must be current"
    );
    assert_eq!(
        created.expires_at, given.expires_at,
        "create_family: expires_at"
    );
    assert!(!created.revoked, "a new family must not be revoked");
    assert_eq!(created.rotations, 0, "a new family has no rotations");
    now.assert_now(created.created_at, "created_at");
    assert_eq!(
        get(&store, "f1").await,
        Some(created),
        "get_family must return the created family"
    );
    assert_eq!(
        get(&store, "unknown").await,
        None,
        "get_family on an unknown id must be None"
    );
    let no_session = NewTokenFamily {
        session_id: None,
        ..family(&tt, "f2", "alice", "t1", 3600)
    };
    assert_eq!(
        create(&store, no_session).await.session_id,
        None,
        "a family without a session must keep None"
    );
}

/// Creating a family whose id exists fails with `Concurrency` and changes nothing.
pub async fn create_existing_family_fails_with_concurrency<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    let first = create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    let r = store
        .create_family(family(&tt, "f1", "bob", "other", 60))
        .await;
    must_fail(
        r,
        ErrorKind::Concurrency,
        "create_family with an existing id",
    );
    assert_eq!(
        get(&store, "f1").await,
        Some(first),
        "a refused create_family must change nothing"
    );
}

/// Consuming the current token rotates: `next` becomes current and `rotations` grows; the result
/// is what `get_family` shows.
pub async fn consume_current_token_rotates<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    let created = create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    let once = rotated(
        consume(&store, "f1", "t1", "t2").await,
        "consuming the first token",
    );
    assert_eq!(
        once.current_token,
        tid("t2"),
        "after a rotation `next` must be current"
    );
    assert_eq!(once.rotations, 1, "one rotation");
    assert!(!once.revoked, "a rotation must not revoke");
    assert_eq!(
        once.expires_at, created.expires_at,
        "a rotation must not move expires_at"
    );
    assert_eq!(
        once.created_at, created.created_at,
        "a rotation must not move created_at"
    );
    assert_eq!(
        get(&store, "f1").await,
        Some(once),
        "get_family must show the rotation"
    );
    let twice = rotated(
        consume(&store, "f1", "t2", "t3").await,
        "consuming the second token",
    );
    assert_eq!(
        (twice.current_token, twice.rotations),
        (tid("t3"), 2),
        "the second rotation"
    );
}

/// Presenting a consumed token (even one consumed long ago) revokes the family with
/// `ReuseDetected`; afterwards even the current token is `Revoked`.
pub async fn reused_token_revokes_the_family<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    rotated(consume(&store, "f1", "t1", "t2").await, "consume t1");
    rotated(consume(&store, "f1", "t2", "t3").await, "consume t2");
    let fam = reuse(
        consume(&store, "f1", "t1", "t9").await,
        "presenting t1 again",
    );
    assert!(fam.revoked, "ReuseDetected must carry the revoked family");
    assert_eq!(fam.current_token, tid("t3"), "reuse must not rotate");
    assert!(
        get(&store, "f1").await.is_some_and(|f| f.revoked),
        "the family must be stored as revoked"
    );
    reuse(
        consume(&store, "f1", "t2", "t9").await,
        "presenting t2 after the revocation",
    );
    assert_eq!(
        consume(&store, "f1", "t3", "t4").await,
        ConsumeOutcome::Revoked,
        "the current token of a revoked family"
    );
    assert_eq!(
        get(&store, "f1").await.map(|f| f.current_token),
        Some(tid("t3")),
        "nothing may rotate after revocation"
    );
}

/// Of 64 concurrent consumes of one token id, exactly one gets `Rotated`; the others get
/// `ReuseDetected`, and the family ends revoked.
pub async fn concurrent_consumes_of_one_token_rotate_exactly_once<F: TokenStateFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = token_state(f).await;
    create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    let results = concurrently(64, |i| {
        let store = store.clone();
        let next = tid(&format!("next{i:02}"));
        async move {
            (
                next.clone(),
                store.consume(&fid("f1"), &tid("t1"), &next).await,
            )
        }
    })
    .await;
    let mut winners = Vec::new();
    for (next, r) in results {
        match r.must("a concurrent consume") {
            ConsumeOutcome::Rotated(fam) => {
                assert_eq!(
                    fam.current_token, next,
                    "the winner's `next` must be current"
                );
                winners.push(next);
            }
            ConsumeOutcome::ReuseDetected(_) => {}
            other => panic!("a losing concurrent consume must get ReuseDetected, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 64 concurrent consumes must get Rotated"
    );
    let fam = get(&store, "f1")
        .await
        .unwrap_or_else(|| panic!("the family must still exist"));
    assert!(fam.revoked, "the detected reuse must revoke the family");
    assert_eq!(fam.rotations, 1, "exactly one rotation may have happened");
    assert_eq!(
        Some(&fam.current_token),
        winners.first(),
        "the winner's token must be current"
    );
}

/// `revoke_family` returns `true` once; a revoked family answers `Revoked`.
pub async fn revoked_family_answers_revoked<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    assert!(
        store.revoke_family(&fid("f1")).await.must("revoke_family"),
        "revoking a live family returns true"
    );
    assert!(
        !store
            .revoke_family(&fid("f1"))
            .await
            .must("revoke_family again"),
        "a second revoke returns false"
    );
    assert!(
        !store
            .revoke_family(&fid("unknown"))
            .await
            .must("revoke_family(unknown)"),
        "unknown: false"
    );
    assert_eq!(
        consume(&store, "f1", "t1", "t2").await,
        ConsumeOutcome::Revoked,
        "consume on a revoked family"
    );
    let fam = get(&store, "f1")
        .await
        .unwrap_or_else(|| panic!("a revoked family must still be readable"));
    assert!(fam.revoked, "get_family must show the revocation");
    assert_eq!(
        fam.current_token,
        tid("t1"),
        "consume on a revoked family must not rotate"
    );
}

/// A family past `expires_at` answers `Expired` and reads as `None`; rotation never extends it.
pub async fn expired_family_answers_expired_and_rotation_never_extends_it<
    F: TokenStateFixture + ?Sized,
>(
    f: &F,
) {
    let (store, tt) = token_state(f).await;
    let created = create(&store, family(&tt, "f1", "alice", "t1", 2)).await;
    tt.advance(SECOND).await;
    let fam = rotated(
        consume(&store, "f1", "t1", "t2").await,
        "consume before expiry",
    );
    assert_eq!(
        fam.expires_at, created.expires_at,
        "rotation must never extend the family"
    );
    tt.advance(Duration::from_millis(1100)).await;
    assert_eq!(
        consume(&store, "f1", "t2", "t3").await,
        ConsumeOutcome::Expired,
        "consume after expires_at"
    );
    assert_eq!(
        get(&store, "f1").await,
        None,
        "get_family past expires_at must be None"
    );
}

/// Consuming in an unknown family, or an id the family never issued, is `Unknown` and changes
/// nothing.
pub async fn unknown_family_or_token_is_unknown<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    let created = create(&store, family(&tt, "f1", "alice", "t1", 3600)).await;
    assert_eq!(
        consume(&store, "nope", "t1", "t2").await,
        ConsumeOutcome::Unknown,
        "consume in an unknown family"
    );
    assert_eq!(
        get(&store, "nope").await,
        None,
        "consume must not create a family"
    );
    assert_eq!(
        consume(&store, "f1", "never", "t2").await,
        ConsumeOutcome::Unknown,
        "a token never issued"
    );
    assert_eq!(
        get(&store, "f1").await,
        Some(created),
        "an unknown token must change nothing"
    );
    rotated(
        consume(&store, "f1", "t1", "t2").await,
        "the current token still rotates",
    );
}

/// `revoke_user_families` revokes every live family of the user, returns how many were newly
/// revoked, and leaves other users alone.
pub async fn revoke_user_families_counts_newly_revoked<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    for (id, user) in [
        ("a1", "alice"),
        ("a2", "alice"),
        ("a3", "alice"),
        ("b1", "bob"),
    ] {
        create(&store, family(&tt, id, user, "t1", 3600)).await;
    }
    assert!(
        store
            .revoke_family(&fid("a1"))
            .await
            .must("revoke_family(a1)")
    );
    let n = store
        .revoke_user_families(&uid("alice"))
        .await
        .must("revoke_user_families(alice)");
    assert_eq!(n, 2, "only the two families not revoked yet count");
    for id in ["a1", "a2", "a3"] {
        assert!(
            get(&store, id).await.is_some_and(|f| f.revoked),
            "{id} must be revoked"
        );
        assert_eq!(
            consume(&store, id, "t1", "t2").await,
            ConsumeOutcome::Revoked,
            "consume in revoked {id}"
        );
    }
    assert!(
        get(&store, "b1").await.is_some_and(|f| !f.revoked),
        "bob's family must stay live"
    );
    rotated(
        consume(&store, "b1", "t1", "t2").await,
        "bob's family must still rotate",
    );
    let again = store
        .revoke_user_families(&uid("alice"))
        .await
        .must("revoke_user_families(alice) again");
    assert_eq!(again, 0, "a second call revokes nothing new");
    assert_eq!(
        store
            .revoke_user_families(&uid("nobody"))
            .await
            .must("revoke_user_families(nobody)"),
        0,
        "unknown"
    );
}

/// Epochs start at 0, each bump adds one and returns the new value, and users are independent.
pub async fn user_epochs_start_at_zero_and_bump_by_one<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, _) = token_state(f).await;
    let (alice, bob) = (uid("alice"), uid("bob"));
    assert_eq!(
        store.user_epoch(&alice).await.must("user_epoch"),
        0,
        "a user never bumped has epoch 0"
    );
    assert_eq!(
        store.bump_user_epoch(&alice).await.must("bump_user_epoch"),
        1,
        "the first bump returns 1"
    );
    assert_eq!(
        store.bump_user_epoch(&alice).await.must("bump_user_epoch"),
        2,
        "the second bump returns 2"
    );
    assert_eq!(
        store.user_epoch(&alice).await.must("user_epoch"),
        2,
        "user_epoch must show the bumps"
    );
    assert_eq!(
        store.user_epoch(&bob).await.must("user_epoch(bob)"),
        0,
        "another user's epoch must stay 0"
    );
}

/// 64 concurrent bumps never lose one: they return 1 to 64, each once, and the epoch ends at 64.
pub async fn concurrent_epoch_bumps_never_lose_one<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, _) = token_state(f).await;
    let results = concurrently(64, |_| {
        let store = store.clone();
        async move { store.bump_user_epoch(&uid("alice")).await }
    })
    .await;
    let got: BTreeSet<u64> = results
        .into_iter()
        .map(|r| r.must("a concurrent bump_user_epoch"))
        .collect();
    assert_eq!(
        got,
        (1..=64).collect::<BTreeSet<u64>>(),
        "concurrent bumps must return 1 to 64, each once"
    );
    assert_eq!(
        store.user_epoch(&uid("alice")).await.must("user_epoch"),
        64,
        "no bump may be lost"
    );
}

/// `cleanup_expired_families` removes the families past their lifetime and returns how many.
pub async fn cleanup_expired_families_counts_removed<F: TokenStateFixture + ?Sized>(f: &F) {
    let (store, tt) = token_state(f).await;
    create(&store, family(&tt, "short1", "alice", "t1", 1)).await;
    create(&store, family(&tt, "short2", "bob", "t1", 1)).await;
    let long = create(&store, family(&tt, "long", "alice", "t1", 3600)).await;
    assert_eq!(
        store
            .cleanup_expired_families()
            .await
            .must("cleanup before expiry"),
        0,
        "nothing expired yet"
    );
    tt.advance(Duration::from_millis(1100)).await;
    assert_eq!(
        store
            .cleanup_expired_families()
            .await
            .must("cleanup_expired_families"),
        2,
        "two families expired"
    );
    assert_eq!(
        store
            .cleanup_expired_families()
            .await
            .must("second cleanup"),
        0,
        "a second cleanup removes nothing"
    );
    assert_eq!(
        get(&store, "long").await,
        Some(long),
        "a live family must be untouched"
    );
    assert_eq!(
        consume(&store, "short1", "t1", "t2").await,
        ConsumeOutcome::Unknown,
        "a removed family is unknown"
    );
}
