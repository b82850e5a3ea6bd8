//! `create_session`: never overwrites, enforces the per-user limit atomically with `Reject` or
//! `EvictOldest`, and reports evicted ids oldest first.

use std::collections::BTreeSet;

use super::support::{
    Must, NowWindow, SECOND, STEP, concurrently, expiring, get, get_live, ids, list_user,
    must_fail, put, session, sid, sorted, uid,
};
use crate::{
    DynPermissionStore, ErrorKind, LimitPolicy, NewSession, Result, SessionId, SessionLimit,
    testkit::{PermissionStoreFixture, permission_store},
};

/// A limit the case knows to be valid.
#[track_caller]
fn limit(max: u32, policy: LimitPolicy) -> SessionLimit {
    SessionLimit::new(max, policy).must("building a test limit")
}

/// `create_session`, returning the raw result.
async fn create(
    store: &DynPermissionStore,
    id: &str,
    s: NewSession,
    l: SessionLimit,
) -> Result<Vec<SessionId>> {
    store.create_session(&sid(id), s, l).await
}

/// `create_session` stores a new session and evicts nothing below the limit.
pub async fn create_session_stores_a_new_session<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    let now = NowWindow::open(&tt);
    let evicted = create(
        &store,
        "s1",
        expiring("alice", &["read"], 100),
        limit(3, LimitPolicy::Reject),
    )
    .await
    .must("create_session(s1)");
    assert_eq!(
        evicted,
        ids(&[]),
        "below the limit create_session must evict nothing"
    );
    let data = get_live(&store, "s1").await;
    assert_eq!(
        data.user_id,
        uid("alice"),
        "create_session must store the user"
    );
    assert_eq!(
        data.created_at, data.updated_at,
        "a created session's created_at and updated_at must be equal"
    );
    now.assert_now(data.created_at, "created_at");
    assert_eq!(
        super::support::info_live(&store, "s1").await.ttl_remaining,
        Some(100),
        "create_session keeps the ttl"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["s1"]),
        "the created session must be in its user's index"
    );
    let unlimited = create(
        &store,
        "s2",
        session("alice", &["read"]),
        SessionLimit::unlimited(),
    )
    .await;
    assert_eq!(
        unlimited.must("create_session(s2, unlimited)"),
        ids(&[]),
        "an unlimited create evicts nothing"
    );
}

/// `create_session` never overwrites a live session: `SessionExists`, and nothing changes.
pub async fn create_session_never_overwrites<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, _) = permission_store(f).await;
    put(&store, "s1", session("alice", &["read"])).await;
    let before = get_live(&store, "s1").await;
    for policy in [LimitPolicy::Reject, LimitPolicy::EvictOldest] {
        let r = create(&store, "s1", session("bob", &["admin"]), limit(1, policy)).await;
        must_fail(
            r,
            ErrorKind::SessionExists,
            &format!("create_session over a live id ({policy:?})"),
        );
    }
    assert_eq!(
        get_live(&store, "s1").await,
        before,
        "a refused create_session must not change the session"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&[]),
        "a refused create_session must not index the new user"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["s1"]),
        "a refused create_session must keep alice's index"
    );
}

/// `create_session` replaces an expired session with the same id.
pub async fn create_session_replaces_an_expired_session_with_the_same_id<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    put(&store, "s1", expiring("alice", &["read"], 1)).await;
    tt.advance(SECOND).await;
    let evicted = create(
        &store,
        "s1",
        session("bob", &["write"]),
        limit(1, LimitPolicy::Reject),
    )
    .await
    .must("create_session over an expired id");
    assert_eq!(
        evicted,
        ids(&[]),
        "replacing an expired session evicts nothing"
    );
    let data = get_live(&store, "s1").await;
    assert_eq!(
        data.user_id,
        uid("bob"),
        "the new session must replace the expired one"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&[]),
        "alice's index must not list the replaced id"
    );
    assert_eq!(
        list_user(&store, "bob").await,
        ids(&["s1"]),
        "bob's index must list the new session"
    );
}

/// With `Reject` at the limit, `create_session` fails with `SessionLimitReached` and stores nothing;
/// other users are unaffected.
pub async fn create_session_with_reject_refuses_at_the_limit<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    let l = limit(2, LimitPolicy::Reject);
    for id in ["s1", "s2"] {
        create(&store, id, session("alice", &["read"]), l)
            .await
            .must("create_session below the limit");
    }
    let r = create(&store, "s3", session("alice", &["read"]), l).await;
    must_fail(
        r,
        ErrorKind::SessionLimitReached,
        "create_session at the limit with Reject",
    );
    assert_eq!(
        get(&store, "s3").await,
        None,
        "a rejected create_session must store nothing"
    );
    assert_eq!(
        sorted(list_user(&store, "alice").await),
        ids(&["s1", "s2"]),
        "a rejected create must keep alice's two"
    );
    create(&store, "b1", session("bob", &["read"]), l)
        .await
        .must("another user's create_session");
    // The limit is per user: store_permissions is an upsert outside the limit, so alice can still
    // get a third session that way, and then create_session keeps refusing.
    put(&store, "s3", session("alice", &["read"])).await;
    let r = create(&store, "s4", session("alice", &["read"]), l).await;
    must_fail(
        r,
        ErrorKind::SessionLimitReached,
        "create_session over the limit with Reject",
    );
}

/// With `EvictOldest` at the limit, `create_session` removes the oldest session and returns its id.
pub async fn create_session_with_evict_oldest_makes_room<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) {
    let (store, tt) = permission_store(f).await;
    let l = limit(2, LimitPolicy::EvictOldest);
    for id in ["s1", "s2"] {
        create(&store, id, session("alice", &["read"]), l)
            .await
            .must("create_session below the limit");
        tt.advance(STEP).await;
    }
    let evicted = create(&store, "s3", session("alice", &["read"]), l)
        .await
        .must("create_session at the limit");
    assert_eq!(
        evicted,
        ids(&["s1"]),
        "EvictOldest must evict the oldest session"
    );
    assert_eq!(
        get(&store, "s1").await,
        None,
        "the evicted session must be gone"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["s2", "s3"]),
        "alice must keep the two newest"
    );
    assert!(
        get(&store, "s3").await.is_some(),
        "the new session must be stored"
    );
}

/// Eviction removes as many of the oldest sessions as needed (by `created_at`, then id) and returns
/// them oldest first.
pub async fn evicted_ids_are_returned_oldest_first<F: PermissionStoreFixture + ?Sized>(f: &F) {
    let (store, tt) = permission_store(f).await;
    // Stored through the upsert (no limit), so alice starts above the limit of 2.
    for id in ["d", "b", "c", "a"] {
        put(&store, id, session("alice", &["read"])).await;
        tt.advance(STEP).await;
    }
    let evicted = create(
        &store,
        "e",
        session("alice", &["read"]),
        limit(2, LimitPolicy::EvictOldest),
    )
    .await
    .must("create_session with EvictOldest above the limit");
    assert_eq!(
        evicted,
        ids(&["d", "b", "c"]),
        "the three oldest must be evicted, oldest first"
    );
    assert_eq!(
        list_user(&store, "alice").await,
        ids(&["a", "e"]),
        "alice must keep the newest and the new one"
    );
    if tt.is_exact() {
        // Same created_at: the id breaks the tie.
        for id in ["y", "x"] {
            put(&store, id, session("bob", &["read"])).await;
        }
        tt.advance(STEP).await;
        let evicted = create(
            &store,
            "z",
            session("bob", &["read"]),
            limit(1, LimitPolicy::EvictOldest),
        )
        .await
        .must("create_session with EvictOldest and a created_at tie");
        assert_eq!(
            evicted,
            ids(&["x", "y"]),
            "sessions created at the same instant are evicted in id order"
        );
    }
}

/// 64 concurrent `create_session` calls for one user with limit 3 and `Reject`: exactly 3 succeed,
/// the others fail with `SessionLimitReached`, and exactly those 3 are live.
pub async fn concurrent_create_session_with_reject_leaves_the_limit<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    let l = limit(3, LimitPolicy::Reject);
    let results = concurrently(64, |i| {
        let store = store.clone();
        let (id, s) = (sid(&format!("s{i:02}")), session("alice", &["read"]));
        async move { (id.clone(), store.create_session(&id, s, l).await) }
    })
    .await;
    let mut won = Vec::new();
    for (id, r) in results {
        match r {
            Ok(evicted) => {
                assert_eq!(evicted, ids(&[]), "Reject must never evict");
                won.push(id);
            }
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::SessionLimitReached,
                "a losing create_session: {e}"
            ),
        }
    }
    assert_eq!(
        won.len(),
        3,
        "exactly 3 of 64 concurrent create_session calls must succeed with limit 3"
    );
    assert_eq!(
        sorted(list_user(&store, "alice").await),
        sorted(won.clone()),
        "exactly the winners must be live"
    );
    for id in &won {
        assert!(
            get(&store, id.as_str()).await.is_some(),
            "winner {id} must be readable"
        );
    }
}

/// 64 concurrent `create_session` calls for one user with limit 3 and `EvictOldest`: all succeed,
/// exactly 3 remain, and every other session was reported evicted exactly once.
pub async fn concurrent_create_session_with_evict_oldest_leaves_the_limit<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    let l = limit(3, LimitPolicy::EvictOldest);
    let results = concurrently(64, |i| {
        let store = store.clone();
        let (id, s) = (sid(&format!("s{i:02}")), session("alice", &["read"]));
        async move { store.create_session(&id, s, l).await }
    })
    .await;
    let mut evicted = Vec::new();
    for r in results {
        evicted.extend(r.must("a concurrent create_session with EvictOldest"));
    }
    let live = sorted(list_user(&store, "alice").await);
    assert_eq!(live.len(), 3, "exactly 3 sessions must remain with limit 3");
    let evicted_set: BTreeSet<_> = evicted.iter().cloned().collect();
    assert_eq!(
        evicted_set.len(),
        evicted.len(),
        "no session may be reported evicted twice"
    );
    assert_eq!(
        evicted.len(),
        61,
        "every session but the 3 survivors must be reported evicted"
    );
    let all: BTreeSet<_> = (0..64).map(|i| sid(&format!("s{i:02}"))).collect();
    let accounted: BTreeSet<_> = evicted_set.iter().chain(live.iter()).cloned().collect();
    assert_eq!(
        accounted, all,
        "survivors and evicted sessions must be exactly the 64 created"
    );
    for id in &evicted {
        assert_eq!(
            get(&store, id.as_str()).await,
            None,
            "evicted {id} must be gone"
        );
    }
}

/// Of 16 concurrent `create_session` calls with one id, exactly one succeeds; the others fail with
/// `SessionExists`.
pub async fn concurrent_create_session_with_one_id_has_one_winner<
    F: PermissionStoreFixture + ?Sized,
>(
    f: &F,
) {
    let (store, _) = permission_store(f).await;
    let results = concurrently(16, |i| {
        let store = store.clone();
        let s = session(&format!("user{i}"), &["read"]);
        async move {
            store
                .create_session(&sid("contested"), s, SessionLimit::unlimited())
                .await
        }
    })
    .await;
    let mut winners = 0;
    for r in results {
        match r {
            Ok(_) => winners += 1,
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::SessionExists,
                "a losing create_session: {e}"
            ),
        }
    }
    assert_eq!(
        winners, 1,
        "exactly one concurrent create_session of one id must succeed"
    );
    let owner = get_live(&store, "contested").await.user_id;
    assert_eq!(
        list_user(&store, owner.as_str()).await,
        ids(&["contested"]),
        "the winner's index must list it"
    );
    assert_eq!(
        super::support::list_all(&store).await,
        ids(&["contested"]),
        "only one session may exist"
    );
}
