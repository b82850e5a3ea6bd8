//! A tour of the manager on the in-process provider: `cargo run -p psm --example quickstart`.
//!
//! It stores, checks, lists, updates, renews, expires and invalidates sessions, enforces a per-user
//! session limit, shows a validation error and prints the store's statistics, one line per step.

// An example's job is to print what happens; the workspace lint against stdout is for library code.
#![allow(clippy::print_stdout)]

use std::{error::Error, time::Duration};

use psm::{LimitPolicy, PermissionStorageManager, SessionId, SessionLimit};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    println!("== setup");
    let manager = PermissionStorageManager::builder()
        .url("memory://?max_sessions=10000&cleanup_interval=60")
        .default_ttl(Some(3600))
        .build()
        .await?;
    println!(
        "manager ready: provider={} initialized={} native ttl={} default ttl={:?}; providers in this build: {:?}",
        manager.provider_name(),
        manager.is_initialized(),
        manager.supports_ttl(),
        manager.default_ttl(),
        PermissionStorageManager::available_providers(),
    );

    println!("\n== store sessions");
    let meta = json!({"ip": "192.168.1.10", "user_agent": "quickstart"});
    manager
        .store_permissions("alice_laptop", "alice", ["read", "write"], None, Some(meta))
        .await?;
    manager
        .store_permissions("alice_phone", "alice", ["read"], Some(600), None)
        .await?;
    manager
        .store_permissions("bob_desktop", "bob", ["read", "write", "admin"], None, None)
        .await?;
    println!("stored alice_laptop (default ttl), alice_phone (ttl 600 s) and bob_desktop");

    println!("\n== check permissions");
    for (session, permission) in [
        ("alice_laptop", "write"),
        ("alice_phone", "write"),
        ("bob_desktop", "admin"),
    ] {
        let granted = manager.check_permission(session, permission).await?;
        println!("{session} has {permission:?}: {granted}");
    }
    let checks = manager
        .check_permissions("bob_desktop", ["read", "write", "delete"])
        .await?;
    println!(
        "bob_desktop, several at once: {}",
        serde_json::to_string(&checks)?
    );

    println!("\n== list sessions");
    println!(
        "all sessions: {:?}",
        manager.list_sessions(None, 100, 0).await?
    );
    println!(
        "alice's sessions: {:?}",
        manager.list_sessions(Some("alice"), 100, 0).await?
    );
    println!(
        "all sessions, page 1 of size 2: {:?}",
        manager.list_sessions(None, 2, 0).await?
    );
    println!(
        "all sessions, page 2 of size 2: {:?}",
        manager.list_sessions(None, 2, 2).await?
    );

    println!("\n== session info");
    let info = manager
        .get_session_info("alice_laptop")
        .await?
        .ok_or("alice_laptop is missing")?;
    println!(
        "alice_laptop: user={} permissions={:?} has_ttl={} ttl_remaining={:?} s metadata={}",
        info.data.user_id,
        info.data.permissions.to_strings(),
        info.has_ttl,
        info.ttl_remaining,
        info.data.metadata.to_json(),
    );

    println!("\n== update permissions (expiry kept)");
    let before = manager
        .get_session_info("alice_phone")
        .await?
        .and_then(|i| i.ttl_remaining);
    manager
        .update_permissions("alice_phone", ["read", "comment"], None)
        .await?;
    let after = manager
        .get_session_info("alice_phone")
        .await?
        .ok_or("alice_phone is missing")?;
    println!(
        "alice_phone now has {:?}; ttl_remaining before={before:?} s after={:?} s (no ttl given, expiry unchanged)",
        after.data.permissions.to_strings(),
        after.ttl_remaining,
    );

    println!("\n== extend (renew) a session");
    manager.extend_session_ttl("alice_phone", 7200).await?;
    let renewed = manager
        .get_session_info("alice_phone")
        .await?
        .and_then(|i| i.ttl_remaining);
    println!("alice_phone renewed to 7200 s: ttl_remaining={renewed:?} s");

    println!("\n== a session expiring");
    manager
        .store_permissions("short_lived", "dave", ["read"], Some(1), None)
        .await?;
    println!(
        "short_lived (ttl 1 s) has read: {}",
        manager.check_permission("short_lived", "read").await?
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    println!(
        "after 1.1 s: has read: {}; info: {:?}",
        manager.check_permission("short_lived", "read").await?,
        manager
            .get_session_info("short_lived")
            .await?
            .map(|i| i.ttl_remaining),
    );

    println!("\n== invalidate");
    println!(
        "invalidate bob_desktop: {}",
        manager.invalidate_session("bob_desktop").await?
    );
    println!(
        "invalidate bob_desktop again: {}",
        manager.invalidate_session("bob_desktop").await?
    );
    println!(
        "invalidate all of alice's sessions: removed {}",
        manager.invalidate_user_sessions("alice").await?
    );

    println!("\n== cleanup");
    manager
        .store_permissions("also_short", "dave", ["read"], Some(1), None)
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    println!(
        "expired sessions removed: {}",
        manager.cleanup_expired_sessions().await?
    );

    println!("\n== concurrent-session limit");
    let evict = SessionLimit::new(2, LimitPolicy::EvictOldest)?;
    for device in ["laptop", "phone", "tablet"] {
        let session = manager
            .create_session(
                "carol",
                ["read"],
                None,
                Some(json!({"device": device})),
                evict,
            )
            .await?;
        let evicted: Vec<String> = session.evicted.iter().map(short).collect();
        println!(
            "carol logs in on her {device}: session {} (evicted: {evicted:?})",
            short(&session.id)
        );
    }
    println!(
        "carol's live sessions: {}",
        manager.list_sessions(Some("carol"), 100, 0).await?.len()
    );
    let reject = SessionLimit::new(2, LimitPolicy::Reject)?;
    match manager
        .create_session("carol", ["read"], None, None, reject)
        .await
    {
        Ok(_) => println!("unexpected: a third session was accepted"),
        Err(e) => println!(
            "with policy reject, a third login fails: {} ({})",
            e.kind(),
            e.message()
        ),
    }

    println!("\n== validation");
    match manager.check_permission("../etc/passwd", "read").await {
        Ok(granted) => println!("unexpected: accepted a bad session id ({granted})"),
        Err(e) => println!("bad session id rejected before any I/O: {e}"),
    }
    match manager
        .store_permissions("ok_id", "erin", ["read"], Some(0), None)
        .await
    {
        Ok(_) => println!("unexpected: accepted a ttl of 0"),
        Err(e) => println!(
            "ttl 0 rejected: kind={} validation={}",
            e.kind(),
            e.is_validation()
        ),
    }

    println!("\n== memory stats");
    if let Some(memory) = manager.memory() {
        println!("{}", serde_json::to_string_pretty(&memory.memory_stats())?);
    }

    manager.close().await?;
    println!("\nclosed: initialized={}", manager.is_initialized());
    Ok(())
}

/// The start of a generated id: enough to tell sessions apart in the output, without printing a
/// whole credential.
fn short(id: &SessionId) -> String {
    let s = id.as_str();
    s.get(..14)
        .map_or_else(|| s.to_owned(), |start| format!("{start}…"))
}
