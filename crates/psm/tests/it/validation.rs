//! Every entry point that takes outside values rejects bad ones with a typed error and changes nothing.

use psm::{ErrorKind, LimitPolicy, SessionLimit};
use serde_json::{Value, json};

use crate::support::{both_managers, expect_kind};

fn deep(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "k": inner }))
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_change() {
    use ErrorKind::{InvalidPermission, InvalidSessionId, InvalidUserId, Ttl, Validation};
    let long = "x".repeat(256);
    let too_many: Vec<String> = (0..4097).map(|i| format!("p{i}")).collect();
    let empty: [&str; 0] = [];
    let huge_meta = json!({ "blob": "x".repeat(70 * 1024) });
    let limit = SessionLimit::new(5, LimitPolicy::Reject).unwrap();

    for (m, _) in both_managers().await {
        m.store_permissions("s1", "alice", ["read"], Some(60), Some(json!({"a": 1})))
            .await
            .unwrap();
        let before = m.get_session_info("s1").await.unwrap().unwrap();

        // store_permissions: every argument, aimed at the existing session so a change would show.
        expect_kind(
            m.store_permissions("bad id", "alice", ["x"], None, None)
                .await,
            InvalidSessionId,
        );
        expect_kind(
            m.store_permissions(&long, "alice", ["x"], None, None).await,
            InvalidSessionId,
        );
        expect_kind(
            m.store_permissions("", "alice", ["x"], None, None).await,
            InvalidSessionId,
        );
        expect_kind(
            m.store_permissions("s1", "", ["x"], None, None).await,
            InvalidUserId,
        );
        expect_kind(
            m.store_permissions("s1", "a\u{0}b", ["x"], None, None)
                .await,
            InvalidUserId,
        );
        expect_kind(
            m.store_permissions("s1", &long, ["x"], None, None).await,
            InvalidUserId,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["ok", "not ok"], None, None)
                .await,
            InvalidPermission,
        );
        expect_kind(
            m.store_permissions("s1", "alice", [""], None, None).await,
            InvalidPermission,
        );
        expect_kind(
            m.store_permissions("s1", "alice", empty, None, None).await,
            Validation,
        );
        expect_kind(
            m.store_permissions("s1", "alice", &too_many, None, None)
                .await,
            Validation,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], Some(0), None)
                .await,
            Ttl,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], Some(31_536_001), None)
                .await,
            Ttl,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], None, Some(json!([1])))
                .await,
            Validation,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], None, Some(json!("text")))
                .await,
            Validation,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], None, Some(huge_meta.clone()))
                .await,
            Validation,
        );
        expect_kind(
            m.store_permissions("s1", "alice", ["x"], None, Some(deep(40)))
                .await,
            Validation,
        );

        // Reads, checks and the rest.
        expect_kind(m.check_permission("s/1", "read").await, InvalidSessionId);
        expect_kind(m.check_permission("s1", "re ad").await, InvalidPermission);
        expect_kind(m.check_permission("s1", "").await, InvalidPermission);
        expect_kind(
            m.check_permissions("s1", ["read", "\t"]).await,
            InvalidPermission,
        );
        expect_kind(m.check_permissions("s1", empty).await, Validation);
        expect_kind(m.check_permissions("s 1", ["read"]).await, InvalidSessionId);
        expect_kind(m.get_permissions("../s1").await, InvalidSessionId);
        expect_kind(m.get_session_info("s1?").await, InvalidSessionId);
        expect_kind(m.invalidate_session("s1 ").await, InvalidSessionId);
        expect_kind(
            m.update_permissions("s1", ["admin", "bad perm"], None)
                .await,
            InvalidPermission,
        );
        expect_kind(m.update_permissions("s1", empty, None).await, Validation);
        expect_kind(m.update_permissions("s1", ["admin"], Some(0)).await, Ttl);
        expect_kind(
            m.update_permissions("s.1", ["admin"], None).await,
            InvalidSessionId,
        );
        expect_kind(m.extend_session_ttl("s1", 0).await, Ttl);
        expect_kind(m.extend_session_ttl("s1", u64::MAX).await, Ttl);
        expect_kind(m.extend_session_ttl("", 10).await, InvalidSessionId);
        expect_kind(m.list_sessions(None, 0, 0).await, Validation);
        expect_kind(m.list_sessions(None, 10_001, 0).await, Validation);
        expect_kind(m.list_sessions(Some(""), 10, 0).await, InvalidUserId);
        expect_kind(m.invalidate_user_sessions("").await, InvalidUserId);
        expect_kind(m.invalidate_user_sessions("a\nb").await, InvalidUserId);

        // Session creation.
        expect_kind(
            m.create_session("", ["read"], None, None, limit).await,
            InvalidUserId,
        );
        expect_kind(
            m.create_session("alice", ["r w"], None, None, limit).await,
            InvalidPermission,
        );
        expect_kind(
            m.create_session("alice", ["read"], Some(0), None, limit)
                .await,
            Ttl,
        );
        expect_kind(
            m.create_session("alice", ["read"], None, Some(json!(3)), limit)
                .await,
            Validation,
        );
        expect_kind(
            m.create_session_with_id("s 2", "alice", ["read"], None, None, limit)
                .await,
            InvalidSessionId,
        );
        expect_kind(SessionLimit::new(0, LimitPolicy::EvictOldest), Validation);

        // Nothing changed: same record, same ttl, no other session.
        let after = m.get_session_info("s1").await.unwrap().unwrap();
        assert_eq!(after, before);
        assert_eq!(m.list_sessions(None, 100, 0).await.unwrap(), ["s1"]);
    }
}

#[tokio::test]
async fn validation_errors_carry_operation_and_provider() {
    for (m, _) in both_managers().await {
        let e = expect_kind(
            m.check_permission("s1", "bad perm").await,
            ErrorKind::InvalidPermission,
        );
        assert_eq!(e.detail("operation"), Some("check_permission"));
        assert_eq!(e.detail("provider"), Some(m.provider_name()));
        assert!(e.is_validation());
        // A full session id never appears in an error.
        let secret = "session_ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123";
        let e = expect_kind(m.get_permissions(secret).await, ErrorKind::InvalidSessionId);
        assert!(!e.to_string().contains("ABCDEFGHIJ"), "{e}");
    }
}
