//! Tests that look inside the service (the dummy hash, the verification counter, the hashing
//! queue, the user cache) or need a port implemented here (a user store that races a login).
#![cfg(feature = "memory")]

use std::{sync::Arc, time::Duration};

use psm_core::ManualClock;
use psm_jwt::{Algorithm, KeySet, SigningKey};

use super::*;

const PASSWORD: &str = "correct horse battery staple";

fn cheap_config() -> AuthConfig {
    AuthConfig {
        argon2: Argon2Params {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            allow_below_owasp_minimum: true,
        },
        ..AuthConfig::default()
    }
}

fn keys() -> KeySet {
    KeySet::new(SigningKey::hmac("k1", Algorithm::HS256, &[42u8; 32]).unwrap()).unwrap()
}

fn service(config: AuthConfig) -> AuthService {
    AuthService::builder()
        .memory()
        .keys(keys())
        .config(config)
        .clock(Arc::new(ManualClock::at_2024()))
        .build()
        .unwrap()
}

fn login_request(email: &str, password: &str) -> LoginRequest {
    LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
        client: ClientInfo {
            key: "10.0.0.1".to_owned(),
            ..ClientInfo::default()
        },
    }
}

async fn register(auth: &AuthService) -> User {
    auth.register(RegisterRequest {
        username: "alice".to_owned(),
        email: "alice@example.com".to_owned(),
        password: PASSWORD.to_owned(),
        permissions: PermissionList::parse(&["read"]).unwrap(),
    })
    .await
    .unwrap()
}

/// Item 6: the dummy hash exists as soon as the service is built, with the configured cost, and an
/// unknown email really runs a verification against it.
#[tokio::test]
async fn dummy_hash_is_built_with_the_configured_cost_and_verified() {
    let mut config = cheap_config();
    config.argon2.memory_kib = 16;
    config.argon2.iterations = 2;
    let auth = service(config.clone());
    // No `initialize` call: the first login must already find the dummy hash.
    let p = password::params_of(&auth.inner.dummy_hash).unwrap();
    assert_eq!(
        (p.memory_kib, p.iterations, p.parallelism),
        (16, 2, 1),
        "the dummy hash records the configured parameters"
    );
    let before = auth.inner.hasher.verifications();
    let e = auth
        .login(login_request("nobody@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidCredentials);
    assert_eq!(auth.inner.hasher.verifications(), before + 1);
    // With the defaults too (OWASP's minimum).
    let auth = service(AuthConfig::default());
    let p = password::params_of(&auth.inner.dummy_hash).unwrap();
    assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19_456, 2, 1));
}

/// Item 2: with every hashing slot taken, a login fails with `RateLimited` instead of queueing for
/// ever; the slot coming free lets the next login through.
#[tokio::test]
async fn login_is_rate_limited_when_the_hashing_queue_is_full() {
    let mut config = cheap_config();
    config.max_concurrent_hashes = 1;
    config.hash_queue_timeout = Duration::from_millis(1);
    let auth = service(config);
    register(&auth).await;
    // Held by the test: a hash that never ends while the logins below run.
    let held = auth.inner.hasher.permits().acquire().await.unwrap();
    let e = auth
        .login(login_request("alice@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.detail("scope"), Some("hashing"));
    assert_eq!(e.detail("retry_after"), Some("1"));
    let e = auth
        .register(RegisterRequest {
            username: "bob".to_owned(),
            email: "bob@example.com".to_owned(),
            password: PASSWORD.to_owned(),
            permissions: PermissionList::parse(&["read"]).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    drop(held);
    auth.login(login_request("alice@example.com", PASSWORD))
        .await
        .unwrap();
}

/// A user store in which every update and deletion races a lookup: the lookup reads the user
/// before the write and fills the cache right after it, the worst interleaving the double drop in
/// `update_user` and `delete_user` is there for.
#[derive(Debug)]
struct RacingLookups {
    inner: DynUserStore,
    cache: DynCache,
}

impl RacingLookups {
    async fn fill_stale(&self, stale: Option<User>) {
        let Some(stale) = stale else { return };
        let key = user_cache::email_key(&stale.email).unwrap();
        let tag = user_cache::user_tag(&stale.id).unwrap();
        let ttl = Ttl::from_secs(60).unwrap();
        self.cache
            .set(&key, &user_cache::encode(&stale), ttl, &[tag])
            .await
            .unwrap();
    }
}

#[psm_core::async_trait]
impl psm_core::UserStore for RacingLookups {
    fn provider_name(&self) -> &str {
        "racing"
    }
    async fn create_user(&self, user: NewUser) -> Result<User> {
        self.inner.create_user(user).await
    }
    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        self.inner.get_user(id).await
    }
    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        self.inner.get_user_by_email(email).await
    }
    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        let stale = self.inner.get_user(id).await?;
        let updated = self.inner.update_user(id, update).await?;
        self.fill_stale(stale).await;
        Ok(updated)
    }
    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let stale = self.inner.get_user(id).await?;
        let existed = self.inner.delete_user(id).await?;
        self.fill_stale(stale).await;
        Ok(existed)
    }
    async fn list_users(
        &self,
        permission: Option<&psm_core::PermissionRef>,
        page: psm_core::Page,
    ) -> Result<Vec<User>> {
        self.inner.list_users(permission, page).await
    }
}

/// Item 9: a lookup that read the store before an update or a deletion and filled the cache after
/// the store write is not served afterwards.
#[tokio::test]
async fn a_stale_cache_fill_racing_an_update_or_delete_is_dropped() {
    let clock = ManualClock::at_2024();
    let cache: DynCache = Arc::new(crate::memory::MemoryCache::with_clock(Arc::new(
        clock.clone(),
    )));
    let users = Arc::new(RacingLookups {
        inner: Arc::new(crate::memory::MemoryUserStore::with_clock(Arc::new(
            clock.clone(),
        ))),
        cache: cache.clone(),
    });
    let auth = AuthService::builder()
        .memory()
        .users(users)
        .cache(cache)
        .keys(keys())
        .config(cheap_config())
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let user = register(&auth).await;
    let update = UserUpdate {
        username: Some(Username::parse("alice2").unwrap()),
        ..UserUpdate::default()
    };
    let updated = auth.update_user(&user.id, update).await.unwrap().unwrap();
    let seen = auth
        .get_user_by_email("alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.username, updated.username);

    assert!(auth.delete_user(&user.id).await.unwrap());
    assert!(
        auth.get_user_by_email("alice@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

/// What a [`RacingUsers`] store does to the account on the first lookup by email.
#[derive(Debug, Clone, Copy)]
enum Race {
    /// Deletes it (as `delete_user` running between the lookup and the token issue).
    Delete,
    /// Replaces its password hash (as `change_password` running then).
    ChangePassword,
    /// Takes a permission away (as `update_user` running then).
    RemovePermission,
}

/// A user store that changes the account right after the first lookup by email returned it.
#[derive(Debug)]
struct RacingUsers {
    inner: DynUserStore,
    race: Race,
    done: std::sync::atomic::AtomicBool,
}

#[psm_core::async_trait]
impl psm_core::UserStore for RacingUsers {
    fn provider_name(&self) -> &str {
        "racing"
    }
    async fn create_user(&self, user: NewUser) -> Result<User> {
        self.inner.create_user(user).await
    }
    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        self.inner.get_user(id).await
    }
    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let found = self.inner.get_user_by_email(email).await?;
        if let Some(user) = &found
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            match self.race {
                Race::Delete => {
                    self.inner.delete_user(&user.id).await?;
                }
                Race::ChangePassword => {
                    let update = UserUpdate {
                        password_hash: Some(PasswordHash::new("$argon2id$v=19$changed").unwrap()),
                        ..Default::default()
                    };
                    self.inner.update_user(&user.id, update).await?;
                }
                Race::RemovePermission => {
                    let update = UserUpdate {
                        permissions: Some(vec![psm_core::Permission::parse("other").unwrap()]),
                        ..Default::default()
                    };
                    self.inner.update_user(&user.id, update).await?;
                }
            }
        }
        Ok(found)
    }
    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        self.inner.update_user(id, update).await
    }
    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        self.inner.delete_user(id).await
    }
    async fn list_users(
        &self,
        permission: Option<&psm_core::PermissionRef>,
        page: psm_core::Page,
    ) -> Result<Vec<User>> {
        self.inner.list_users(permission, page).await
    }
}

/// Item 5: a login that found the user before a deletion, a password change or a permission removal
/// landed ends the session it made and fails, instead of handing out tokens for a gone account or a
/// session with permissions the user no longer has.
#[tokio::test]
async fn login_racing_a_deletion_or_password_change_leaves_nothing() {
    for race in [Race::Delete, Race::ChangePassword, Race::RemovePermission] {
        let clock = ManualClock::at_2024();
        let users = Arc::new(RacingUsers {
            inner: Arc::new(crate::memory::MemoryUserStore::with_clock(Arc::new(
                clock.clone(),
            ))),
            race,
            done: std::sync::atomic::AtomicBool::new(false),
        });
        let token_state: psm_core::DynTokenStateStore = Arc::new(
            crate::memory::MemoryTokenStateStore::with_clock(Arc::new(clock.clone())),
        );
        let auth = AuthService::builder()
            .memory()
            .users(users)
            .token_state(Arc::clone(&token_state))
            .keys(keys())
            .config(cheap_config())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let user = register(&auth).await;
        let e = auth
            .login(login_request("alice@example.com", PASSWORD))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCredentials, "{race:?}");
        assert!(
            auth.check_active_sessions(&user.id)
                .await
                .unwrap()
                .is_empty(),
            "{race:?}"
        );
        let all = auth
            .sessions()
            .list_sessions(None, Page::first(100).unwrap());
        assert!(all.await.unwrap().is_empty(), "{race:?}");
        // The login's token family was revoked too: nothing is left to revoke.
        assert_eq!(
            token_state.revoke_user_families(&user.id).await.unwrap(),
            0,
            "{race:?}"
        );
    }
}
