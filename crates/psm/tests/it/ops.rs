//! Every operation through the manager, on the in-process fast path and on the port path alike.

use psm::{ErrorKind, LimitPolicy, SessionLimit};
use serde_json::json;

use crate::support::{both_managers, expect_kind};

#[tokio::test]
async fn store_check_get_and_invalidate() {
    for (m, _) in both_managers().await {
        let meta = json!({"ip": "10.0.0.1", "nested": {"k": [1, 2]}});
        assert!(
            m.store_permissions(
                "s1",
                "alice",
                ["read", "write", "read"],
                Some(60),
                Some(meta.clone())
            )
            .await
            .unwrap()
        );
        assert!(m.check_permission("s1", "read").await.unwrap());
        assert!(
            !m.check_permission("s1", "READ").await.unwrap(),
            "checks are case-sensitive"
        );
        assert!(!m.check_permission("missing", "read").await.unwrap());

        let checks = m
            .check_permissions("s1", ["write", "admin", "read"])
            .await
            .unwrap();
        let entries: Vec<_> = checks
            .entries()
            .iter()
            .map(|(p, g)| (p.as_str(), *g))
            .collect();
        assert_eq!(entries, [("write", true), ("admin", false), ("read", true)]);

        let data = m.get_permissions("s1").await.unwrap().unwrap();
        assert_eq!(data.user_id.as_str(), "alice");
        assert_eq!(data.permissions.to_strings(), ["read", "write"]);
        assert_eq!(
            data.metadata.to_value(),
            meta,
            "metadata is stored exactly as given"
        );

        assert!(m.invalidate_session("s1").await.unwrap());
        assert!(!m.invalidate_session("s1").await.unwrap());
        assert_eq!(m.get_permissions("s1").await.unwrap(), None);
        assert!(!m.check_permission("s1", "read").await.unwrap());
    }
}

#[tokio::test]
async fn store_is_an_upsert() {
    for (m, _) in both_managers().await {
        m.store_permissions("s1", "alice", ["read"], None, None)
            .await
            .unwrap();
        m.store_permissions("s1", "bob", ["admin"], None, None)
            .await
            .unwrap();
        let data = m.get_permissions("s1").await.unwrap().unwrap();
        assert_eq!(data.user_id.as_str(), "bob");
        assert_eq!(data.permissions.to_strings(), ["admin"]);
        assert!(
            m.list_sessions(Some("alice"), 100, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(m.list_sessions(Some("bob"), 100, 0).await.unwrap(), ["s1"]);
    }
}

#[tokio::test]
async fn list_pages_through_every_session_once() {
    for (m, clock) in both_managers().await {
        for i in 0..7 {
            // Distinct creation times, so the per-user order is by creation.
            clock.advance(std::time::Duration::from_secs(1));
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            m.store_permissions(&format!("s{i}"), user, ["read"], None, None)
                .await
                .unwrap();
        }
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let page = m.list_sessions(None, 3, offset).await.unwrap();
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            all.extend(page);
        }
        all.sort();
        assert_eq!(all, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
        assert_eq!(
            m.list_sessions(Some("alice"), 100, 0).await.unwrap(),
            ["s0", "s2", "s4", "s6"]
        );
        assert_eq!(
            m.list_sessions(Some("alice"), 2, 1).await.unwrap(),
            ["s2", "s4"]
        );
        assert_eq!(
            m.list_sessions_page(Some("bob"), psm::Page::new(10, 2).unwrap())
                .await
                .unwrap(),
            ["s5"]
        );
    }
}

#[tokio::test]
async fn create_session_enforces_the_limit() {
    for (m, clock) in both_managers().await {
        let reject = SessionLimit::new(2, LimitPolicy::Reject).unwrap();
        let a = m
            .create_session("carol", ["read"], None, None, reject)
            .await
            .unwrap();
        clock.advance(std::time::Duration::from_secs(1));
        let b = m
            .create_session("carol", ["read"], None, None, reject)
            .await
            .unwrap();
        assert!(a.id.as_str().starts_with("session_") && a.id != b.id);
        assert!(a.evicted.is_empty());
        expect_kind(
            m.create_session("carol", ["read"], None, None, reject)
                .await,
            ErrorKind::SessionLimitReached,
        );
        assert_eq!(
            m.list_sessions(Some("carol"), 100, 0).await.unwrap().len(),
            2
        );

        clock.advance(std::time::Duration::from_secs(1));
        let evict = SessionLimit::new(2, LimitPolicy::EvictOldest).unwrap();
        let c = m
            .create_session_with_id("mine", "carol", ["write"], None, None, evict)
            .await
            .unwrap();
        assert_eq!(c.id, "mine");
        assert_eq!(c.evicted, std::slice::from_ref(&a.id));
        assert!(!m.check_permission(a.id.as_str(), "read").await.unwrap());

        let e = expect_kind(
            m.create_session_with_id("mine", "carol", ["write"], None, None, evict)
                .await,
            ErrorKind::SessionExists,
        );
        assert_eq!(e.detail("operation"), Some("create_session"));

        assert_eq!(m.invalidate_user_sessions("carol").await.unwrap(), 2);
        assert!(
            m.list_sessions(Some("carol"), 100, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn in_process_extras_are_reachable_without_downcasting() {
    let m = psm::PermissionStorageManager::new("memory", json!({}))
        .await
        .unwrap();
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    let memory = m.memory().expect("the memory provider exposes its store");
    assert_eq!(memory.clear_all_sessions(), 1);
    assert_eq!(m.get_permissions("s1").await.unwrap(), None);

    // A store instance handed over keeps the fast path and the extras.
    let store = psm::memory::MemoryStore::new(psm::memory::MemoryConfig::default());
    let m = psm::PermissionStorageManager::from_store(store.clone())
        .await
        .unwrap();
    assert!(m.memory().is_some());
    m.store_permissions("s1", "alice", ["read"], None, None)
        .await
        .unwrap();
    assert!(
        psm::PermissionStore::check_permission(
            &store,
            psm::SessionIdRef::parse("s1").unwrap(),
            psm::PermissionRef::parse("read").unwrap()
        )
        .await
        .unwrap()
    );

    let wrapped = crate::support::dyn_manager(&psm::ManualClock::at_2024()).await;
    assert!(wrapped.memory().is_none());
    assert_eq!(wrapped.provider_name(), "wrapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_limit() {
    for (m, _) in both_managers().await {
        let limit = SessionLimit::new(3, LimitPolicy::Reject).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(
                    async move { m.create_session("dora", ["read"], None, None, limit).await },
                )
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::SessionLimitReached, "{e}"),
            }
        }
        assert_eq!(created, 3);
        assert_eq!(
            m.list_sessions(Some("dora"), 100, 0).await.unwrap().len(),
            3
        );
    }
}
