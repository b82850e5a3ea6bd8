//! The whole flow a client goes through: register, login, check, refresh, reuse detection,
//! logout, revoke-all; on the embedded default and on Redis plus PostgreSQL.

use serde_json::json;

use crate::support::{Backing, Client, s};

const ADMIN: (&str, &str) = ("admin@example.com", "the admin's passphrase");
const ALICE: (&str, &str) = ("alice@example.com", "alice's passphrase");

async fn full_flow(backing: &Backing) {
    backing.create_admin(ADMIN.0, ADMIN.1).await;
    let (settings, serve) = backing.settings();
    let server = psm_cli::serve::start(&settings, &serve).await.unwrap();
    let c = Client::new(server.addr());

    let (status, ready) = c.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");

    // Register, and the ways registration and login fail.
    let register = json!({"username": "alice", "email": ALICE.0, "password": ALICE.1});
    let (status, alice) = c
        .call("POST", "/v1/auth/register", None, Some(register.clone()))
        .await;
    assert_eq!(status, 201, "{alice}");
    assert_eq!(alice["permissions"], json!(["psm:user"]));
    assert!(alice.get("password_hash").is_none());
    let (status, body) = c
        .call("POST", "/v1/auth/register", None, Some(register))
        .await;
    assert_eq!((status, s(&body, "code")), (409, "user_exists"));
    let (status, body) = c
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": ALICE.0, "password": "not the password"})),
        )
        .await;
    assert_eq!((status, s(&body, "code")), (401, "invalid_credentials"));

    // Login, and the session's permissions as the caller and an admin see them.
    let pair1 = c.login(ALICE.0, ALICE.1).await;
    assert_eq!(pair1["token_type"], "Bearer");
    let access1 = s(&pair1, "access_token");
    let (status, me) = c.call("GET", "/v1/me", Some(access1), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], alice["id"]);
    let sid1 = s(&me, "session_id").to_owned();
    let admin = c.login(ADMIN.0, ADMIN.1).await;
    let admin_token = s(&admin, "access_token");
    for (permission, granted) in [("psm:user", true), ("psm:admin", false)] {
        let (status, check) = c
            .call(
                "GET",
                &format!("/v1/sessions/{sid1}/check?permission={permission}"),
                Some(admin_token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{check}");
        assert_eq!(check["granted"], granted, "{permission}");
    }
    let (status, body) = c
        .call("GET", &format!("/v1/sessions/{sid1}"), Some(access1), None)
        .await;
    assert_eq!((status, s(&body, "code")), (403, "forbidden"));

    // Refresh rotates; presenting a spent refresh token again ends the session.
    let (status, pair2) = c
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": pair1["refresh_token"]})),
        )
        .await;
    assert_eq!(status, 200, "{pair2}");
    assert_ne!(pair2["refresh_token"], pair1["refresh_token"]);
    assert_eq!(pair2["session_id"], sid1.as_str());
    let access2 = s(&pair2, "access_token");
    assert_eq!(c.call("GET", "/v1/me", Some(access2), None).await.0, 200);
    let (status, body) = c
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": pair1["refresh_token"]})),
        )
        .await;
    assert_eq!((status, s(&body, "code")), (401, "token_reuse_detected"));
    let (status, _) = c.call("GET", "/v1/me", Some(access2), None).await;
    assert_eq!(status, 401, "the reused family's session must be over");
    let (status, _) = c
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": pair2["refresh_token"]})),
        )
        .await;
    assert_eq!(status, 401);

    // Logout ends the session and its family.
    let pair3 = c.login(ALICE.0, ALICE.1).await;
    let (status, _) = c
        .call(
            "POST",
            "/v1/auth/logout",
            None,
            Some(json!({"refresh_token": pair3["refresh_token"]})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        c.call("GET", "/v1/me", Some(s(&pair3, "access_token")), None)
            .await
            .0,
        401
    );
    let (status, _) = c
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": pair3["refresh_token"]})),
        )
        .await;
    assert_eq!(status, 401);

    // Revoke-all ends every session of the user.
    let pair4 = c.login(ALICE.0, ALICE.1).await;
    let pair5 = c.login(ALICE.0, ALICE.1).await;
    let (status, mine) = c
        .call(
            "GET",
            "/v1/me/sessions",
            Some(s(&pair4, "access_token")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
    let (status, revoked) = c
        .call(
            "POST",
            "/v1/auth/revoke-all",
            Some(s(&pair4, "access_token")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["count"].as_u64().unwrap() >= 2, "{revoked}");
    for pair in [&pair4, &pair5] {
        assert_eq!(
            c.call("GET", "/v1/me", Some(s(pair, "access_token")), None)
                .await
                .0,
            401
        );
        let (status, _) = c
            .call(
                "POST",
                "/v1/auth/refresh",
                None,
                Some(json!({"refresh_token": pair["refresh_token"]})),
            )
            .await;
        assert_eq!(status, 401);
    }
    let alice_id = s(&alice, "id");
    let (status, list) = c
        .call(
            "GET",
            &format!("/v1/sessions?user_id={alice_id}"),
            Some(admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"], json!([]));
    server.stop().await.unwrap();

    // Accounts survive a restart of the server.
    let server = psm_cli::serve::start(&settings, &serve).await.unwrap();
    let c = Client::new(server.addr());
    let again = c.login(ALICE.0, ALICE.1).await;
    assert_eq!(
        c.call("GET", "/v1/me", Some(s(&again, "access_token")), None)
            .await
            .0,
        200
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_on_the_embedded_default() {
    let backing = Backing::file();
    full_flow(&backing).await;
    // The signing secret was made once, in the data directory, for the owner only.
    let key = backing.data_dir().join("jwt-hs256.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_on_redis_and_postgres() {
    let backing = Backing::servers();
    full_flow(&backing).await;
    backing.cleanup().await;
}
