//! Helpers shared by the cases: value builders that fail with context, store shortcuts and
//! snapshots. Builders panic because a case that cannot build its own valid inputs is broken.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::Barrier;

use crate::{
    Clock, DynPermissionStore, Error, ErrorKind, MAX_PAGE_LIMIT, Metadata, NewSession, Page,
    Permission, PermissionList, Result, SessionData, SessionId, SessionInfo, SystemClock,
    Timestamp, Ttl, UserId, testkit::TimeTravel,
};

/// One second, the step most ttl cases move time by.
pub(crate) const SECOND: Duration = Duration::from_secs(1);
/// An odd sub-second step: timestamps written after it show whether microseconds are kept.
pub(crate) const SUB_SECOND: Duration = Duration::from_micros(123_457);
/// A short step after which a new timestamp is strictly later on every clock.
pub(crate) const STEP: Duration = Duration::from_millis(10);

/// Unwraps a result or fails the case with what was attempted and the error.
pub(crate) trait Must<T> {
    /// The value, or a panic naming `what`.
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for Result<T> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{what} failed: {e}"),
        }
    }
}

/// Asserts that `r` failed with `kind` and returns the error.
#[track_caller]
pub(crate) fn must_fail<T: fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected a `{kind}` error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: wrong error kind ({e})");
            e
        }
    }
}

/// A session id the case knows to be valid.
#[track_caller]
pub(crate) fn sid(s: &str) -> SessionId {
    SessionId::parse(s).must("building a test session id")
}

/// Several session ids.
#[track_caller]
pub(crate) fn ids(s: &[&str]) -> Vec<SessionId> {
    s.iter().map(|s| sid(s)).collect()
}

/// A user id the case knows to be valid.
#[track_caller]
pub(crate) fn uid(s: &str) -> UserId {
    UserId::parse(s).must("building a test user id")
}

/// A permission the case knows to be valid.
#[track_caller]
pub(crate) fn perm(s: &str) -> Permission {
    Permission::parse(s).must("building a test permission")
}

/// A permission list the case knows to be valid.
#[track_caller]
pub(crate) fn perms(p: &[&str]) -> PermissionList {
    PermissionList::parse(p).must("building a test permission list")
}

/// A ttl the case knows to be valid.
#[track_caller]
pub(crate) fn ttl(secs: u64) -> Ttl {
    Ttl::from_secs(secs).must("building a test ttl")
}

/// Metadata the case knows to be valid.
#[track_caller]
pub(crate) fn meta(v: Value) -> Metadata {
    Metadata::from_value(v).must("building test metadata")
}

/// A session of `user` with `p`, no ttl and empty metadata.
#[track_caller]
pub(crate) fn session(user: &str, p: &[&str]) -> NewSession {
    NewSession::new(uid(user), perms(p))
}

/// A session of `user` with `p` expiring after `secs` seconds.
#[track_caller]
pub(crate) fn expiring(user: &str, p: &[&str], secs: u64) -> NewSession {
    session(user, p).with_ttl(Some(ttl(secs)))
}

/// The largest page, from the start: everything a case's own store holds.
#[track_caller]
pub(crate) fn all() -> Page {
    page(u64::from(MAX_PAGE_LIMIT), 0)
}

/// A page the case knows to be valid.
#[track_caller]
pub(crate) fn page(limit: u64, offset: u64) -> Page {
    Page::new(limit, offset).must("building a test page")
}

/// Permission check entries, for comparing with `PermissionCheck::entries`.
#[track_caller]
pub(crate) fn entries(pairs: &[(&str, bool)]) -> Vec<(Permission, bool)> {
    pairs.iter().map(|(p, g)| (perm(p), *g)).collect()
}

/// `store_permissions`, failing the case on error.
pub(crate) async fn put(store: &DynPermissionStore, id: &str, s: NewSession) {
    store
        .store_permissions(&sid(id), s)
        .await
        .must(&format!("store_permissions({id})"));
}

/// `get_permissions`, failing the case on error.
pub(crate) async fn get(store: &DynPermissionStore, id: &str) -> Option<SessionData> {
    store
        .get_permissions(&sid(id))
        .await
        .must(&format!("get_permissions({id})"))
}

/// `get_permissions` of a session the case expects to be live.
pub(crate) async fn get_live(store: &DynPermissionStore, id: &str) -> SessionData {
    match get(store, id).await {
        Some(d) => d,
        None => panic!("get_permissions({id}) returned None for a live session"),
    }
}

/// `get_session_info`, failing the case on error.
pub(crate) async fn info(store: &DynPermissionStore, id: &str) -> Option<SessionInfo> {
    store
        .get_session_info(&sid(id))
        .await
        .must(&format!("get_session_info({id})"))
}

/// `get_session_info` of a session the case expects to be live.
pub(crate) async fn info_live(store: &DynPermissionStore, id: &str) -> SessionInfo {
    match info(store, id).await {
        Some(i) => i,
        None => panic!("get_session_info({id}) returned None for a live session"),
    }
}

/// `check_permission`, failing the case on error.
pub(crate) async fn check(store: &DynPermissionStore, id: &str, p: &str) -> bool {
    store
        .check_permission(&sid(id), &perm(p))
        .await
        .must(&format!("check_permission({id}, {p})"))
}

/// Every session of `user` in one page.
pub(crate) async fn list_user(store: &DynPermissionStore, user: &str) -> Vec<SessionId> {
    store
        .list_sessions(Some(&uid(user)), all())
        .await
        .must(&format!("list_sessions({user})"))
}

/// Every session in one page.
pub(crate) async fn list_all(store: &DynPermissionStore) -> Vec<SessionId> {
    store
        .list_sessions(None, all())
        .await
        .must("list_sessions(None)")
}

/// `ids` sorted, for comparing listings whose order the provider chooses.
pub(crate) fn sorted(mut ids: Vec<SessionId>) -> Vec<SessionId> {
    ids.sort();
    ids
}

/// What a permission store shows from outside: the global listing, each probed session with its
/// expiry flag, and each probed user's listing.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    listed: Vec<SessionId>,
    sessions: Vec<(SessionId, Option<SessionData>, Option<bool>)>,
    users: Vec<(UserId, Vec<SessionId>)>,
}

/// Reads a [`Snapshot`] of `store`, probing `ids` and `users`.
pub(crate) async fn snapshot(
    store: &DynPermissionStore,
    probe_ids: &[&str],
    users: &[&str],
) -> Snapshot {
    let mut sessions = Vec::new();
    for id in probe_ids {
        let data = get(store, id).await;
        let has_ttl = info(store, id).await.map(|i| i.has_ttl);
        sessions.push((sid(id), data, has_ttl));
    }
    let mut per_user = Vec::new();
    for user in users {
        per_user.push((uid(user), list_user(store, user).await));
    }
    Snapshot {
        listed: list_all(store).await,
        sessions,
        users: per_user,
    }
}

/// Runs `make(0..n)` as `n` tokio tasks released together by a barrier, so they contend for real,
/// and returns their outputs in index order.
pub(crate) async fn concurrently<T, Fut, M>(n: usize, make: M) -> Vec<T>
where
    M: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (fut, barrier) = (make(i), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for joined in futures::future::join_all(handles).await {
        match joined {
            Ok(v) => out.push(v),
            Err(e) => panic!("a concurrent task of the case failed: {e}"),
        }
    }
    out
}

/// Brackets "now" around a store call, so a timestamp the store writes can be checked on any clock.
#[derive(Debug)]
pub(crate) struct NowWindow {
    exact: bool,
    manual: Timestamp,
    real_before: Timestamp,
}

impl NowWindow {
    /// Opens the window just before the store call.
    pub(crate) fn open(tt: &TimeTravel) -> Self {
        Self {
            exact: tt.is_exact(),
            manual: tt.clock().now(),
            real_before: SystemClock.now(),
        }
    }

    /// Asserts that `ts` is the store's now at the call: the manual clock when the store reads it
    /// (or may read it), otherwise a real instant inside the window.
    #[track_caller]
    pub(crate) fn assert_now(&self, ts: Timestamp, what: &str) {
        let real_after = SystemClock.now();
        if self.exact {
            assert_eq!(
                ts, self.manual,
                "{what} must be the store's clock at the call"
            );
        } else {
            assert!(
                ts == self.manual || (self.real_before..=real_after).contains(&ts),
                "{what} ({ts}) must be the store's now at the call: {} or between {} and {real_after}",
                self.manual,
                self.real_before,
            );
        }
    }
}
