//! Accounts: registration, lookups, updates, password changes, revocation and deletion.

use super::*;

impl AuthService {
    /// Creates an account (the seed's `create_user`).
    ///
    /// Validates the username, the email and the password policy before anything else, then hashes
    /// the password with argon2id off the async threads.
    ///
    /// # Errors
    /// `Validation` for a bad username, email or password; `UserExists` when the email or username is
    /// taken; `RateLimited` when no hashing slot frees within the queue timeout; store errors.
    pub async fn register(&self, request: RegisterRequest) -> Result<User> {
        let RegisterRequest {
            username,
            email,
            password,
            permissions,
        } = request;
        let username = Username::parse(&username)?;
        let email = Email::parse(&email)?;
        password::check_policy(&self.inner.config, &password)?;
        let id = self.new_user_id()?;
        let password_hash = self.inner.hasher.hash(&*self.inner.rng, password).await?;
        let user = self
            .inner
            .users
            .create_user(NewUser {
                id,
                username,
                email,
                password_hash,
                permissions: permissions.into_vec(),
            })
            .await?;
        tracing::info!(user = %redact_id(user.id.as_str()), "user registered");
        Ok(user)
    }

    pub(super) fn new_user_id(&self) -> Result<UserId> {
        let id = generate_session_id_with(&*self.inner.rng, "user", ID_RANDOM_BYTES)?;
        UserId::parse(id.as_str())
    }

    /// Revokes every token of `user` (older access tokens stop verifying strictly, every refresh
    /// family is revoked) and ends every session of the user. Returns how many families were revoked.
    ///
    /// # Errors
    /// Store errors.
    pub async fn revoke_user_tokens(&self, user: &UserId) -> Result<u64> {
        let families = self.inner.tokens.revoke_user_tokens(user).await?;
        let sessions = self.inner.sessions.invalidate_user_sessions(user).await?;
        tracing::info!(
            user = %redact_id(user.as_str()),
            families,
            sessions,
            "user tokens revoked"
        );
        Ok(families)
    }

    /// The user's live sessions, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn check_active_sessions(&self, user: &UserId) -> Result<Vec<SessionInfo>> {
        let mut page = Page::first(LIST_PAGE)?;
        let mut out = Vec::new();
        loop {
            let ids = self.inner.sessions.list_sessions(Some(user), page).await?;
            for id in &ids {
                // A session can end between listing and reading it.
                if let Some(info) = self.inner.sessions.get_session_info(id).await? {
                    out.push(info);
                }
            }
            if ids.len() < page.limit() {
                return Ok(out);
            }
            page = page.next();
        }
    }

    /// The user with `email` (case-insensitively), served from the cache for up to
    /// [`AuthConfig::user_cache_ttl`]. A failing cache is bypassed, never fatal.
    ///
    /// The cached record holds the whole user, password hash included, so the cache must be as
    /// trusted as the user store. Logins never read it: they verify against the store.
    ///
    /// # Errors
    /// `Validation` for a malformed address; user store errors.
    pub async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = Email::parse(email)?;
        let key = user_cache::email_key(&email);
        if let Some(key) = &key {
            match self.inner.cache.get(key).await {
                Ok(Some(bytes)) => {
                    if let Some(user) = user_cache::decode(&bytes)
                        .filter(|u| u.email.normalized() == email.normalized())
                    {
                        return Ok(Some(user));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(kind = %e.kind(), "user cache read failed"),
            }
        }
        let user = self.inner.users.get_user_by_email(&email).await?;
        if let (Some(key), Some(user)) = (&key, &user) {
            let stored = async {
                let tag = user_cache::user_tag(&user.id)?;
                let ttl = ttl_of(self.inner.config.user_cache_ttl)?;
                self.inner
                    .cache
                    .set(key, &user_cache::encode(user), ttl, &[tag])
                    .await
            };
            if let Err(e) = stored.await {
                tracing::warn!(kind = %e.kind(), "user cache write failed");
            }
        }
        Ok(user)
    }

    /// Applies a partial update to a user and drops the user's cached entries (before and again
    /// after the store write; see [the struct docs](Self#user-cache) for the remaining bound).
    ///
    /// When the update takes away any permission the user had, every token and session of the
    /// user ends ([`revoke_user_tokens`](Self::revoke_user_tokens)), since sessions hold the
    /// permissions they were opened with. The comparison is with the user as read just before the
    /// write, so of two concurrent updates the second may not see what the first added.
    ///
    /// # Errors
    /// `Validation` (field `password_hash`) for an update that sets a password hash: use
    /// [`change_password`](Self::change_password); `UserExists` when the new email or username is
    /// taken; store errors.
    pub async fn update_user(&self, user: &UserId, update: UserUpdate) -> Result<Option<User>> {
        if update.password_hash.is_some() {
            return Err(Error::validation(
                "passwords are changed with change_password, which ends the user's sessions",
            )
            .with_detail("field", "password_hash"));
        }
        let before = match update.permissions {
            Some(_) => self.inner.users.get_user(user).await?,
            None => None,
        };
        self.forget_user(user).await?;
        let updated = self.inner.users.update_user(user, update).await?;
        if let (Some(before), Some(after)) = (&before, &updated)
            && before
                .permissions
                .iter()
                .any(|p| !after.permissions.contains(p))
        {
            self.revoke_user_tokens(user).await?;
        }
        self.forget_user(user).await?;
        Ok(updated)
    }

    /// Changes a user's password: checks the new one against the policy, verifies the old one
    /// (counted by the login throttle for the account like a failed login), stores the new hash,
    /// then ends every token and session of the user
    /// ([`revoke_user_tokens`](Self::revoke_user_tokens)), this caller's included.
    ///
    /// # Errors
    /// - `Validation` when the new password is outside the policy.
    /// - `UserNotFound` for an unknown user.
    /// - `InvalidCredentials` when the old password is wrong; `RateLimited` when the account has
    ///   too many recent failures or no hashing slot frees in time.
    /// - `Concurrency` when another write replaced the new hash before the call ended (the
    ///   sessions are ended anyway; read the account and retry).
    /// - Store errors.
    pub async fn change_password(
        &self,
        user: &UserId,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        password::check_policy(&self.inner.config, new_password)?;
        let current = self.inner.users.get_user(user).await?.ok_or_else(|| {
            Error::new(ErrorKind::UserNotFound, "user not found")
                .with_detail("user", redact_id(user.as_str()))
        })?;
        let attempt = self
            .inner
            .throttle
            .begin(&current.email.normalized(), None, self.now())?;
        let verified = old_password.chars().count() <= MAX_PASSWORD_CHARS
            && self
                .inner
                .hasher
                .verify(current.password_hash.clone(), old_password.to_owned())
                .await?;
        if !verified {
            tracing::info!(user = %redact_id(user.as_str()), "password change refused");
            return Err(invalid_credentials());
        }
        self.inner.throttle.succeeded(attempt);
        let fresh = self
            .inner
            .hasher
            .hash(&*self.inner.rng, new_password.to_owned())
            .await?;
        self.forget_user(user).await?;
        let update = UserUpdate {
            password_hash: Some(fresh.clone()),
            ..UserUpdate::default()
        };
        let updated = self.inner.users.update_user(user, update).await?;
        // Sessions end before anything else can fail.
        self.revoke_user_tokens(user).await?;
        self.forget_user(user).await?;
        if updated.is_none() {
            return Err(Error::new(ErrorKind::UserNotFound, "user not found")
                .with_detail("user", redact_id(user.as_str())));
        }
        match self.inner.users.get_user(user).await? {
            Some(u) if u.password_hash == fresh => {
                tracing::info!(user = %redact_id(user.as_str()), "password changed");
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::Concurrency,
                "the account changed during the password change",
            )
            .with_detail("user", redact_id(user.as_str()))),
        }
    }

    pub(super) async fn forget_user(&self, user: &UserId) -> Result<()> {
        self.inner
            .cache
            .delete_tag(&user_cache::user_tag(user)?)
            .await
            .map(|_| ())
    }

    /// Deletes a user and everything of theirs: the account first (so no new login can start), then
    /// every token family and the epoch (old access tokens stop verifying), every session, and the
    /// cached entries (dropped before and again after the store write). Returns whether the account
    /// existed; the cascade runs either way. A login that looked the user up before the deletion
    /// notices it after issuing its tokens and ends its session.
    ///
    /// # Errors
    /// Store errors; the call can be repeated.
    pub async fn delete_user(&self, user: &UserId) -> Result<bool> {
        self.forget_user(user).await?;
        let existed = self.inner.users.delete_user(user).await?;
        self.inner.tokens.revoke_user_tokens(user).await?;
        let sessions = self.inner.sessions.invalidate_user_sessions(user).await?;
        self.forget_user(user).await?;
        tracing::info!(user = %redact_id(user.as_str()), existed, sessions, "user deleted");
        Ok(existed)
    }
}
