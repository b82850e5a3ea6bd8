//! A private `redis-server` is stopped in the middle of a load and started again on the same port:
//! during the outage calls fail fast with a retryable `ProviderConnection` (never hang, never
//! panic); after the restart the same store succeeds again within 2 seconds.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use psm_core::{
    ErrorKind, NewSession, PermissionList, PermissionRef, PermissionStore, SessionIdRef, UserId,
};
use psm_redis::{RedisConfig, RedisStorage};

/// A redis-server child, killed on drop.
struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the fault test (it starts its own server)");
        let s = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_fails_fast_and_recovers() {
    let port = free_port();
    let mut server = Server::start(port);
    let timeout = Duration::from_millis(500);
    let config = RedisConfig {
        port: server.port,
        socket_timeout: timeout,
        socket_connect_timeout: timeout,
        key_prefix: "psmfault:".into(),
        ..RedisConfig::default()
    };
    let storage = RedisStorage::connect(config).await.unwrap();
    let store = storage.sessions();
    let id = SessionIdRef::parse("fault_session").unwrap();
    let read = PermissionRef::parse("read").unwrap();
    store
        .store_permissions(
            id,
            NewSession::new(
                UserId::parse("u").unwrap(),
                PermissionList::parse(["read"]).unwrap(),
            ),
        )
        .await
        .unwrap();

    // Load: 8 tasks checking in a loop; none may panic or hang.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = SessionIdRef::parse("fault_session").unwrap();
                let read = PermissionRef::parse("read").unwrap();
                let r =
                    tokio::time::timeout(Duration::from_secs(5), store.check_permission(id, read))
                        .await
                        .expect("a check hung during the outage");
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "the load must run before the outage"
    );

    server.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), store.check_permission(id, read))
            .await
            .expect("a call hung during the outage");
        let elapsed = started.elapsed();
        let e = r.expect_err("a call during the outage must fail");
        assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{e}");
        assert!(e.is_retryable());
        assert!(
            elapsed <= timeout * 2 + Duration::from_millis(300),
            "failing took {elapsed:?}, more than the configured timeout"
        );
    }

    let _server = Server::start(port);
    let restarted = Instant::now();
    loop {
        // The data is gone (no persistence); any answer proves the store works again.
        match store.check_permission(id, read).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(
                    restarted.elapsed() < Duration::from_secs(2),
                    "the store did not recover within 2 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(restarted.elapsed() < Duration::from_secs(2));
    store
        .store_permissions(
            id,
            NewSession::new(
                UserId::parse("u").unwrap(),
                PermissionList::parse(["read"]).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(store.check_permission(id, read).await.unwrap());
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("a load task panicked");
    }
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "the load must have seen the outage"
    );
    storage.close().await.unwrap();
}
