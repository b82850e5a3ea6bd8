//! `AuthService` end to end: accounts, logins, sessions, tokens and their attacks, on the embedded
//! default (memory stores, and file stores with the `file` feature); `auth_servers` runs the same
//! flow on Redis and PostgreSQL.
#![cfg(feature = "jwt")]

use std::{
    fmt::{self, Write as _},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use psm::{
    ErrorKind, LimitPolicy, ManualClock, PermissionList,
    auth::{
        Argon2Params, AuthConfig, AuthService, ClientInfo, LoginOutcome, LoginRequest,
        RegisterRequest,
    },
    jwt::{Algorithm, KeySet, SigningKey, TokenConfig},
};

use crate::support::expect_kind;

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "Alice@Example.com";

pub(crate) fn keys() -> KeySet {
    KeySet::new(SigningKey::hmac("k1", Algorithm::HS256, &[42u8; 32]).unwrap()).unwrap()
}

/// Argon2 parameters cheap enough for a fast suite (never do this in production).
const CHEAP_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
    allow_below_owasp_minimum: true,
};

/// The defaults with argon2 cheap enough for a fast suite (never do this in production).
pub(crate) fn cheap_config() -> AuthConfig {
    let mut c = AuthConfig::default();
    c.argon2 = CHEAP_ARGON2;
    c
}

fn memory_service(clock: &ManualClock, config: AuthConfig) -> AuthService {
    AuthService::builder()
        .memory()
        .keys(keys())
        .config(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn perms(p: &[&str]) -> PermissionList {
    PermissionList::parse(p).unwrap()
}

fn client(ip: &str) -> ClientInfo {
    ClientInfo {
        ip: Some(ip.to_owned()),
        user_agent: Some("test-agent/1.0".to_owned()),
        key: ip.to_owned(),
    }
}

async fn register(auth: &AuthService, username: &str, email: &str) -> psm::Result<psm::auth::User> {
    auth.register(RegisterRequest {
        username: username.to_owned(),
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        permissions: perms(&["read", "write"]),
    })
    .await
}

async fn login_as(auth: &AuthService, email: &str, password: &str) -> psm::Result<LoginOutcome> {
    auth.login(LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
        client: client("10.0.0.1"),
    })
    .await
}

async fn login(auth: &AuthService) -> LoginOutcome {
    login_as(auth, EMAIL, PASSWORD).await.unwrap()
}

/// Register, login, verify, refresh with rotation and reuse detection, logout, revoke-all, delete.
pub(crate) async fn full_flow(auth: &AuthService) {
    let user = register(auth, "alice", EMAIL).await.unwrap();
    assert!(user.password_hash.as_str().starts_with("$argon2id$"));
    expect_kind(
        register(auth, "alice2", "ALICE@example.COM").await,
        ErrorKind::UserExists,
    );

    // Login creates a session with the user's permissions and the client's metadata.
    let first = login_as(auth, "alice@EXAMPLE.com", PASSWORD).await.unwrap();
    assert_eq!(first.user.id, user.id);
    assert!(first.session_id.as_str().starts_with("sess_"));
    assert!(first.evicted.is_empty());
    let data = auth
        .sessions()
        .get_permissions(&first.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data.user_id, user.id);
    assert_eq!(data.permissions, perms(&["read", "write"]));
    let meta = data.metadata.as_map();
    assert_eq!(meta["ip"], "10.0.0.1");
    assert_eq!(meta["user_agent"], "test-agent/1.0");
    assert_eq!(meta["created_via"], "auth");
    assert!(meta["absolute_expires_at"].as_str().unwrap().ends_with('Z'));

    let claims = auth.verify(&first.tokens.access_token).await.unwrap();
    assert_eq!(claims.sub, user.id.as_str());
    assert_eq!(claims.sid, first.session_id.as_str());

    // Rotation: a new pair, both usable; the old refresh token is consumed.
    let second = auth.refresh(&first.tokens.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.tokens.refresh_token);
    assert_eq!(second.session_id, first.session_id);
    auth.verify(&second.access_token).await.unwrap();

    // Reuse of the consumed token: the family is revoked and the session is gone.
    expect_kind(
        auth.refresh(&first.tokens.refresh_token).await,
        ErrorKind::TokenReuseDetected,
    );
    assert!(
        auth.sessions()
            .get_permissions(&first.session_id)
            .await
            .unwrap()
            .is_none()
    );
    let e = auth.refresh(&second.refresh_token).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::TokenRevoked | ErrorKind::TokenReuseDetected
        ),
        "{e}"
    );
    expect_kind(
        auth.verify(&second.access_token).await,
        ErrorKind::TokenRevoked,
    );

    // Logout ends the session and the family.
    let l = login(auth).await;
    auth.logout(&l.tokens.refresh_token).await.unwrap();
    expect_kind(
        auth.verify(&l.tokens.access_token).await,
        ErrorKind::TokenRevoked,
    );
    assert!(auth.refresh(&l.tokens.refresh_token).await.is_err());
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Revoke-all: every earlier token stops working, every session ends; a new login works.
    let a = login(auth).await;
    let b = login(auth).await;
    assert_eq!(auth.check_active_sessions(&user.id).await.unwrap().len(), 2);
    assert_eq!(auth.revoke_user_tokens(&user.id).await.unwrap(), 2);
    for old in [&a, &b] {
        expect_kind(
            auth.verify(&old.tokens.access_token).await,
            ErrorKind::TokenRevoked,
        );
        assert!(auth.refresh(&old.tokens.refresh_token).await.is_err());
    }
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );
    let c = login(auth).await;
    auth.verify(&c.tokens.access_token).await.unwrap();
    let active = auth.check_active_sessions(&user.id).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].data.user_id, user.id);

    // Delete cascades to sessions, tokens and the cache; the email is free again.
    assert!(
        auth.get_user_by_email(EMAIL)
            .await
            .unwrap()
            .is_some_and(|u| u.id == user.id)
    );
    assert!(auth.delete_user(&user.id).await.unwrap());
    expect_kind(
        auth.verify(&c.tokens.access_token).await,
        ErrorKind::TokenRevoked,
    );
    assert!(auth.refresh(&c.tokens.refresh_token).await.is_err());
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(auth.get_user_by_email(EMAIL).await.unwrap().is_none());
    expect_kind(
        login_as(auth, EMAIL, PASSWORD).await,
        ErrorKind::InvalidCredentials,
    );
    assert!(!auth.delete_user(&user.id).await.unwrap());
    register(auth, "alice", EMAIL).await.unwrap();
}

#[tokio::test]
async fn full_flow_on_memory_stores() {
    let clock = ManualClock::at_2024();
    full_flow(&memory_service(&clock, cheap_config())).await;
}

#[cfg(feature = "file")]
#[tokio::test]
async fn full_flow_on_file_stores() {
    use psm::file::{FileConfig, FileStorage};

    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_2024();
    let storage =
        FileStorage::open_with_clock(FileConfig::new(tmp.path()), Arc::new(clock.clone())).unwrap();
    let auth = AuthService::builder()
        .file(&storage)
        .keys(keys())
        .config(cheap_config())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert_eq!(auth.users().provider_name(), "file");
    assert_eq!(auth.sessions().provider_name(), "file");
    full_flow(&auth).await;

    // What a login leaves behind survives reopening the directory.
    let l = login(&auth).await;
    drop(auth);
    storage.close();
    drop(storage);
    let storage =
        FileStorage::open_with_clock(FileConfig::new(tmp.path()), Arc::new(clock.clone())).unwrap();
    let auth = AuthService::file(&storage, keys(), cheap_config()).unwrap();
    assert!(
        auth.sessions()
            .get_permissions(&l.session_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(auth.get_user_by_email(EMAIL).await.unwrap().is_some());
}

#[tokio::test]
async fn convenience_constructor_uses_memory_stores() {
    let auth = AuthService::memory(keys(), cheap_config()).unwrap();
    auth.initialize().await.unwrap();
    auth.initialize().await.unwrap();
    assert_eq!(auth.users().provider_name(), "memory");
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;
    auth.verify(&l.tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn builder_reports_what_is_missing() {
    let e = expect_kind(
        AuthService::builder().keys(keys()).build(),
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("missing"), Some("users"));
    let e = expect_kind(
        AuthService::builder().memory().build(),
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("missing"), Some("keys"));
    let mut bad = cheap_config();
    bad.password_min_chars = 4;
    expect_kind(
        AuthService::builder()
            .memory()
            .keys(keys())
            .config(bad)
            .build(),
        ErrorKind::ProviderConfiguration,
    );
}

#[tokio::test]
async fn session_limit_evicts_the_oldest() {
    let clock = ManualClock::at_2024();
    let mut config = cheap_config();
    config.max_sessions_per_user = 2;
    let auth = memory_service(&clock, config);
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    let one = login(&auth).await;
    clock.advance(Duration::from_secs(1));
    let two = login(&auth).await;
    clock.advance(Duration::from_secs(1));
    let three = login(&auth).await;
    assert_eq!(three.evicted, vec![one.session_id.clone()]);
    let live: Vec<_> = auth
        .check_active_sessions(&user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.data.created_at)
        .collect();
    assert_eq!(live.len(), 2);
    expect_kind(
        auth.verify(&one.tokens.access_token).await,
        ErrorKind::TokenRevoked,
    );
    expect_kind(
        auth.refresh(&one.tokens.refresh_token).await,
        ErrorKind::TokenRevoked,
    );
    auth.verify(&two.tokens.access_token).await.unwrap();
    auth.verify(&three.tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn session_limit_rejects() {
    let clock = ManualClock::at_2024();
    let mut config = cheap_config();
    config.max_sessions_per_user = 2;
    config.limit_policy = LimitPolicy::Reject;
    let auth = memory_service(&clock, config);
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    let one = login(&auth).await;
    login(&auth).await;
    expect_kind(
        login_as(&auth, EMAIL, PASSWORD).await,
        ErrorKind::SessionLimitReached,
    );
    assert_eq!(auth.check_active_sessions(&user.id).await.unwrap().len(), 2);
    // Logging out makes room.
    auth.logout(&one.tokens.refresh_token).await.unwrap();
    login(&auth).await;
}

#[tokio::test]
async fn idle_timeout_slides_on_refresh() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;
    let idle = Duration::from_secs(30 * 60);
    let ttl = |auth: AuthService, id: psm::SessionId| async move {
        auth.sessions()
            .get_session_info(&id)
            .await
            .unwrap()
            .and_then(|i| i.ttl_remaining)
    };
    assert_eq!(ttl(auth.clone(), l.session_id.clone()).await, Some(1800));

    // Three refreshes, each just inside the idle timeout: 87 minutes in all, longer than one timeout.
    let mut refresh = l.tokens.refresh_token.clone();
    for _ in 0..3 {
        clock.advance(idle - Duration::from_secs(60));
        let pair = auth.refresh(&refresh).await.unwrap();
        assert_eq!(ttl(auth.clone(), l.session_id.clone()).await, Some(1800));
        refresh = pair.refresh_token;
    }

    // Idle past the timeout: the session is gone and so is the refresh.
    clock.advance(idle);
    assert_eq!(ttl(auth.clone(), l.session_id.clone()).await, None);
    expect_kind(auth.refresh(&refresh).await, ErrorKind::TokenRevoked);
}

#[tokio::test]
async fn absolute_lifetime_is_never_extended() {
    let clock = ManualClock::at_2024();
    let mut config = cheap_config();
    config.idle_timeout = Duration::from_secs(30 * 60);
    config.absolute_lifetime = Duration::from_secs(3600);
    let auth = memory_service(&clock, config);
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;

    clock.advance(Duration::from_secs(25 * 60));
    let p1 = auth.refresh(&l.tokens.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(25 * 60));
    let p2 = auth.refresh(&p1.refresh_token).await.unwrap();
    // 50 minutes in: the renewal stops at the absolute end, 10 minutes away.
    let info = auth
        .sessions()
        .get_session_info(&l.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.ttl_remaining, Some(600));

    // Past the end by more than the token leeway.
    clock.advance(Duration::from_secs(10 * 60 + 61));
    expect_kind(
        auth.refresh(&p2.refresh_token).await,
        ErrorKind::TokenExpired,
    );
    assert!(
        auth.sessions()
            .get_permissions(&l.session_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn absolute_lifetime_ends_the_session_even_with_long_lived_families() {
    let clock = ManualClock::at_2024();
    let mut config = cheap_config();
    config.idle_timeout = Duration::from_secs(60);
    config.absolute_lifetime = Duration::from_secs(120);
    // Families outlive the session here, so the service's own absolute check must end it.
    let auth = AuthService::builder()
        .memory()
        .keys(keys())
        .token_config(TokenConfig::new("psm", "psm"))
        .config(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;
    clock.advance(Duration::from_secs(59));
    let p = auth.refresh(&l.tokens.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(59));
    let p = auth.refresh(&p.refresh_token).await.unwrap();
    // 118 s in: two seconds are left, and the session expires with them.
    clock.advance(Duration::from_secs(2));
    let e = auth.refresh(&p.refresh_token).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::TokenRevoked | ErrorKind::TokenExpired),
        "{e}"
    );
    assert!(
        auth.sessions()
            .get_permissions(&l.session_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn raising_permissions_rotates_the_session_id() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;
    clock.advance(Duration::from_secs(100));
    let before = auth
        .sessions()
        .get_session_info(&l.session_id)
        .await
        .unwrap()
        .unwrap();

    let raised = auth
        .raise_permissions(&l.session_id, perms(&["read", "write", "admin"]))
        .await
        .unwrap();
    assert_ne!(raised, l.session_id);
    assert!(
        auth.sessions()
            .get_permissions(&l.session_id)
            .await
            .unwrap()
            .is_none()
    );
    let after = auth
        .sessions()
        .get_session_info(&raised)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.data.user_id, before.data.user_id);
    assert_eq!(after.data.metadata, before.data.metadata);
    assert_eq!(after.data.permissions, perms(&["read", "write", "admin"]));
    assert_eq!(after.expires_at, before.expires_at);
    // Tokens bound to the old id are worthless; fresh ones for the new id work.
    expect_kind(
        auth.verify(&l.tokens.access_token).await,
        ErrorKind::TokenRevoked,
    );
    expect_kind(
        auth.refresh(&l.tokens.refresh_token).await,
        ErrorKind::TokenRevoked,
    );
    let fresh = auth.issue_tokens(&raised).await.unwrap();
    assert_eq!(fresh.session_id, raised);
    auth.verify(&fresh.access_token).await.unwrap();

    // Lowering keeps the id and the expiry.
    let lowered = auth
        .raise_permissions(&raised, perms(&["read"]))
        .await
        .unwrap();
    assert_eq!(lowered, raised);
    let now = auth
        .sessions()
        .get_session_info(&raised)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.data.permissions, perms(&["read"]));
    assert_eq!(now.expires_at, before.expires_at);

    expect_kind(
        auth.raise_permissions(&l.session_id, perms(&["read"]))
            .await,
        ErrorKind::SessionNotFound,
    );
}

#[tokio::test]
async fn user_lookup_is_cached_and_invalidated() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    assert!(
        auth.get_user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
    expect_kind(
        auth.get_user_by_email("not an email").await,
        ErrorKind::Validation,
    );

    let found = auth.get_user_by_email("ALICE@example.com").await.unwrap();
    assert_eq!(found.as_ref().map(|u| &u.id), Some(&user.id));
    // Removed behind the service's back, the user is still served from the cache...
    assert!(auth.users().delete_user(&user.id).await.unwrap());
    assert_eq!(
        auth.get_user_by_email(EMAIL).await.unwrap().map(|u| u.id),
        Some(user.id.clone())
    );
    // ...until the entry's ttl ends.
    clock.advance(Duration::from_secs(61));
    assert!(auth.get_user_by_email(EMAIL).await.unwrap().is_none());

    // Through the service, deletion and updates drop the cached entry at once.
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    assert!(auth.get_user_by_email(EMAIL).await.unwrap().is_some());
    let update = email_update("bob@example.com");
    auth.update_user(&user.id, update).await.unwrap();
    assert!(auth.get_user_by_email(EMAIL).await.unwrap().is_none());
    assert!(
        auth.get_user_by_email("bob@example.com")
            .await
            .unwrap()
            .is_some()
    );
    assert!(auth.delete_user(&user.id).await.unwrap());
    assert!(
        auth.get_user_by_email("bob@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

fn email_update(email: &str) -> psm::auth::UserUpdate {
    psm::auth::UserUpdate {
        email: Some(psm::auth::Email::parse(email).unwrap()),
        ..Default::default()
    }
}

#[tokio::test]
async fn brute_force_is_rate_limited_per_account() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    for _ in 0..5 {
        expect_kind(
            login_as(&auth, EMAIL, "wrong password").await,
            ErrorKind::InvalidCredentials,
        );
        clock.advance(Duration::from_secs(10));
    }
    // Limited before verifying: the right password does not get through either.
    for password in ["wrong password", PASSWORD] {
        let e = expect_kind(
            login_as(&auth, EMAIL, password).await,
            ErrorKind::RateLimited,
        );
        let retry: u64 = e.detail("retry_after").unwrap().parse().unwrap();
        assert_eq!(retry, 900 - 50);
        assert_eq!(e.detail("scope"), Some("account"));
    }
    // Another address is not affected; once the window has passed, the account works again.
    expect_kind(
        login_as(&auth, "other@example.com", "wrong password").await,
        ErrorKind::InvalidCredentials,
    );
    clock.advance(Duration::from_secs(900));
    login(&auth).await;
}

#[tokio::test]
async fn brute_force_is_rate_limited_per_client() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    for i in 0..20 {
        expect_kind(
            login_as(&auth, &format!("user{i}@example.com"), PASSWORD).await,
            ErrorKind::InvalidCredentials,
        );
    }
    let e = expect_kind(
        login_as(&auth, EMAIL, PASSWORD).await,
        ErrorKind::RateLimited,
    );
    assert_eq!(e.detail("scope"), Some("client"));
    assert_eq!(e.detail("retry_after"), Some("900"));
    // Another client key is fine.
    auth.login(LoginRequest {
        email: EMAIL.to_owned(),
        password: PASSWORD.to_owned(),
        client: client("10.0.0.2"),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn parallel_guesses_cannot_pass_the_limit() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    // Collected, so every attempt is spawned before the first is awaited.
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { login_as(&auth, EMAIL, "wrong password").await })
        })
        .collect();
    let mut invalid = 0;
    for a in attempts {
        match a.await.unwrap().unwrap_err().kind() {
            ErrorKind::InvalidCredentials => invalid += 1,
            ErrorKind::RateLimited => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(invalid, 5);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_alike() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    let wrong = expect_kind(
        login_as(&auth, EMAIL, "wrong password").await,
        ErrorKind::InvalidCredentials,
    );
    let unknown = expect_kind(
        login_as(&auth, "nobody@example.com", PASSWORD).await,
        ErrorKind::InvalidCredentials,
    );
    let malformed = expect_kind(
        login_as(&auth, "not an email", PASSWORD).await,
        ErrorKind::InvalidCredentials,
    );
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.to_string(), malformed.to_string());
    assert_eq!(format!("{wrong:?}"), format!("{unknown:?}"));
}

#[tokio::test]
async fn password_policy_and_account_validation() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let attempt = |username: &str, email: &str, password: String| {
        let auth = auth.clone();
        let req = RegisterRequest {
            username: username.to_owned(),
            email: email.to_owned(),
            password,
            permissions: perms(&["read"]),
        };
        async move { auth.register(req).await }
    };
    for bad in ["1234567".to_owned(), "x".repeat(129)] {
        let e = expect_kind(
            attempt("alice", EMAIL, bad.clone()).await,
            ErrorKind::Validation,
        );
        assert_eq!(e.detail("field"), Some("password"));
        assert!(!e.to_string().contains(&bad));
    }
    let e = expect_kind(
        attempt("a!", EMAIL, PASSWORD.to_owned()).await,
        ErrorKind::Validation,
    );
    assert_eq!(e.detail("field"), Some("username"));
    let e = expect_kind(
        attempt("alice", "alice@", PASSWORD.to_owned()).await,
        ErrorKind::Validation,
    );
    assert_eq!(e.detail("field"), Some("email"));
    // Lengths count characters: eight two-byte characters pass, 128 characters pass.
    attempt("alice", EMAIL, "éééééééé".to_owned())
        .await
        .unwrap();
    attempt("bob", "bob@example.com", "y".repeat(128))
        .await
        .unwrap();
    expect_kind(
        attempt("ALICE", "alice2@example.com", PASSWORD.to_owned()).await,
        ErrorKind::UserExists,
    );
}

#[tokio::test]
async fn defaults_are_owasp_minimum() {
    let c = AuthConfig::default();
    assert_eq!(c.argon2, Argon2Params::OWASP_MINIMUM);
    assert_eq!(
        (
            c.argon2.memory_kib,
            c.argon2.iterations,
            c.argon2.parallelism
        ),
        (19_456, 2, 1)
    );
    assert_eq!((c.password_min_chars, c.password_max_chars), (8, 128));
    assert_eq!(c.idle_timeout, Duration::from_secs(1800));
    assert_eq!(c.absolute_lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.max_sessions_per_user, 5);
    assert_eq!(c.limit_policy, LimitPolicy::EvictOldest);
    assert_eq!(c.user_cache_ttl, Duration::from_secs(60));
    // A hash made with the defaults records them.
    let auth = memory_service(&ManualClock::at_2024(), AuthConfig::default());
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    assert!(
        user.password_hash
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
    );
}

#[tokio::test]
async fn user_without_permissions_cannot_open_a_session() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    let update = psm::auth::UserUpdate {
        permissions: Some(Vec::new()),
        ..Default::default()
    };
    auth.update_user(&user.id, update).await.unwrap();
    expect_kind(
        login_as(&auth, EMAIL, PASSWORD).await,
        ErrorKind::Validation,
    );
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A minimal `tracing` subscriber that writes every event and span field into a shared buffer.
#[derive(Clone, Default)]
struct Capture {
    out: Arc<Mutex<String>>,
    next_span: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = self.out.lock().unwrap();
        let _ = write!(out, "\nspan {}", span.metadata().name());
        span.record(&mut Fields(&mut out));
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.out.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.out.lock().unwrap();
        let m = event.metadata();
        let _ = write!(out, "\n{} {}:", m.level(), m.target());
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    let capture = Capture::default();
    // With a single live dispatcher, tracing computes a callsite's interest from the default of
    // whichever thread hits it first, so a callsite first hit by another test's thread would be
    // cached as "never" for this capture too. A second live dispatcher makes tracing ask every
    // registered one instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    // The test runtime has one thread, so a thread-local default sees every event of the flow.
    let _guard = tracing::subscriber::set_default(capture.clone());
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let mut errors = String::new();
    let mut note = |e: psm::Error| {
        let _ = write!(errors, "\n{e} {e:?}");
    };

    let user = register(&auth, "alice", EMAIL).await.unwrap();
    note(register(&auth, "alice", EMAIL).await.unwrap_err());
    note(
        auth.register(RegisterRequest {
            username: "bob".to_owned(),
            email: "bob@example.com".to_owned(),
            password: "shortpw".to_owned(),
            permissions: perms(&["read"]),
        })
        .await
        .unwrap_err(),
    );
    note(login_as(&auth, EMAIL, "wrong password").await.unwrap_err());
    note(
        login_as(&auth, "nobody@example.com", PASSWORD)
            .await
            .unwrap_err(),
    );
    let l = login(&auth).await;
    auth.verify(&l.tokens.access_token).await.unwrap();
    let p = auth.refresh(&l.tokens.refresh_token).await.unwrap();
    note(auth.refresh(&l.tokens.refresh_token).await.unwrap_err());
    note(auth.refresh(&p.refresh_token).await.unwrap_err());
    note(auth.verify(&p.access_token).await.unwrap_err());
    note(auth.verify("not.a.token").await.unwrap_err());
    let l2 = login(&auth).await;
    let raised = auth
        .raise_permissions(&l2.session_id, perms(&["read", "admin"]))
        .await
        .unwrap();
    auth.logout(&l2.tokens.refresh_token).await.unwrap();
    let l3 = login(&auth).await;
    auth.revoke_user_tokens(&user.id).await.unwrap();
    note(auth.verify(&l3.tokens.access_token).await.unwrap_err());
    for _ in 0..5 {
        let _ = login_as(&auth, EMAIL, "wrong password").await;
    }
    note(login_as(&auth, EMAIL, PASSWORD).await.unwrap_err());
    auth.delete_user(&user.id).await.unwrap();
    let debug = format!("{l:?} {l2:?}");
    // `TokenPair`'s own `Debug` (psm-jwt) hides the tokens but shows ids; only tokens are searched there.
    let pair_debug = format!("{p:?} {:?}", l3.tokens);
    drop(_guard);

    let logs = capture.out.lock().unwrap().clone();
    let everything = format!("{logs}\n{errors}\n{debug}");
    // The capture saw the flow, so the searches below mean something.
    for expected in [
        "login succeeded",
        "login failed",
        "reuse detected",
        "user deleted",
    ] {
        assert!(
            logs.contains(expected),
            "{expected:?} missing from:\n{logs}"
        );
    }
    let tokens = [
        &l.tokens.access_token,
        &l.tokens.refresh_token,
        &p.access_token,
        &p.refresh_token,
        &l2.tokens.access_token,
        &l2.tokens.refresh_token,
        &l3.tokens.access_token,
        &l3.tokens.refresh_token,
    ];
    for (i, token) in tokens.iter().enumerate() {
        // Each part (header, payload, signature) on its own, so a partial leak is caught too; the
        // header is the same for every token and reveals nothing, but it must not show up either.
        for part in token.split('.').filter(|p| p.len() > 16) {
            assert!(!everything.contains(part), "a part of token {i} leaked");
            assert!(!pair_debug.contains(part), "a part of token {i} leaked");
        }
    }
    let others = [
        PASSWORD,
        "wrong password",
        "shortpw",
        user.password_hash.as_str(),
        l.session_id.as_str(),
        l2.session_id.as_str(),
        raised.as_str(),
    ];
    for (i, secret) in others.iter().enumerate() {
        assert!(!everything.contains(secret), "secret {i} leaked");
    }
}

/// Item 1: filling the throttle's key map with fresh client keys, fresh addresses and malformed
/// addresses does not evict a locked account's counter.
#[tokio::test]
async fn locked_account_survives_a_key_spray() {
    let clock = ManualClock::at_2024();
    let mut config = cheap_config();
    config.throttle.max_tracked_keys = 8;
    let auth = memory_service(&clock, config);
    register(&auth, "alice", EMAIL).await.unwrap();
    for _ in 0..5 {
        expect_kind(
            login_as(&auth, EMAIL, "wrong password").await,
            ErrorKind::InvalidCredentials,
        );
    }
    let attempt = |email: String, key: String| {
        let auth = auth.clone();
        async move {
            auth.login(LoginRequest {
                email,
                password: "wrong password".to_owned(),
                client: ClientInfo {
                    ip: None,
                    user_agent: None,
                    key,
                },
            })
            .await
        }
    };
    for i in 0..3 * 8 {
        // Every spray attempt fails; which way depends on the counters it meets.
        let e = attempt(format!("spray{i}@example.com"), format!("client-a{i}"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidCredentials | ErrorKind::RateLimited
            ),
            "{e}"
        );
        let e = attempt(format!("not an email {i}"), format!("client-b{i}"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidCredentials | ErrorKind::RateLimited
            ),
            "{e}"
        );
    }
    // Malformed addresses share one account counter: it is locked too.
    let e = expect_kind(
        attempt("still not an email".to_owned(), "client-c".to_owned()).await,
        ErrorKind::RateLimited,
    );
    assert_eq!(e.detail("scope"), Some("account"));
    // The locked account is still locked, even with the right password from a fresh client.
    let e = expect_kind(
        auth.login(LoginRequest {
            email: EMAIL.to_owned(),
            password: PASSWORD.to_owned(),
            client: client("10.9.9.9"),
        })
        .await,
        ErrorKind::RateLimited,
    );
    assert_eq!(e.detail("scope"), Some("account"));
}

/// Item 2: with one hashing slot and a hash that takes a while (OWASP's cost), concurrent excess
/// registrations are shed with `RateLimited` instead of piling up. The deterministic version (a
/// held slot) is the unit test `auth::tests::login_is_rate_limited_when_the_hashing_queue_is_full`.
#[tokio::test]
async fn excess_concurrent_hashing_is_rate_limited() {
    let clock = ManualClock::at_2024();
    let mut config = AuthConfig::default();
    config.max_concurrent_hashes = 1;
    config.hash_queue_timeout = Duration::from_millis(1);
    let auth = memory_service(&clock, config);
    // Collected, so every call is spawned before the first is awaited.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                register(&auth, &format!("user{i}"), &format!("user{i}@example.com")).await
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
                assert_eq!(e.detail("scope"), Some("hashing"));
                assert!(e.detail("retry_after").is_some());
                limited += 1;
            }
        }
    }
    assert!(ok >= 1, "the first caller always gets the slot");
    assert!(limited >= 1, "the others cannot all wait for it");
}

/// Item 3: a password change needs the old password and ends every session and token.
#[tokio::test]
async fn change_password_ends_every_session() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    let a = login(&auth).await;
    let b = login(&auth).await;
    const NEW: &str = "a whole new passphrase";

    expect_kind(
        auth.change_password(&user.id, "wrong password", NEW).await,
        ErrorKind::InvalidCredentials,
    );
    let e = expect_kind(
        auth.change_password(&user.id, PASSWORD, "short").await,
        ErrorKind::Validation,
    );
    assert_eq!(e.detail("field"), Some("password"));
    // Nothing changed so far.
    auth.verify(&a.tokens.access_token).await.unwrap();

    auth.change_password(&user.id, PASSWORD, NEW).await.unwrap();
    for old in [&a, &b] {
        expect_kind(
            auth.verify(&old.tokens.access_token).await,
            ErrorKind::TokenRevoked,
        );
        assert!(auth.refresh(&old.tokens.refresh_token).await.is_err());
    }
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );
    expect_kind(
        login_as(&auth, EMAIL, PASSWORD).await,
        ErrorKind::InvalidCredentials,
    );
    login_as(&auth, EMAIL, NEW).await.unwrap();
    let unknown = psm::UserId::parse("user_nobody").unwrap();
    expect_kind(
        auth.change_password(&unknown, PASSWORD, NEW).await,
        ErrorKind::UserNotFound,
    );
}

/// Item 3: `update_user` refuses raw password hashes, and taking a permission away ends the
/// user's sessions (adding one does not).
#[tokio::test]
async fn update_user_refuses_hashes_and_removing_permissions_ends_sessions() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    let user = register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;

    let e = expect_kind(
        auth.update_user(
            &user.id,
            psm::auth::UserUpdate {
                password_hash: Some(user.password_hash.clone()),
                ..Default::default()
            },
        )
        .await,
        ErrorKind::Validation,
    );
    assert_eq!(e.detail("field"), Some("password_hash"));
    assert!(e.to_string().contains("change_password"));

    // Adding a permission leaves the session alone.
    let add = psm::auth::UserUpdate {
        permissions: Some(perms(&["read", "write", "admin"]).into_vec()),
        ..Default::default()
    };
    auth.update_user(&user.id, add).await.unwrap().unwrap();
    auth.verify(&l.tokens.access_token).await.unwrap();

    // Taking "write" away ends it, and its tokens.
    let remove = psm::auth::UserUpdate {
        permissions: Some(perms(&["read", "admin"]).into_vec()),
        ..Default::default()
    };
    auth.update_user(&user.id, remove).await.unwrap().unwrap();
    expect_kind(
        auth.verify(&l.tokens.access_token).await,
        ErrorKind::TokenRevoked,
    );
    assert!(auth.refresh(&l.tokens.refresh_token).await.is_err());
    assert!(
        auth.check_active_sessions(&user.id)
            .await
            .unwrap()
            .is_empty()
    );
    let again = login(&auth).await;
    assert_eq!(
        auth.sessions()
            .get_permissions(&again.session_id)
            .await
            .unwrap()
            .unwrap()
            .permissions,
        perms(&["read", "admin"])
    );
}

/// Item 4: argon2 parameters below OWASP's minimum are refused unless explicitly allowed.
#[tokio::test]
async fn argon2_below_owasp_minimum_is_a_configuration_error() {
    let mut config = cheap_config();
    config.argon2.allow_below_owasp_minimum = false;
    let e = expect_kind(
        AuthService::builder()
            .memory()
            .keys(keys())
            .config(config.clone())
            .build(),
        ErrorKind::ProviderConfiguration,
    );
    assert_eq!(e.detail("field"), Some("argon2"));
    config.argon2 = Argon2Params {
        memory_kib: 12_288,
        iterations: 3,
        ..Argon2Params::OWASP_MINIMUM
    };
    config.validate().unwrap();
}

/// Item 4: a login whose stored hash is cheaper than the configured cost stores a fresh one.
#[tokio::test]
async fn login_rehashes_a_hash_below_the_configured_cost() {
    let clock = ManualClock::at_2024();
    let users = Arc::new(psm::memory::MemoryUserStore::with_clock(Arc::new(
        clock.clone(),
    )));
    let service = |argon2: Argon2Params| {
        let mut config = cheap_config();
        config.argon2 = argon2;
        AuthService::builder()
            .memory()
            .users(users.clone())
            .keys(keys())
            .config(config)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    };
    let old = service(CHEAP_ARGON2);
    let user = register(&old, "alice", EMAIL).await.unwrap();
    assert!(
        user.password_hash
            .as_str()
            .starts_with("$argon2id$v=19$m=8,t=1,p=1$")
    );
    let stronger = Argon2Params {
        memory_kib: 16,
        iterations: 2,
        ..CHEAP_ARGON2
    };
    let new = service(stronger);
    let users = new.users().clone();
    // A wrong password changes nothing.
    expect_kind(
        login_as(&new, EMAIL, "wrong password").await,
        ErrorKind::InvalidCredentials,
    );
    assert_eq!(
        users
            .get_user(&user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        user.password_hash
    );
    let l = login(&new).await;
    let stored = users.get_user(&user.id).await.unwrap().unwrap();
    assert!(
        stored
            .password_hash
            .as_str()
            .starts_with("$argon2id$v=19$m=16,t=2,p=1$"),
        "upgraded"
    );
    assert_eq!(l.user.password_hash, stored.password_hash);
    // The fresh hash verifies, and is left alone by the next login.
    login(&new).await;
    assert_eq!(
        users
            .get_user(&user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        stored.password_hash
    );
    // A service configured cheaper than the stored hash does not downgrade it.
    login(&old).await;
    assert_eq!(
        users
            .get_user(&user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        stored.password_hash
    );
}

/// Item 7: logging out with an expired (but validly signed) refresh token ends its session too,
/// which matters when token families live shorter than sessions.
#[tokio::test]
async fn logout_with_an_expired_refresh_token_ends_its_session() {
    let clock = ManualClock::at_2024();
    let mut tokens = TokenConfig::new("psm", "psm");
    tokens.refresh_lifetime = Duration::from_secs(60);
    let auth = AuthService::builder()
        .memory()
        .keys(keys())
        .token_config(tokens)
        .config(cheap_config())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    register(&auth, "alice", EMAIL).await.unwrap();
    let l = login(&auth).await;
    clock.advance(Duration::from_secs(120));
    expect_kind(
        auth.refresh(&l.tokens.refresh_token).await,
        ErrorKind::TokenExpired,
    );
    let live = |auth: AuthService, id: psm::SessionId| async move {
        auth.sessions()
            .get_permissions(&id)
            .await
            .unwrap()
            .is_some()
    };
    // The session itself is still live (idle timeout 30 min).
    assert!(live(auth.clone(), l.session_id.clone()).await);

    // A tampered expired token is refused and ends nothing.
    let mut tampered = l.tokens.refresh_token.clone();
    // A character in the middle of the signature, so every bit of it counts.
    let at = tampered.len() - 10;
    let swapped = if tampered[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..=at, swapped);
    expect_kind(auth.logout(&tampered).await, ErrorKind::TokenInvalid);
    assert!(live(auth.clone(), l.session_id.clone()).await);

    auth.logout(&l.tokens.refresh_token).await.unwrap();
    assert!(!live(auth.clone(), l.session_id.clone()).await);
}

/// Item 8: simultaneous refreshes of one token through the service: at most one gets a pair, every
/// other fails with reuse or revocation, and the session ends (a race counts as reuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_through_the_service() {
    let clock = ManualClock::at_2024();
    let auth = memory_service(&clock, cheap_config());
    register(&auth, "alice", EMAIL).await.unwrap();
    for n in [2, 16] {
        let l = login(&auth).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let auth = auth.clone();
                let token = l.tokens.refresh_token.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    auth.refresh(&token).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for c in calls {
            match c.await.unwrap() {
                Ok(pair) => winners.push(pair),
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::TokenReuseDetected | ErrorKind::TokenRevoked
                    ),
                    "n={n}: {e}"
                ),
            }
        }
        assert!(winners.len() <= 1, "n={n}: {} winners", winners.len());
        assert!(
            auth.sessions()
                .get_permissions(&l.session_id)
                .await
                .unwrap()
                .is_none(),
            "n={n}: the session ended"
        );
        for pair in winners {
            assert!(auth.refresh(&pair.refresh_token).await.is_err(), "n={n}");
            expect_kind(
                auth.verify(&pair.access_token).await,
                ErrorKind::TokenRevoked,
            );
        }
    }
}
