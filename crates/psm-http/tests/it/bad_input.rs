//! Bad input of every kind gets a 4xx problem document, and changes nothing.

use psm_http::HttpConfig;
use serde_json::{Value, json};

use crate::support::{admin_token, auth, problem, serve_with};

const BODY_LIMIT: usize = 4096;

/// The stored state the bad requests must leave alone.
async fn snapshot(server: &crate::support::Server) -> (Value, Vec<String>) {
    let m = server.api.manager();
    let data = m.get_permissions("sess_a").await.unwrap().unwrap();
    let ids = m.list_sessions(None, 100, 0).await.unwrap();
    (
        serde_json::to_value(data).unwrap(),
        ids.iter().map(|i| i.as_str().to_owned()).collect(),
    )
}

#[tokio::test]
async fn every_bad_request_is_a_problem_and_changes_nothing() {
    let config = HttpConfig {
        body_limit: BODY_LIMIT,
        ..HttpConfig::default()
    };
    let server = serve_with(auth(), config).await;
    let admin = admin_token(&server).await;
    server
        .api
        .manager()
        .store_permissions("sess_a", "u1", ["read"], Some(100), Some(json!({"k": "v"})))
        .await
        .unwrap();
    let before = snapshot(&server).await;
    let c = &server.client;
    let put = |body: String, content_type: &str| {
        c.put(server.url("/v1/sessions/sess_a"))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json_ct = "application/json";

    // Bodies: malformed, wrong media type, oversized, unknown field, wrong types, bad values.
    problem(
        put("{\"user_id\":".into(), json_ct).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    problem(
        put("not json at all".into(), json_ct).await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    let valid = json!({"user_id": "u2", "permissions": ["write"]}).to_string();
    problem(
        put(valid.clone(), "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    let r = c
        .put(server.url("/v1/sessions/sess_a"))
        .bearer_auth(&admin)
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    problem(r, 415, "unsupported_media_type").await;
    let big = json!({"user_id": "u2", "permissions": ["write"], "metadata": {"pad": "x".repeat(BODY_LIMIT)}});
    problem(
        put(big.to_string(), json_ct).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    let unknown = json!({"user_id": "u2", "permissions": ["write"], "tll": 5});
    let body = problem(
        put(unknown.to_string(), json_ct).await.unwrap(),
        400,
        "invalid_body",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("tll"), "{body}");
    let secret = json!({"user_id": "u2", "permissions": ["w"], "ttl": "hunter2-secret"});
    let body = problem(
        put(secret.to_string(), json_ct).await.unwrap(),
        400,
        "invalid_body",
    )
    .await;
    assert!(
        !body["detail"].as_str().unwrap().contains("hunter2"),
        "{body}"
    );
    for (bad, code) in [
        (
            json!({"user_id": 5, "permissions": ["write"]}),
            "invalid_body",
        ),
        (json!({"permissions": ["write"]}), "invalid_body"),
        (
            json!({"user_id": "u2", "permissions": "write"}),
            "invalid_body",
        ),
        (
            json!({"user_id": "u2", "permissions": ["two words"]}),
            "invalid_permission",
        ),
        (json!({"user_id": "u2", "permissions": []}), "validation"),
        (
            json!({"user_id": "u2", "permissions": ["w"], "ttl": 0}),
            "invalid_ttl",
        ),
        (
            json!({"user_id": "u2", "permissions": ["w"], "ttl": -1}),
            "invalid_body",
        ),
        (
            json!({"user_id": "u2", "permissions": ["w"], "ttl": 31_536_001}),
            "invalid_ttl",
        ),
        (
            json!({"user_id": "", "permissions": ["w"]}),
            "invalid_user_id",
        ),
        (
            json!({"user_id": "u\u{0007}", "permissions": ["w"]}),
            "invalid_user_id",
        ),
        (
            json!({"user_id": "u2", "permissions": ["w"], "metadata": [1]}),
            "invalid_body",
        ),
    ] {
        let r = put(bad.to_string(), json_ct).await.unwrap();
        problem(r, 400, code).await;
    }
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let r = put(
        json!({"user_id": "u2", "permissions": ["w"], "metadata": deep}).to_string(),
        json_ct,
    )
    .await
    .unwrap();
    problem(r, 400, "validation").await;

    // Authorization: missing, another scheme, empty, garbage.
    let no_auth = c
        .put(server.url("/v1/sessions/sess_a"))
        .json(&json!({"user_id": "u2", "permissions": ["write"]}))
        .send()
        .await
        .unwrap();
    problem(no_auth, 401, "unauthorized").await;
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token abc",
        "bearer x.y.z",
    ] {
        let r = c
            .put(server.url("/v1/sessions/sess_a"))
            .header("authorization", header)
            .json(&json!({"user_id": "u2", "permissions": ["write"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{header}");
    }

    // Path parameters that are not valid ids.
    let long = "a".repeat(256);
    for path in [
        "/v1/sessions/bad%20id",
        "/v1/sessions/semi;colon",
        "/v1/sessions/%C3%A9t%C3%A9",
        &format!("/v1/sessions/{long}"),
    ] {
        let r = c
            .put(server.url(path))
            .bearer_auth(&admin)
            .json(&json!({"user_id": "u2", "permissions": ["write"]}))
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_session_id").await;
        let r = c
            .get(server.url(path))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_session_id").await;
        let r = c
            .delete(server.url(path))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_session_id").await;
    }
    let r = c
        .get(server.url("/v1/users/%FF%FE"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_parameter").await;

    // Query strings.
    for path in [
        "/v1/sessions/sess_a/check",
        "/v1/sessions/sess_a/check?permission=",
        "/v1/sessions/sess_a/check?permission=a%20b",
        "/v1/sessions/sess_a/check?permission=read&extra=1",
    ] {
        let r = c
            .get(server.url(path))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    for path in [
        "/v1/sessions?limit=abc",
        "/v1/sessions?limit=0",
        "/v1/sessions?limit=10001",
        "/v1/sessions?offset=-1",
        "/v1/sessions?user_id=",
    ] {
        let r = c
            .get(server.url(path))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }

    // Auth bodies: a malformed email registers nothing; a login missing a field is refused.
    let r = c
        .post(server.url("/v1/auth/register"))
        .json(&json!({"username": "eve", "email": "not-an-email", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "validation").await;
    let r = c
        .post(server.url("/v1/auth/register"))
        .json(&json!({"username": "eve", "email": "eve@example.com", "password": "short"}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "validation").await;
    let r = c
        .post(server.url("/v1/auth/login"))
        .json(&json!({"email": "eve@example.com"}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_body").await;
    let r = c
        .post(server.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": "garbage"}))
        .send()
        .await
        .unwrap();
    problem(r, 401, "token_invalid").await;
    assert!(
        server
            .api
            .auth()
            .get_user_by_email("eve@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // Unknown routes and methods.
    problem(
        c.get(server.url("/v2/nothing")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let r = c.patch(server.url("/v1/auth/login")).send().await.unwrap();
    problem(r, 405, "method_not_allowed").await;

    assert_eq!(
        snapshot(&server).await,
        before,
        "a bad request changed something"
    );
    server.stop().await;
}
