//! The blocking API: from plain threads, from inside async runtimes of both flavors, from many threads.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use psm::{ErrorKind, LimitPolicy, ManualClock, PermissionStorageManager, SessionLimit, blocking};
use serde_json::json;

use crate::support::{Watchdog, Wrapped, expect_kind};

const LIMIT: Duration = Duration::from_secs(60);

/// Both kinds: the in-process store (served on the calling thread) and a store behind the port
/// (served through the manager's runtime).
fn both() -> Vec<blocking::PermissionStorageManager> {
    let clock = ManualClock::at_2024();
    vec![
        blocking::PermissionStorageManager::new("memory", json!({})).unwrap(),
        blocking::PermissionStorageManager::from_store(Wrapped::new(&clock)).unwrap(),
    ]
}

/// Every method once, with results checked.
fn exercise(m: &blocking::PermissionStorageManager) {
    assert!(m.is_initialized());
    assert!(
        m.store_permissions(
            "s1",
            "alice",
            ["read", "write"],
            Some(100),
            Some(json!({"ip": "::1"}))
        )
        .unwrap()
    );
    assert!(m.check_permission("s1", "read").unwrap());
    assert!(!m.check_permission("s1", "admin").unwrap());
    assert_eq!(
        m.check_permissions("s1", ["write", "admin"])
            .unwrap()
            .get("write"),
        Some(true)
    );
    assert_eq!(
        m.get_permissions("s1").unwrap().unwrap().user_id.as_str(),
        "alice"
    );
    assert_eq!(
        m.get_session_info("s1").unwrap().unwrap().ttl_remaining,
        Some(100)
    );
    assert!(m.update_permissions("s1", ["admin"], None).unwrap());
    assert!(m.check_permission("s1", "admin").unwrap());
    assert!(m.extend_session_ttl("s1", 50).unwrap());
    assert_eq!(m.list_sessions(Some("alice"), 10, 0).unwrap(), ["s1"]);
    assert_eq!(
        m.list_sessions_page(None, psm::Page::default()).unwrap(),
        ["s1"]
    );
    let limit = SessionLimit::new(1, LimitPolicy::EvictOldest).unwrap();
    let created = m
        .create_session("bob", ["read"], None, None, limit)
        .unwrap();
    let again = m
        .create_session_with_id("bob2", "bob", ["read"], None, None, limit)
        .unwrap();
    assert_eq!(again.evicted, [created.id]);
    assert_eq!(m.cleanup_expired_sessions().unwrap(), 0);
    assert!(m.invalidate_session("s1").unwrap());
    assert_eq!(m.invalidate_user_sessions("bob").unwrap(), 1);
    expect_kind(
        m.check_permission("bad id", "read"),
        ErrorKind::InvalidSessionId,
    );
    expect_kind(
        m.store_permissions("s2", "alice", ["read"], Some(0), None),
        ErrorKind::Ttl,
    );
    expect_kind(m.list_sessions(None, 0, 0), ErrorKind::Validation);
    assert!(
        m.list_sessions(None, 10, 0).unwrap().is_empty(),
        "rejected calls stored nothing"
    );
}

#[test]
fn works_from_a_plain_thread() {
    let _watchdog = Watchdog::start("works_from_a_plain_thread", LIMIT);
    for m in both() {
        exercise(&m);
        m.close().unwrap();
        assert!(!m.is_initialized());
        expect_kind(
            m.check_permission("s1", "read"),
            ErrorKind::ProviderNotInitialized,
        );
        m.initialize().unwrap();
        assert!(m.is_initialized());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_current_thread_runtime() {
    let _watchdog = Watchdog::start("works_inside_a_current_thread_runtime", LIMIT);
    // Built, used and dropped on the runtime's only thread: nothing panics or hangs.
    for m in both() {
        exercise(&m);
        m.close().unwrap();
    }
    // The runtime is still usable afterwards.
    tokio::task::yield_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_runtime() {
    let _watchdog = Watchdog::start("works_inside_a_multi_thread_runtime", LIMIT);
    for m in both() {
        exercise(&m);
    }
    // Also from a task and from the runtime's blocking pool.
    let task = tokio::spawn(async {
        for m in both() {
            exercise(&m);
        }
    });
    task.await.unwrap();
    tokio::task::spawn_blocking(|| both().iter().for_each(exercise))
        .await
        .unwrap();
}

#[test]
fn many_threads_share_one_manager() {
    let _watchdog = Watchdog::start("many_threads_share_one_manager", LIMIT);
    for m in both() {
        let m = Arc::new(m);
        thread::scope(|scope| {
            for t in 0..8 {
                let m = Arc::clone(&m);
                scope.spawn(move || {
                    for i in 0..200 {
                        let id = format!("t{t}_{i}");
                        m.store_permissions(&id, &format!("user{t}"), ["read"], None, None)
                            .unwrap();
                        assert!(m.check_permission(&id, "read").unwrap());
                        assert!(!m.check_permission(&id, "write").unwrap());
                    }
                });
            }
        });
        for t in 0..8 {
            assert_eq!(
                m.list_sessions(Some(&format!("user{t}")), 1000, 0)
                    .unwrap()
                    .len(),
                200
            );
        }
        assert_eq!(m.list_sessions(None, 10_000, 0).unwrap().len(), 1600);
    }
}

#[test]
fn builder_scope_and_properties() {
    let _watchdog = Watchdog::start("builder_scope_and_properties", LIMIT);
    let m = PermissionStorageManager::builder()
        .url("memory://?max_sessions=5")
        .default_ttl(None)
        .build_blocking()
        .unwrap();
    assert_eq!(m.provider_name(), "memory");
    assert_eq!(m.default_ttl(), None);
    assert!(!m.supports_ttl() && !m.capabilities().native_ttl);
    assert!(m.memory().is_some());
    assert_eq!(m.store().provider_name(), "memory");
    assert_eq!(
        blocking::PermissionStorageManager::available_providers(),
        crate::support::builtins(&[])
    );
    let granted = m
        .scope(|m| {
            m.store_permissions("s1", "u", ["r"], None, None)?;
            m.check_permission("s1", "r")
        })
        .unwrap();
    assert!(granted);

    if !cfg!(feature = "redis") {
        let e = expect_kind(
            blocking::PermissionStorageManager::from_url("redis://localhost"),
            ErrorKind::ProviderNotSupported,
        );
        assert!(e.message().contains("enable the `redis` feature of `psm`"));
    }
    expect_kind(
        blocking::PermissionStorageManager::builder()
            .default_ttl(Some(0))
            .build_blocking(),
        ErrorKind::Ttl,
    );
    let m = blocking::PermissionStorageManager::from_builder(
        PermissionStorageManager::builder().auto_initialize(false),
    )
    .unwrap();
    expect_kind(m.get_permissions("s1"), ErrorKind::ProviderNotInitialized);
    assert!(format!("{m:?}").contains("blocking"));
}

#[tokio::test(flavor = "current_thread")]
async fn build_errors_inside_a_runtime_do_not_panic() {
    let _watchdog = Watchdog::start("build_errors_inside_a_runtime_do_not_panic", LIMIT);
    // The runtime started for a manager that then fails to build is shut down inside this async context.
    expect_kind(
        blocking::PermissionStorageManager::new("nosuch", json!({})),
        ErrorKind::ProviderNotSupported,
    );
    expect_kind(
        blocking::PermissionStorageManager::from_url("::"),
        ErrorKind::ProviderConfiguration,
    );
}

/// RULES.md: the blocking manager keeps one runtime for its life, so the memory store's background
/// sweeper keeps running between calls, with no call driving it.
#[test]
fn background_sweeper_keeps_running() {
    let clock = ManualClock::at_2024();
    let m = PermissionStorageManager::builder()
        .provider("memory")
        .config(json!({ "cleanup_interval": 1 }))
        .clock(Arc::new(clock.clone()))
        .default_ttl(Some(1))
        .build_blocking()
        .unwrap();
    m.store_permissions("s1", "alice", ["read"], None, None)
        .unwrap();
    m.store_permissions("s2", "alice", ["read"], Some(3600), None)
        .unwrap();
    let stats = || m.memory().unwrap().memory_stats();
    assert_eq!(stats().total_sessions, 2);
    clock.advance(Duration::from_secs(2));
    // The sweeper ticks every real second; give it a generous bound on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats().total_sessions != 1 {
        assert!(
            Instant::now() < deadline,
            "the sweeper never removed the expired session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats().total_sessions_expired, 1);
    assert!(m.check_permission("s2", "read").unwrap());
}
