//! Table behaviour: quota, stats, clearing, shared clones, index invariants, records.

use std::{sync::Arc, thread, time::Duration};

use psm_core::{
    Clock, ErrorKind, LimitPolicy, ManualClock, Metadata, NewSession, Page, PermissionList,
    PermissionRef, SessionId, SessionIdRef, SessionLimit, Timestamp, Ttl, UserId,
};

use super::{SessionRecord, SessionTable, users::split};
use crate::TableConfig;

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

fn store_with(config: TableConfig) -> (SessionTable, ManualClock) {
    let clock = ManualClock::at_2024();
    (
        SessionTable::with_clock(config, Arc::new(clock.clone())),
        clock,
    )
}

fn store() -> (SessionTable, ManualClock) {
    store_with(TableConfig {
        ..TableConfig::default()
    })
}

fn limited(max: usize) -> (SessionTable, ManualClock) {
    store_with(TableConfig {
        max_sessions: Some(max),
        ..TableConfig::default()
    })
}

impl SessionTable {
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
                        .iter()
                        .any(|e| e == (s.cold.created, super::users::handle(si, slot))),
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
                for (created, h) in index.iter() {
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
    assert_eq!(a.stats().total_sessions_created, 1);
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
    let (s, clock) = store_with(TableConfig::default());
    s.store_permissions_now(sid("short"), session("u", &["read"], Some(10)))
        .unwrap();
    s.store_permissions_now(sid("long"), session("u", &["read"], Some(100)))
        .unwrap();
    s.store_permissions_now(sid("forever"), session("v", &["read"], None))
        .unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        s.stats().total_sessions,
        3,
        "expired sessions stay until swept"
    );
    assert_eq!(s.stats().active_sessions, 2);
    assert_eq!(s.cleanup(), 1);
    assert_eq!(s.cleanup(), 0);
    assert_eq!(s.stats().total_sessions, 2);
    assert_eq!(s.stats().total_sessions_expired, 1);
    s.assert_consistent();
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
        s.stats().total_sessions,
        2,
        "the expired session was purged to make room"
    );
    assert_eq!(s.stats().storage_limit, Some(2));
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
    assert_eq!(s.stats().active_sessions, 10);
    s.assert_consistent();
}

#[test]
fn stats_count_the_seed_fields() {
    let (s, clock) = store_with(TableConfig {
        max_sessions: Some(100),
        ..TableConfig::default()
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
    let st = s.stats();
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
}

#[test]
fn operations_are_counted_only_with_monitoring() {
    let (s, _) = store_with(TableConfig {
        enable_monitoring: false,
        ..TableConfig::default()
    });
    s.store_permissions_now(sid("a"), session("u", &["read"], None))
        .unwrap();
    assert!(s.check_permission_now(sid("a"), perm("read")));
    s.list_sessions_now(None, Page::default());
    assert_eq!(s.stats().total_operations, 0);
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
    assert_eq!(s.stats().total_sessions, 0);
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
    let (s, clock) = store_with(TableConfig {
        shards: 8,
        ..TableConfig::default()
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
    let (s, clock) = store_with(TableConfig {
        shards: 4,
        ..TableConfig::default()
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
    assert!(debug.contains("SessionTable") && !debug.contains("secret_session_id"));
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

fn record(
    id: &str,
    user: &str,
    perms: &[&str],
    created: i64,
    expires: Option<i64>,
) -> SessionRecord {
    let base = ManualClock::at_2024().now();
    SessionRecord {
        id: SessionId::parse(id).unwrap(),
        user_id: UserId::parse(user).unwrap(),
        permissions: PermissionList::parse(perms).unwrap(),
        metadata: Metadata::empty(),
        created_at: base.plus_secs(created),
        updated_at: base.plus_secs(created + 1),
        expires_at: expires.map(|e| base.plus_secs(e)),
    }
}

#[test]
fn export_restore_round_trip_keeps_exact_times_and_stored_order() {
    let (a, clock) = store();
    let long = format!("session_{}", "x".repeat(40));
    let many = ["z", "b", "y", "a", "x", "c", "w"];
    a.store_permissions_now(
        sid("short"),
        session("u", &["write", "read", "admin"], Some(100)).with_metadata(
            Metadata::from_value(serde_json::json!({"ip": "10.0.0.1", "n": [1, 2]})).unwrap(),
        ),
    )
    .unwrap();
    clock.advance(Duration::from_micros(1_234_567));
    a.store_permissions_now(sid(&long), session("v", &many, None))
        .unwrap();
    clock.advance(Duration::from_secs(3));
    assert!(a.update_permissions_now(
        sid("short"),
        PermissionList::parse(["b", "a"]).unwrap(),
        None
    ));
    let short = a.export(sid("short")).unwrap();
    assert_eq!(short.permissions.to_strings(), ["b", "a"]);
    assert!(short.updated_at > short.created_at);
    assert_eq!(
        short.expires_at,
        Some(short.created_at.plus_secs(100)),
        "update without a ttl keeps the expiry"
    );
    let boxed = a.export(sid(&long)).unwrap();
    assert_eq!(boxed.permissions.to_strings(), many);
    assert_eq!(boxed.expires_at, None);
    assert!(a.export(sid("missing")).is_none());

    // Into another table with another clock: everything as exported, nothing re-stamped.
    let other_clock = ManualClock::new(Timestamp::from_unix_secs(1));
    let b = SessionTable::with_clock(TableConfig::default(), Arc::new(other_clock));
    b.restore(short.clone()).unwrap();
    b.restore(boxed.clone()).unwrap();
    assert_eq!(b.export(sid("short")).unwrap(), short);
    assert_eq!(b.export(sid(&long)).unwrap(), boxed);
    let data = b.get_permissions_now(sid("short")).unwrap();
    assert_eq!(
        (data.created_at, data.updated_at, &data.metadata),
        (short.created_at, short.updated_at, &short.metadata)
    );
    assert!(b.check_permission_now(sid(&long), perm("y")));
    assert!(!b.check_permission_now(sid(&long), perm("read")));
    assert_eq!(
        b.stats().total_sessions_created,
        0,
        "a restore is not a creation"
    );
    assert_eq!(b.len(), 2);
    b.assert_consistent();
}

#[test]
fn restore_replaces_and_moves_the_user_index() {
    let (s, _) = limited(2);
    s.restore(record("s1", "alice", &["read"], 10, None))
        .unwrap();
    s.restore(record("s2", "alice", &["read"], 5, None))
        .unwrap();
    let alice = UserId::parse("alice").unwrap();
    let bob = UserId::parse("bob").unwrap();
    assert_eq!(
        s.list_sessions_now(Some(&alice), Page::default()),
        [
            SessionId::parse("s2").unwrap(),
            SessionId::parse("s1").unwrap()
        ],
        "listed by created_at, whatever the restore order"
    );
    // Replacing is not a new session, even with the quota full.
    let moved = record("s1", "bob", &["write"], 1, Some(1_000));
    s.restore(moved.clone()).unwrap();
    assert_eq!(s.export(sid("s1")).unwrap(), moved);
    assert_eq!(
        s.list_sessions_now(Some(&alice), Page::default()),
        [SessionId::parse("s2").unwrap()]
    );
    assert_eq!(
        s.list_sessions_now(Some(&bob), Page::default()),
        [SessionId::parse("s1").unwrap()]
    );
    assert!(!s.check_permission_now(sid("s1"), perm("read")));
    s.assert_consistent();
}

#[test]
fn restore_stores_an_expired_record_expired_and_a_new_session_purges_it_for_the_quota() {
    let (s, clock) = limited(1);
    let now_secs = clock.now().as_unix_secs() - ManualClock::at_2024().now().as_unix_secs();
    let dead = record("dead", "u", &["read"], now_secs - 20, Some(now_secs - 10));
    s.restore(dead.clone()).unwrap();
    assert_eq!(
        s.export(sid("dead")).unwrap(),
        dead,
        "exported although expired"
    );
    assert!(s.get_permissions_now(sid("dead")).is_none());
    assert!(!s.check_permission_now(sid("dead"), perm("read")));
    assert_eq!(s.len(), 1);
    s.restore(record("live", "u", &["read"], now_secs, None))
        .unwrap();
    assert_eq!(s.len(), 2, "a restore purges nothing");
    s.assert_consistent();
    s.invalidate_session_now(sid("live"));
    s.store_permissions_now(sid("new"), session("u", &["read"], None))
        .unwrap();
    assert!(s.export(sid("dead")).is_none(), "purged to make room");
    s.assert_consistent();
}

/// A table reopened with a lower `max_sessions` than it was filled under keeps every stored
/// session; new sessions are refused until it is back under the quota.
#[test]
fn restore_ignores_the_quota_and_new_sessions_wait_until_under_it() {
    let (s, _) = limited(2);
    for i in 0..4 {
        s.restore(record(&format!("s{i}"), "u", &["read"], i, None))
            .unwrap();
    }
    assert_eq!(s.len(), 4);
    s.assert_consistent();
    assert_eq!(s.stats().total_sessions, 4);

    let refused = |s: &SessionTable, id: &str| {
        let quota = |e: psm_core::Error| e.kind() == ErrorKind::StorageQuotaExceeded;
        let limit = SessionLimit::new(5, LimitPolicy::Reject).unwrap();
        s.store_permissions_now(sid(id), session("v", &["read"], None))
            .is_err_and(quota)
            && s.create_session_now(sid(id), session("v", &["read"], None), limit)
                .is_err_and(quota)
    };
    assert!(refused(&s, "new"), "over quota: new sessions are refused");
    // Replacing (by store or by restore) is not a new session.
    s.store_permissions_now(sid("s0"), session("u", &["write"], None))
        .unwrap();
    s.restore(record("s1", "w", &["write"], 1, None)).unwrap();
    assert_eq!(s.len(), 4);
    s.assert_consistent();

    assert!(s.invalidate_session_now(sid("s0")));
    assert!(s.invalidate_session_now(sid("s1")));
    assert!(refused(&s, "new"), "at the quota: still refused");
    s.assert_consistent();
    assert!(s.invalidate_session_now(sid("s2")));
    s.store_permissions_now(sid("new"), session("v", &["read"], None))
        .unwrap();
    assert_eq!(s.len(), 2);
    assert!(refused(&s, "other"), "the quota holds again");
    s.assert_consistent();
}

#[test]
fn restoring_many_sessions_of_one_user_in_reverse_order_lists_them_in_order() {
    let (s, clock) = store();
    let n = 5_000;
    s.reserve(n as usize);
    for i in (0..n).rev() {
        s.restore(record(&format!("s{i}"), "u", &["read"], i, None))
            .unwrap();
    }
    let user = UserId::parse("u").unwrap();
    let listed = s.list_sessions_now(Some(&user), Page::new(10_000, 0).unwrap());
    let want: Vec<SessionId> = (0..n)
        .map(|i| SessionId::parse(&format!("s{i}")).unwrap())
        .collect();
    assert_eq!(listed, want);
    s.assert_consistent();
    // A later ordinary write lands in order too.
    clock.advance(Duration::from_secs(n as u64));
    s.store_permissions_now(sid("newest"), session("u", &["read"], None))
        .unwrap();
    let last = s.list_sessions_now(Some(&user), Page::new(1, n as u64).unwrap());
    assert_eq!(last, [SessionId::parse("newest").unwrap()]);
    s.assert_consistent();
}

#[test]
fn remove_takes_live_and_expired_sessions() {
    let (s, clock) = store();
    s.store_permissions_now(sid("short"), session("u", &["read"], Some(5)))
        .unwrap();
    s.store_permissions_now(sid("long"), session("u", &["read"], None))
        .unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(s.len(), 2);
    assert!(s.remove(sid("short")), "an expired session is removed too");
    assert_eq!(s.stats().total_sessions_expired, 1);
    assert!(!s.remove(sid("short")));
    assert!(s.remove(sid("long")));
    assert!(!s.remove(sid("never")));
    assert!(s.is_empty());
    assert!(
        s.list_sessions_now(Some(&UserId::parse("u").unwrap()), Page::default())
            .is_empty()
    );
    s.assert_consistent();
}

#[test]
fn user_session_ids_include_expired_sessions() {
    let (s, clock) = store();
    s.store_permissions_now(sid("a"), session("u", &["read"], Some(5)))
        .unwrap();
    s.store_permissions_now(sid("b"), session("u", &["read"], None))
        .unwrap();
    s.store_permissions_now(sid("c"), session("other", &["read"], None))
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let user = UserId::parse("u").unwrap();
    let mut ids = s.user_session_ids(&user);
    ids.sort();
    assert_eq!(
        ids,
        [
            SessionId::parse("a").unwrap(),
            SessionId::parse("b").unwrap()
        ]
    );
    assert_eq!(
        s.list_sessions_now(Some(&user), Page::default()),
        [SessionId::parse("b").unwrap()],
        "listing still hides the expired one"
    );
    assert!(
        s.user_session_ids(&UserId::parse("nobody").unwrap())
            .is_empty()
    );
}

#[test]
fn for_each_live_session_skips_expired_ones() {
    let (s, clock) = store_with(TableConfig {
        shards: 4,
        ..TableConfig::default()
    });
    for i in 0..100 {
        let ttl = (i % 4 == 0).then_some(5);
        s.store_permissions_now(sid(&format!("s{i}")), session("u", &["read", "write"], ttl))
            .unwrap();
    }
    clock.advance(Duration::from_secs(5));
    let mut seen = Vec::new();
    s.for_each_live_session(|r| seen.push(r));
    assert_eq!(seen.len(), 75);
    assert_eq!(s.len(), 100);
    for r in &seen {
        assert_eq!(Some(r), s.export(&r.id).as_ref());
        assert_eq!(r.permissions.to_strings(), ["read", "write"]);
    }
    let mut ids: Vec<_> = seen.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 75);
}

#[test]
fn the_provider_name_is_configurable_and_a_weak_handle_does_not_keep_the_table() {
    let clock = ManualClock::at_2024();
    let s = SessionTable::with_clock(
        TableConfig {
            provider: "file",
            max_sessions: Some(1),
            ..TableConfig::default()
        },
        Arc::new(clock),
    );
    s.store_permissions_now(sid("a"), session("u", &["read"], Some(10)))
        .unwrap();
    let info = s.get_session_info_now(sid("a")).unwrap();
    assert_eq!(
        (info.provider.as_str(), info.ttl_remaining),
        ("file", Some(10))
    );
    let e = s
        .store_permissions_now(sid("b"), session("u", &["read"], None))
        .unwrap_err();
    assert!(e.message().contains("file store"), "{}", e.message());
    assert_eq!(SessionTable::default().config().provider, "memory");
    let weak = s.downgrade();
    let upgraded = weak.upgrade().unwrap();
    assert!(upgraded.check_permission_now(sid("a"), perm("read")));
    drop(upgraded);
    drop(s);
    assert!(weak.upgrade().is_none());
    assert!(format!("{weak:?}").contains("false"));
}

#[test]
fn for_each_live_session_may_write_to_the_table() {
    let (s, _) = store_with(TableConfig {
        shards: 1,
        ..TableConfig::default()
    });
    for i in 0..3 {
        s.store_permissions_now(sid(&format!("s{i}")), session("u", &["read"], None))
            .unwrap();
    }
    let mut seen = Vec::new();
    s.for_each_live_session(|r| {
        // Would deadlock if `f` ran under the shard's lock.
        assert!(s.remove(&r.id));
        s.restore(SessionRecord {
            id: SessionId::parse(&format!("copy_{}", r.id.as_str())).unwrap(),
            ..r.clone()
        })
        .unwrap();
        seen.push(r.id);
    });
    seen.sort();
    let want: Vec<SessionId> = (0..3)
        .map(|i| SessionId::parse(&format!("s{i}")).unwrap())
        .collect();
    assert_eq!(seen, want, "each shard is walked as of its copy");
    assert_eq!(s.len(), 3);
    assert!(s.export(sid("copy_s1")).is_some());
    s.assert_consistent();
}
