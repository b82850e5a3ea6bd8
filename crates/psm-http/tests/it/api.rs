//! The routes over a real socket: admin session operations, the caller's own sessions, users,
//! health, metrics, OpenAPI, throttling, timeouts and an unavailable store.

use std::time::Duration;

use psm_http::HttpConfig;
use serde_json::{Value, json};

use crate::support::{
    admin_token, auth, cheap_config, keys, problem, serve, serve_with, user_token,
};

#[tokio::test]
async fn every_manager_operation_is_served_to_an_admin() {
    let server = serve().await;
    let admin = admin_token(&server).await;
    let c = &server.client;
    let url = |p: &str| server.url(p);

    let r = c
        .put(url("/v1/sessions/sess_1"))
        .bearer_auth(&admin)
        .json(&json!({"user_id": "alice", "permissions": ["read", "write"], "ttl": 100, "metadata": {"ip": "1.2.3.4"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["stored"], true);

    let info: Value = c
        .get(url("/v1/sessions/sess_1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user_id"], "alice");
    assert_eq!(info["permissions"], json!(["read", "write"]));
    assert_eq!(info["metadata"], json!({"ip": "1.2.3.4"}));
    assert_eq!(info["ttl_remaining"], 100);
    assert_eq!(info["has_ttl"], true);
    assert_eq!(info["provider"], "memory");

    let check = |perm: &'static str| {
        c.get(url(&format!("/v1/sessions/sess_1/check?permission={perm}")))
            .bearer_auth(&admin)
            .send()
    };
    assert_eq!(
        check("read").await.unwrap().json::<Value>().await.unwrap()["granted"],
        true
    );
    assert_eq!(
        check("admin").await.unwrap().json::<Value>().await.unwrap()["granted"],
        false
    );
    let many: Value = c
        .post(url("/v1/sessions/sess_1/check"))
        .bearer_auth(&admin)
        .json(&json!({"permissions": ["write", "nope"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        many,
        json!({"results": [{"permission": "write", "granted": true}, {"permission": "nope", "granted": false}], "all": false, "any": true})
    );

    let r = c
        .put(url("/v1/sessions/sess_1/permissions"))
        .bearer_auth(&admin)
        .json(&json!({"permissions": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let data: Value = c
        .get(url("/v1/sessions/sess_1/permissions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data["permissions"], json!(["admin"]));
    let r = c
        .post(url("/v1/sessions/sess_1/extend"))
        .bearer_auth(&admin)
        .json(&json!({"ttl": 5000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let info = server
        .api
        .manager()
        .get_session_info("sess_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.ttl_remaining, Some(5000));

    // create_session under a limit: the second is refused with policy reject.
    let create = |policy: &'static str| {
        c.post(url("/v1/sessions"))
            .bearer_auth(&admin)
            .json(&json!({"user_id": "bob", "permissions": ["read"], "max_sessions": 1, "policy": policy}))
            .send()
    };
    let r = create("reject").await.unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    problem(
        create("reject").await.unwrap(),
        409,
        "session_limit_reached",
    )
    .await;
    let second: Value = create("evict_oldest").await.unwrap().json().await.unwrap();
    assert_eq!(second["evicted"], json!([first["session_id"]]));
    let r = c
        .post(url("/v1/sessions"))
        .bearer_auth(&admin)
        .json(&json!({"user_id": "bob", "permissions": ["read"], "session_id": "sess_1"}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "session_exists").await;

    let list: Value = c
        .get(url("/v1/sessions?user_id=bob"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"], json!([second["session_id"]]));
    let all: Value = c
        .get(url("/v1/sessions?limit=10"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // sess_1, bob's, and the admin's login session.
    assert_eq!(all["sessions"].as_array().unwrap().len(), 3, "{all}");

    let cleaned: Value = c
        .post(url("/v1/sessions/cleanup"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleaned["count"], 0);
    let ended: Value = c
        .delete(url("/v1/users/bob/sessions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["count"], 1);

    assert_eq!(
        c.delete(url("/v1/sessions/sess_1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = c
        .delete(url("/v1/sessions/sess_1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 404, "session_not_found").await;
    let r = c
        .get(url("/v1/sessions/sess_1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 404, "session_not_found").await;
    server.stop().await;
}

#[tokio::test]
async fn admin_routes_refuse_callers_without_psm_admin() {
    let server = serve().await;
    let user = user_token(&server, "plain@example.com", &["read"]).await;
    let m = server.api.manager();
    m.store_permissions("sess_x", "someone", ["read"], Some(100), None)
        .await
        .unwrap();
    let before = m.get_session_info("sess_x").await.unwrap().unwrap();
    let store = json!({"user_id": "someone", "permissions": ["admin"]});
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/v1/sessions", None),
        (
            "POST",
            "/v1/sessions",
            Some(json!({"user_id": "someone", "permissions": ["admin"]})),
        ),
        ("POST", "/v1/sessions/cleanup", None),
        ("GET", "/v1/sessions/sess_x", None),
        ("PUT", "/v1/sessions/sess_x", Some(store)),
        ("DELETE", "/v1/sessions/sess_x", None),
        ("GET", "/v1/sessions/sess_x/permissions", None),
        (
            "PUT",
            "/v1/sessions/sess_x/permissions",
            Some(json!({"permissions": ["admin"]})),
        ),
        (
            "POST",
            "/v1/sessions/sess_x/extend",
            Some(json!({"ttl": 9999})),
        ),
        ("GET", "/v1/sessions/sess_x/check?permission=read", None),
        (
            "POST",
            "/v1/sessions/sess_x/check",
            Some(json!({"permissions": ["read"]})),
        ),
        ("GET", "/v1/users", None),
        (
            "POST",
            "/v1/users",
            Some(
                json!({"username": "mallory", "email": "m@example.com", "password": "long enough pw", "permissions": ["psm:admin"]}),
            ),
        ),
        ("DELETE", "/v1/users/someone", None),
        ("DELETE", "/v1/users/someone/sessions", None),
    ];
    for (method, path, body) in cases {
        let mut r = server
            .client
            .request(method.parse().unwrap(), server.url(path))
            .bearer_auth(&user);
        if let Some(b) = body {
            r = r.json(&b);
        }
        problem(r.send().await.unwrap(), 403, "forbidden").await;
    }
    // Nothing changed.
    let after = m.get_session_info("sess_x").await.unwrap().unwrap();
    assert_eq!(after.data, before.data);
    assert!(after.ttl_remaining <= Some(100));
    assert_eq!(
        m.list_sessions(Some("someone"), 10, 0).await.unwrap().len(),
        1
    );
    assert!(
        server
            .api
            .auth()
            .get_user_by_email("m@example.com")
            .await
            .unwrap()
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn callers_see_and_end_only_their_own_sessions() {
    let server = serve().await;
    let alice = user_token(&server, "alice@example.com", &["read"]).await;
    let bob = user_token(&server, "bob@example.com", &["read"]).await;
    let c = &server.client;
    let me: Value = c
        .get(server.url("/v1/me"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["permissions"], json!(["read"]));
    let mine: Value = c
        .get(server.url("/v1/me/sessions"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["session_id"], me["session_id"]);
    assert_eq!(mine[0]["metadata"]["created_via"], "auth");

    let bob_sid = server
        .api
        .auth()
        .token_service()
        .verify_access(&bob)
        .unwrap()
        .sid;
    let r = c
        .delete(server.url(&format!("/v1/me/sessions/{bob_sid}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(r, 404, "session_not_found").await;
    assert!(
        server
            .api
            .manager()
            .get_permissions(&bob_sid)
            .await
            .unwrap()
            .is_some()
    );

    // Alice reads herself, not Bob.
    let alice_id = me["user_id"].as_str().unwrap();
    let bob_id = server
        .api
        .auth()
        .token_service()
        .verify_access(&bob)
        .unwrap()
        .sub;
    let r = c
        .get(server.url(&format!("/v1/users/{alice_id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "alice@example.com");
    assert!(user.get("password_hash").is_none(), "{user}");
    let r = c
        .get(server.url(&format!("/v1/users/{bob_id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    let sid = me["session_id"].as_str().unwrap();
    let r = c
        .delete(server.url(&format!("/v1/me/sessions/{sid}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(server.url("/v1/me"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(r, 401, "token_revoked").await;
    server.stop().await;
}

#[tokio::test]
async fn admins_create_read_and_delete_users() {
    let server = serve().await;
    let admin = admin_token(&server).await;
    let c = &server.client;
    let r = c
        .post(server.url("/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "ops", "email": "ops@example.com", "password": "another long one", "permissions": ["psm:admin", "read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["permissions"], json!(["psm:admin", "read"]));
    let id = user["id"].as_str().unwrap();
    let r = c
        .post(server.url("/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "ops2", "email": "OPS@example.com", "password": "another long one", "permissions": ["read"]}))
        .send()
        .await
        .unwrap();
    problem(r, 409, "user_exists").await;
    let listed: Value = c
        .get(server.url("/v1/users?permission=psm:admin"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let emails: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["admin@example.com", "ops@example.com"]);
    assert!(listed["users"][0].get("password_hash").is_none());
    let page: Value = c
        .get(server.url("/v1/users?limit=1&offset=1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    assert_eq!(page["users"][0]["id"], id);
    let got: Value = c
        .get(server.url(&format!("/v1/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["username"], "ops");
    assert_eq!(
        c.delete(server.url(&format!("/v1/users/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let r = c
        .get(server.url(&format!("/v1/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 404, "user_not_found").await;
    let r = c
        .delete(server.url(&format!("/v1/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(r, 404, "user_not_found").await;
    server.stop().await;
}

#[tokio::test]
async fn closed_registration_is_refused() {
    let config = HttpConfig {
        registration: false,
        ..HttpConfig::default()
    };
    let server = serve_with(auth(), config).await;
    let r = server
        .client
        .post(server.url("/v1/auth/register"))
        .json(&json!({"username": "eve", "email": "eve@example.com", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    problem(r, 403, "registration_closed").await;
    server.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_get_429_with_retry_after() {
    let mut config = cheap_config();
    config.throttle.max_failures_per_account = 2;
    let auth = psm::auth::AuthService::memory(keys(), config).unwrap();
    let server = serve_with(auth, HttpConfig::default()).await;
    let _ = user_token(&server, "target@example.com", &["read"]).await;
    let login = || {
        server
            .client
            .post(server.url("/v1/auth/login"))
            .json(&json!({"email": "target@example.com", "password": "wrong password!"}))
            .send()
    };
    problem(login().await.unwrap(), 401, "invalid_credentials").await;
    problem(login().await.unwrap(), 401, "invalid_credentials").await;
    let r = login().await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body = problem(r, 429, "rate_limited").await;
    assert_eq!(body["retry_after"], retry);
    assert_eq!(body["scope"], "account");
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_its_time_gets_503_request_timeout() {
    let config = HttpConfig {
        request_timeout: Duration::from_millis(1),
        ..HttpConfig::default()
    };
    // Production argon2 cost: a hash takes tens of milliseconds, far past the 1 ms limit.
    let auth = psm::auth::AuthService::memory(keys(), psm::auth::AuthConfig::default()).unwrap();
    let server = serve_with(auth, config).await;
    let r = server
        .client
        .post(server.url("/v1/auth/register"))
        .json(
            &json!({"username": "slow", "email": "slow@example.com", "password": "long enough pw"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, 503, "request_timeout").await;
    // Counted like any other answer.
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("psm_http_requests_total{")
                && l.contains("route=\"/v1/auth/register\"")
                && l.contains("status=\"503\"")),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_closed_store_gets_503_and_readyz_says_which() {
    let server = serve().await;
    let admin = admin_token(&server).await;
    let ready: Value = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"status": "ok", "checks": {"sessions": "ok", "users": "ok"}})
    );
    server.api.manager().close().await.unwrap();
    let r = server
        .client
        .get(server.url("/v1/sessions/sess_1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, 503, "provider_not_initialized").await;
    let r = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["checks"]["sessions"], "provider_not_initialized");
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_store_operations_by_provider() {
    let server = serve().await;
    let admin = admin_token(&server).await;
    for _ in 0..3 {
        let r = server
            .client
            .get(server.url("/v1/sessions/sess_q/check?permission=read"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("psm_http_requests_total{")
                && l.contains("route=\"/v1/sessions/{id}/check\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter in\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(!text.contains("sess_q"), "a session id became a label");
    assert!(
        text.contains("psm_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("psm_store_operations_total{")
                && l.contains("provider=\"memory\"")
                && l.contains("operation=\"check_permission\"")
                && l.contains("result=\"ok\"")
                && l.ends_with(" 3")),
        "{text}"
    );
    assert!(
        text.contains("psm_store_operation_duration_seconds_bucket{"),
        "{text}"
    );
    // The guard's reads are counted too: the admin's session, once per request.
    assert!(
        text.lines()
            .any(|l| l.starts_with("psm_store_operations_total{")
                && l.contains("operation=\"get_permissions\"")
                && l.ends_with(" 3")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("operation=\"verify_access_strict\"")),
        "{text}"
    );
    // Unmatched routes are counted, under one label.
    let _ = server
        .client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("psm_http_requests_total{")
                && l.contains("route=\"unmatched\"")
                && l.contains("status=\"404\"")),
        "{text}"
    );
    assert!(!text.contains("/no/such/route"));
    server.stop().await;
}

#[tokio::test]
async fn logins_are_counted_as_auth_operations_and_never_cached() {
    let server = serve().await;
    let _ = user_token(&server, "counted@example.com", &["read"]).await;
    let r = server
        .client
        .post(server.url("/v1/auth/login"))
        .json(&json!({"email": "counted@example.com", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = server
        .client
        .post(server.url("/v1/auth/login"))
        .json(&json!({"email": "counted@example.com", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    // The credential was a password: no bearer challenge.
    assert!(r.headers().get("www-authenticate").is_none());
    problem(r, 401, "invalid_credentials").await;
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for result in ["ok", "invalid_credentials"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("psm_auth_operations_total{")
                    && l.contains("operation=\"login\"")
                    && l.contains(&format!("result=\"{result}\""))),
            "{text}"
        );
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("psm_store_operations_total{")
                && l.contains("operation=\"login\""))
    );
    server.stop().await;
}

#[tokio::test]
async fn registrations_are_throttled_per_client() {
    let config = HttpConfig {
        registrations_per_client: 2,
        ..HttpConfig::default()
    };
    let server = serve_with(auth(), config).await;
    let register = |n: u32| {
        server
            .client
            .post(server.url("/v1/auth/register"))
            .json(&json!({"username": format!("flood{n}"), "email": format!("flood{n}@example.com"), "password": "long enough pw"}))
            .send()
    };
    assert_eq!(register(1).await.unwrap().status(), 201);
    assert_eq!(register(2).await.unwrap().status(), 201);
    let r = register(3).await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3000, "{retry}");
    let body = problem(r, 429, "rate_limited").await;
    assert_eq!(body["scope"], "client");
    assert!(
        server
            .api
            .auth()
            .get_user_by_email("flood3@example.com")
            .await
            .unwrap()
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_are_trusted_only_when_configured_and_only_the_proxys() {
    for (trust, header, expected) in [
        (true, "203.0.113.9, 198.51.100.7", Some("198.51.100.7")),
        (true, "not-an-ip<script>", Some("127.0.0.1")),
        (false, "198.51.100.7", Some("127.0.0.1")),
    ] {
        let config = HttpConfig {
            trust_forwarded_for: trust,
            ..HttpConfig::default()
        };
        let server = serve_with(auth(), config).await;
        let _ = user_token(&server, "fwd@example.com", &["read"]).await;
        let pair: Value = server
            .client
            .post(server.url("/v1/auth/login"))
            .header("x-forwarded-for", header)
            .json(&json!({"email": "fwd@example.com", "password": "a long enough password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sid = pair["session_id"].as_str().unwrap();
        let data = server
            .api
            .manager()
            .get_permissions(sid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            data.metadata.as_map()["ip"].as_str(),
            expected,
            "trust={trust} header={header}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_problem_responses() {
    let server = serve().await;
    let doc: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/auth/register", &["post"][..]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/refresh", &["post"]),
        ("/v1/auth/logout", &["post"]),
        ("/v1/auth/revoke-all", &["post"]),
        ("/v1/me", &["get"]),
        ("/v1/me/sessions", &["get"]),
        ("/v1/me/sessions/{id}", &["delete"]),
        ("/v1/sessions", &["get", "post"]),
        ("/v1/sessions/cleanup", &["post"]),
        ("/v1/sessions/{id}", &["get", "put", "delete"]),
        ("/v1/sessions/{id}/permissions", &["get", "put"]),
        ("/v1/sessions/{id}/extend", &["post"]),
        ("/v1/sessions/{id}/check", &["get", "post"]),
        ("/v1/users", &["get", "post"]),
        ("/v1/users/{id}", &["get", "delete"]),
        ("/v1/users/{id}/sessions", &["delete"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for method in methods {
            let op = &paths[path][*method];
            assert!(op.is_object(), "{method} {path} missing");
            if !path.starts_with("/healthz")
                && !path.starts_with("/readyz")
                && !path.starts_with("/metrics")
            {
                let r = &op["responses"];
                for status in ["400", "500", "503"] {
                    assert!(
                        r[status]["content"]["application/problem+json"].is_object(),
                        "{method} {path} lacks a {status} problem"
                    );
                }
            }
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    server.stop().await;
}
