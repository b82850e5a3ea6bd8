//! Memory-specific behaviour: sweeper, quota, stats, clearing, shared clones, index invariants.

use std::{sync::Arc, thread, time::Duration};

use psm_core::{
    ErrorKind, LimitPolicy, ManualClock, NewSession, Page, PermissionList, PermissionRef,
    PermissionStore, SessionId, SessionIdRef, SessionLimit, Ttl, UserId,
};

use super::{MemoryStore, users::split};
use crate::MemoryConfig;

fn sid(s: &str) -> &SessionIdRef {
    SessionIdRef::parse(s).unwrap()
}

fn perm(s: &str) -> &PermissionRef {
    PermissionRef::parse(s).unwrap()
}

fn session(user: &str, perms: &[&str], ttl: Option<u64>) -> NewSession {
    NewSession::new(
        UserId::parse(user).unwrap(),
        PermissionList::parse(perms).unwrap(),
    )
    .with_ttl(ttl.map(|t| Ttl::from_secs(t).unwrap()))
}

fn store_with(config: MemoryConfig) -> (MemoryStore, ManualClock) {
    let clock = ManualClock::at_2024();
    (
        MemoryStore::with_clock(config, Arc::new(clock.clone())),
        clock,
    )
}

fn store() -> (MemoryStore, ManualClock) {
    store_with(MemoryConfig {
        cleanup_interval: None,
        ..MemoryConfig::default()
    })
}

fn limited(max: usize) -> (MemoryStore, ManualClock) {
    store_with(MemoryConfig {
        cleanup_interval: None,
        max_sessions: Some(max),
        ..MemoryConfig::default()
    })
}

impl MemoryStore {
    /// Asserts that the shards and the per-user indexes describe the same sessions and that the
    /// quota counter matches what is stored.
    fn assert_consistent(&self) {
        let inner = &self.inner;
        let mut stored = 0;
        for (si, shard) in inner.shards.iter().enumerate() {
            let table = shard.table.read();
            for (slot, s) in table.iter() {
                stored += 1;
                let id = s.hot.id.to_session_id().expect("stored ids are valid");
                let users = inner.users[inner.user_shard(&s.cold.user)].map.lock();
                let index = users
                    .get(&*s.cold.user)
                    .expect("every session's user has an index");
                assert!(
                    index
                        .entries()
                        .contains(&(s.cold.created, super::users::handle(si, slot))),
                    "{id}"
                );
                assert_eq!(
                    table
                        .find(inner.hash(id.as_str()), id.as_str())
                        .map(|(x, _)| x),
                    Some(slot)
                );
            }
        }
        let mut indexed = 0;
        for users in inner.users.iter() {
            for (user, index) in users.map.lock().iter() {
                assert!(!index.is_empty(), "empty indexes are dropped");
                for &(created, h) in index.entries() {
                    indexed += 1;
                    let (si, slot) = split(h);
                    let table = inner.shards[si].table.read();
                    let s = table
                        .get(slot)
                        .expect("every index entry points to a session");
                    assert_eq!((&*s.cold.user, s.cold.created), (&**user, created));
                }
            }
        }
        assert_eq!(indexed, stored);
        assert_eq!(
            inner.stored.load(std::sync::atomic::Ordering::SeqCst),
            stored
        );
    }
}

#[test]
fn clones_share_state() {
    let (a, _) = store();
    let b = a.clone();
    a.store_permissions_now(sid("s1"), session("u", &["read"], None))
        .unwrap();
    assert!(b.check_permission_now(sid("s1"), perm("read")));
    assert!(b.invalidate_session_now(sid("s1")));
    assert!(a.get_permissions_now(sid("s1")).is_none());
    assert_eq!(a.memory_stats().total_sessions_created, 1);
}

#[test]
fn a_permission_never_stored_is_false_without_interning_it() {
    let (s, _) = store();
    s.store_permissions_now(sid("s1"), session("u", &["read", "write"], None))
        .unwrap();
    assert!(!s.check_permission_now(sid("s1"), perm("never-seen")));
    assert!(!s.check_permission_now(sid("missing"), perm("read")));
    assert_eq!(s.inner.interned(), 2);
    let check = s.check_permissions_now(
        sid("s1"),
        &PermissionList::parse(["x", "write", "read"]).unwrap(),
    );
    assert_eq!(
        check.entries().iter().map(|(_, g)| *g).collect::<Vec<_>>(),
        [false, true, true]
    );
}

#[test]
fn cleanup_is_explicit_without_a_runtime() {
    let (s, clock) = store_with(MemoryConfig::default());
    s.store_permissions_now(sid("short"), session("u", &["read"], Some(10)))
        .unwrap();
    s.store_permissions_now(sid("long"), session("u", &["read"], Some(100)))
        .unwrap();
    s.store_permissions_now(sid("forever"), session("v", &["read"], None))
        .unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        s.memory_stats().total_sessions,
        3,
        "expired sessions stay until swept"
    );
    assert_eq!(s.memory_stats().active_sessions, 2);
    assert_eq!(s.cleanup(), 1);
    assert_eq!(s.cleanup(), 0);
    assert_eq!(s.memory_stats().total_sessions, 2);
    assert_eq!(s.memory_stats().total_sessions_expired, 1);
    s.assert_consistent();
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_removes_expired_sessions_inside_a_runtime() {
    let config = MemoryConfig {
        cleanup_interval: Some(Duration::from_secs(5)),
        ..MemoryConfig::default()
    };
    let (s, clock) = store_with(config);
    s.initialize().await.unwrap();
    s.initialize().await.unwrap();
    assert!(s.inner.sweeper_running());
    s.store_permissions_now(sid("a"), session("u", &["read"], Some(1)))
        .unwrap();
    s.store_permissions_now(sid("b"), session("u", &["read"], None))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(s.memory_stats().total_sessions, 2);
    // Let the sweeper's timer fire (Tokio's paused clock jumps to the next timer).
    tokio::time::sleep(Duration::from_secs(6)).await;
    tokio::task::yield_now().await;
    assert_eq!(s.memory_stats().total_sessions, 1);
    assert_eq!(s.memory_stats().total_sessions_expired, 1);
    s.close().await.unwrap();
    s.close().await.unwrap();
    assert!(!s.inner.sweeper_running());
    assert_eq!(s.memory_stats().total_sessions, 0, "close drops the data");
    s.initialize().await.unwrap();
    assert!(
        s.inner.sweeper_running(),
        "initialize after close starts it again"
    );
}

#[tokio::test]
async fn the_sweeper_never_keeps_the_store_alive() {
    let (s, _) = store_with(MemoryConfig::default());
    s.initialize().await.unwrap();
    let weak = Arc::downgrade(&s.inner);
    let clone = s.clone();
    drop(s);
    assert!(weak.upgrade().is_some(), "a clone still holds it");
    drop(clone);
    assert!(
        weak.upgrade().is_none(),
        "the sweeper holds only a weak reference"
    );
}

#[tokio::test]
async fn a_disabled_interval_starts_no_sweeper() {
    let (s, _) = store();
    s.initialize().await.unwrap();
    assert!(!s.inner.sweeper_running());
}

#[test]
fn quota_counts_live_sessions_and_purges_expired_ones_first() {
    let (s, clock) = limited(2);
    s.store_permissions_now(sid("a"), session("u", &["read"], Some(10)))
        .unwrap();
    s.store_permissions_now(sid("b"), session("u", &["read"], None))
        .unwrap();
    let e = s
        .store_permissions_now(sid("c"), session("u", &["read"], None))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StorageQuotaExceeded);
    assert!(
        s.get_permissions_now(sid("c")).is_none(),
        "a failed store stores nothing"
    );
    // Replacing an existing session is not a new one.
    s.store_permissions_now(sid("b"), session("v", &["write"], None))
        .unwrap();
    clock.advance(Duration::from_secs(10));
    s.store_permissions_now(sid("c"), session("u", &["read"], None))
        .unwrap();
    assert_eq!(
        s.memory_stats().total_sessions,
        2,
        "the expired session was purged to make room"
    );
    assert_eq!(s.memory_stats().storage_limit, Some(2));
    s.assert_consistent();
}

#[test]
fn an_evicting_create_session_makes_its_own_room_in_a_full_quota() {
    let (s, clock) = limited(2);
    let limit = SessionLimit::new(2, LimitPolicy::EvictOldest).unwrap();
    s.create_session_now(sid("a"), session("u", &["read"], None), limit)
        .unwrap();
    clock.advance(Duration::from_secs(1));
    s.create_session_now(sid("b"), session("u", &["read"], None), limit)
        .unwrap();
    let evicted = s
        .create_session_now(sid("c"), session("u", &["read"], None), limit)
        .unwrap();
    assert_eq!(evicted, [SessionId::parse("a").unwrap()]);
    let reject = SessionLimit::new(5, LimitPolicy::Reject).unwrap();
    let e = s
        .create_session_now(sid("d"), session("w", &["read"], None), reject)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StorageQuotaExceeded);
    s.assert_consistent();
}

#[test]
fn concurrent_inserts_never_exceed_the_quota() {
    let (s, _) = limited(10);
    let ok: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                scope.spawn(move || {
                    let id = format!("s{i}");
                    usize::from(
                        s.store_permissions_now(
                            sid(&id),
                            session(&format!("u{}", i % 7), &["read"], None),
                        )
                        .is_ok(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(ok, 10);
    assert_eq!(s.memory_stats().active_sessions, 10);
    s.assert_consistent();
}

#[test]
fn stats_report_the_seed_fields() {
    let (s, clock) = store_with(MemoryConfig {
        max_sessions: Some(100),
        ..MemoryConfig::default()
    });
    s.store_permissions_now(sid("a"), session("u1", &["read"], Some(10)))
        .unwrap();
    s.store_permissions_now(sid("b"), session("u1", &["read"], None))
        .unwrap();
    s.store_permissions_now(sid("c"), session("u2", &["read"], Some(100)))
        .unwrap();
    s.store_permissions_now(sid("c"), session("u2", &["write"], Some(100)))
        .unwrap();
    assert!(s.check_permission_now(sid("a"), perm("read")));
    clock.advance(Duration::from_secs(3661));
    let st = s.memory_stats();
    assert_eq!(st.provider, "memory");
    assert_eq!(st.uptime_seconds, 3661);
    assert_eq!(
        (st.total_sessions, st.active_sessions, st.sessions_with_ttl),
        (3, 1, 0)
    );
    assert_eq!(st.unique_users, 1);
    assert_eq!(st.peak_session_count, 3);
    assert_eq!(st.total_sessions_created, 4);
    assert_eq!(st.total_sessions_expired, 0);
    assert_eq!(st.total_operations, 5);
    assert_eq!(st.storage_limit, Some(100));
    assert_eq!(st.cleanup_interval, 60);
    let json = serde_json::to_value(&st).unwrap();
    for key in [
        "provider",
        "uptime_seconds",
        "total_sessions",
        "active_sessions",
        "sessions_with_ttl",
        "unique_users",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn operations_are_counted_only_with_monitoring() {
    let (s, _) = store_with(MemoryConfig {
        enable_monitoring: false,
        cleanup_interval: None,
        ..MemoryConfig::default()
    });
    s.store_permissions_now(sid("a"), session("u", &["read"], None))
        .unwrap();
    assert!(s.check_permission_now(sid("a"), perm("read")));
    s.list_sessions_now(None, Page::default());
    assert_eq!(s.memory_stats().total_operations, 0);
}

#[test]
fn clear_all_sessions_removes_everything_and_counts_live_ones() {
    let (s, clock) = store();
    for i in 0..50 {
        s.store_permissions_now(
            sid(&format!("s{i}")),
            session(&format!("u{}", i % 5), &["read"], Some(10 + i)),
        )
        .unwrap();
    }
    clock.advance(Duration::from_secs(20));
    assert_eq!(s.clear_all_sessions(), 39);
    assert_eq!(s.memory_stats().total_sessions, 0);
    assert!(
        s.list_sessions_now(Some(&UserId::parse("u1").unwrap()), Page::default())
            .is_empty()
    );
    s.assert_consistent();
    s.store_permissions_now(sid("again"), session("u1", &["read"], None))
        .unwrap();
    assert_eq!(
        s.list_sessions_now(None, Page::default()),
        [SessionId::parse("again").unwrap()]
    );
}

#[test]
fn global_listing_pages_cover_every_live_session_once() {
    let (s, clock) = store_with(MemoryConfig {
        shards: 8,
        cleanup_interval: None,
        ..MemoryConfig::default()
    });
    for i in 0..500 {
        let ttl = (i % 10 == 0).then_some(5);
        s.store_permissions_now(
            sid(&format!("s{i:03}")),
            session(&format!("u{}", i % 9), &["read"], ttl),
        )
        .unwrap();
    }
    clock.advance(Duration::from_secs(5));
    let mut seen = Vec::new();
    let mut page = Page::new(7, 0).unwrap();
    loop {
        let got = s.list_sessions_now(None, page);
        if got.is_empty() {
            break;
        }
        seen.extend(got);
        page = page.next();
    }
    assert_eq!(seen.len(), 450);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 450);
    let whole = s.list_sessions_now(None, Page::new(10_000, 0).unwrap());
    assert_eq!(whole, seen, "pages concatenate to the whole listing");
}

#[test]
fn user_listing_breaks_creation_ties_by_id_across_pages() {
    let (s, clock) = store();
    for id in ["d", "b", "c", "a"] {
        s.store_permissions_now(sid(id), session("u", &["read"], None))
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    s.store_permissions_now(sid("0-later"), session("u", &["read"], None))
        .unwrap();
    let user = UserId::parse("u").unwrap();
    let mut all = Vec::new();
    for offset in 0..5 {
        all.extend(s.list_sessions_now(Some(&user), Page::new(1, offset).unwrap()));
    }
    let names: Vec<&str> = all.iter().map(|i| i.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "0-later"]);
}

#[test]
fn mixed_concurrent_writes_keep_shards_and_indexes_consistent() {
    let (s, clock) = store_with(MemoryConfig {
        shards: 4,
        cleanup_interval: None,
        ..MemoryConfig::default()
    });
    let limit = SessionLimit::new(3, LimitPolicy::EvictOldest).unwrap();
    thread::scope(|scope| {
        for t in 0..4u64 {
            let (s, clock) = (s.clone(), clock.clone());
            scope.spawn(move || {
                for i in 0..400u64 {
                    let id = format!("s{}", (i * 7 + t * 13) % 97);
                    let user = format!("u{}", (i + t) % 5);
                    match i % 9 {
                        0 => drop(s.create_session_now(
                            sid(&id),
                            session(&user, &["read"], Some(3)),
                            limit,
                        )),
                        1 => drop(s.invalidate_session_now(sid(&id))),
                        2 => drop(s.invalidate_user_sessions_now(&UserId::parse(&user).unwrap())),
                        3 => drop(s.cleanup()),
                        4 => clock.advance(Duration::from_secs(1)),
                        5 => drop(s.list_sessions_now(
                            Some(&UserId::parse(&user).unwrap()),
                            Page::default(),
                        )),
                        6 => drop(s.update_permissions_now(
                            sid(&id),
                            PermissionList::parse(["w"]).unwrap(),
                            None,
                        )),
                        7 if i % 90 == 7 => drop(s.clear_all_sessions()),
                        _ => drop(s.store_permissions_now(
                            sid(&id),
                            session(&user, &["read", "write"], Some(2)),
                        )),
                    }
                }
            });
        }
    });
    s.assert_consistent();
    for u in 0..5 {
        let user = UserId::parse(&format!("u{u}")).unwrap();
        let listed = s.list_sessions_now(Some(&user), Page::default());
        for id in &listed {
            assert_eq!(s.get_permissions_now(id).unwrap().user_id, user);
        }
    }
}

#[test]
fn debug_output_shows_no_session_ids() {
    let (s, _) = store();
    s.store_permissions_now(sid("secret_session_id"), session("u", &["read"], None))
        .unwrap();
    let debug = format!("{s:?}");
    assert!(debug.contains("MemoryStore") && !debug.contains("secret_session_id"));
}

#[test]
fn per_shard_interners_keep_ids_apart_across_stores_updates_and_clears() {
    let (s, _) = store();
    // Sessions spread over every shard, each holding a different slice of a shared vocabulary, so
    // the same string gets different ids in different shards.
    let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let perms_of = |i: usize| -> Vec<&str> {
        (0..7)
            .map(|k| names[(i * 3 + k * 5) % names.len()].as_str())
            .collect()
    };
    for i in 0..500 {
        s.store_permissions_now(sid(&format!("s{i}")), session("u", &perms_of(i), None))
            .unwrap();
    }
    assert!(s.inner.interned() > names.len(), "interned once per shard");
    for i in 0..500 {
        let name_of_id = format!("s{i}");
        let id = sid(&name_of_id);
        let held = perms_of(i);
        for name in &names {
            assert_eq!(
                s.check_permission_now(id, perm(name)),
                held.contains(&name.as_str())
            );
        }
        let data = s.get_permissions_now(id).unwrap();
        assert_eq!(data.permissions.to_strings(), held);
    }
    assert!(s.update_permissions_now(
        sid("s7"),
        PermissionList::parse(["fresh", "p0"]).unwrap(),
        None
    ));
    assert!(!s.update_permissions_now(
        sid("missing"),
        PermissionList::parse(["never"]).unwrap(),
        None
    ));
    let interned = s.inner.interned();
    assert!(s.check_permission_now(sid("s7"), perm("fresh")));
    assert!(!s.check_permission_now(sid("s8"), perm("fresh")));
    assert!(!s.check_permission_now(sid("s7"), perm("never")));
    assert_eq!(s.clear_all_sessions(), 500);
    assert_eq!(
        s.inner.interned(),
        interned,
        "clearing keeps interned strings"
    );
    s.store_permissions_now(sid("s7"), session("u", &["p1"], None))
        .unwrap();
    assert!(s.check_permission_now(sid("s7"), perm("p1")));
    assert!(!s.check_permission_now(sid("s7"), perm("fresh")));
}

#[test]
fn inline_and_boxed_ids_and_permission_sets_round_trip() {
    let (store, _) = store();
    let short = "session_abcdefghijklmnopqrstuv"; // 30 bytes: inline
    let long = format!("session_{}", "x".repeat(43)); // 51 bytes: boxed
    let few = ["e", "a", "d", "b", "c"]; // five: inline
    let many = ["z", "y", "x", "w", "v", "u"]; // six: boxed
    for (id, perms) in [(short, &few[..]), (long.as_str(), &many[..])] {
        store
            .store_permissions_now(sid(id), session("u", perms, Some(60)))
            .unwrap();
        for p in perms {
            assert!(store.check_permission_now(sid(id), perm(p)), "{id} {p}");
        }
        assert!(!store.check_permission_now(sid(id), perm("absent")));
        let data = store.get_permissions_now(sid(id)).unwrap();
        assert_eq!(data.permissions.to_strings(), perms, "stored order kept");
    }
    // Swapping the sizes moves each session between the inline and the boxed form.
    assert!(store.update_permissions_now(sid(short), PermissionList::parse(many).unwrap(), None));
    assert!(store.update_permissions_now(sid(&long), PermissionList::parse(few).unwrap(), None));
    assert_eq!(
        store
            .get_permissions_now(sid(short))
            .unwrap()
            .permissions
            .to_strings(),
        many
    );
    assert_eq!(
        store
            .get_permissions_now(sid(&long))
            .unwrap()
            .permissions
            .to_strings(),
        few
    );
    assert!(
        store.check_permission_now(sid(short), perm("u"))
            && !store.check_permission_now(sid(short), perm("a"))
    );
    store.assert_consistent();
}
