//! Logins and their sessions and tokens: login, refresh, logout, permission raises and
//! verification.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use super::*;

impl AuthService {
    /// Logs a user in: checks the throttle, verifies the password, creates a session under the
    /// per-user limit and issues its tokens.
    ///
    /// Every address that does not parse is counted under one account key. When the stored hash is
    /// cheaper than the configured cost, a fresh hash of the password is stored (best effort: a
    /// failure is logged, the login goes on). After the tokens are issued the user is read again:
    /// when the account was deleted or its password changed meanwhile, the new session and token
    /// family are ended and the login fails.
    ///
    /// # Errors
    /// - `RateLimited` (with `retry_after` in seconds and `scope` `account`, `client` or `global`)
    ///   when the account or the client key has too many recent failures, or every tracked key is
    ///   near its limit; nothing is verified then. Also (`scope` `hashing`) when no hashing slot
    ///   frees within [`AuthConfig::hash_queue_timeout`]; the attempt still counts as a failure.
    /// - `InvalidCredentials` for an unknown email or a wrong password, alike in message and cost;
    ///   also when the account was deleted or its password changed during the login.
    /// - `SessionLimitReached` at the limit with [`LimitPolicy::Reject`](psm_core::LimitPolicy).
    /// - `Validation` when the user has no permissions to put in a session; store and token errors.
    pub async fn login(&self, request: LoginRequest) -> Result<LoginOutcome> {
        let LoginRequest {
            email,
            password,
            client,
        } = request;
        let parsed = Email::parse(&email);
        let account = match &parsed {
            Ok(e) => e.normalized(),
            Err(_) => INVALID_ACCOUNT.to_owned(),
        };
        let attempt = self
            .inner
            .throttle
            .begin(&account, Some(&client.key), self.now())?;
        // An address that cannot exist and a password no policy allows cannot match anything.
        let (Ok(email), true) = (parsed, password.chars().count() <= MAX_PASSWORD_CHARS) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        let user = self.inner.users.get_user_by_email(&email).await?;
        let (hash, rehash) = match &user {
            Some(u) => (
                u.password_hash.clone(),
                password::needs_rehash(&u.password_hash, self.inner.hasher.params()),
            ),
            None => (self.inner.dummy_hash.clone(), false),
        };
        // Kept only when a fresh hash must be made from it.
        let kept = rehash.then(|| password.clone());
        let verified = self.inner.hasher.verify(hash, password).await?;
        let Some(mut user) = user.filter(|_| verified) else {
            tracing::info!("login failed");
            return Err(invalid_credentials());
        };
        self.inner.throttle.succeeded(attempt);
        if let Some(password) = kept
            && let Some(upgraded) = self.upgrade_hash(&user, password).await
        {
            user = upgraded;
        }

        let permissions =
            PermissionList::from_permissions(user.permissions.clone()).map_err(|_| {
                Error::validation("the user has no permissions to put in a session")
                    .with_detail("field", "permissions")
            })?;
        let session_id = generate_session_id_with(
            &*self.inner.rng,
            &self.inner.config.session_prefix,
            ID_RANDOM_BYTES,
        )?;
        let now = self.now();
        let absolute = now.plus_secs(
            i64::try_from(self.inner.config.absolute_lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        let session = NewSession::new(user.id.clone(), permissions)
            .with_ttl(Some(ttl_of(self.inner.config.idle_timeout)?))
            .with_metadata(login_metadata(&client, absolute)?);
        let evicted = self
            .inner
            .sessions
            .create_session(&session_id, session, self.inner.limit)
            .await?;
        let tokens = match self.inner.tokens.issue(&user.id, &session_id).await {
            Ok(t) => t,
            Err(e) => {
                // A session nobody holds tokens for is dead weight; the token error wins.
                let _ = self.inner.sessions.invalidate_session(&session_id).await;
                return Err(e);
            }
        };
        // A deletion, revocation or password change that ran between the lookup and now could not
        // see this session: read the account again, and end what was just made if it changed.
        let current = self.inner.users.get_user(&user.id).await;
        // Also a permission removed meanwhile: the session was built from the older list.
        let unchanged = matches!(
            &current,
            Ok(Some(u)) if u.password_hash == user.password_hash
                && user.permissions.iter().all(|p| u.permissions.contains(p))
        );
        if !unchanged {
            let _ = self.inner.sessions.invalidate_session(&session_id).await;
            if let Err(e) = self.inner.tokens.revoke(&tokens.refresh_token).await {
                tracing::warn!(kind = %e.kind(), "revoking a token family failed");
            }
            current?;
            tracing::info!(
                user = %redact_id(user.id.as_str()),
                "login failed: the account changed during the login"
            );
            return Err(invalid_credentials());
        }
        tracing::info!(
            user = %redact_id(user.id.as_str()),
            session = %session_id.redacted(),
            evicted = evicted.len(),
            "login succeeded"
        );
        Ok(LoginOutcome {
            user,
            session_id,
            tokens,
            evicted,
        })
    }

    /// Stores a fresh hash of `password` at the configured cost for `user`, whose stored hash is
    /// cheaper, and returns the updated user; `None` (logged) when it could not.
    ///
    /// The user store has no compare-and-set, so the hash is written only if the stored one is still
    /// the one just verified when read again right before the write; a password change landing
    /// between that read and the write could still be undone (a window of one store round trip,
    /// reported by [`change_password`](Self::change_password) as `Concurrency`).
    pub(super) async fn upgrade_hash(&self, user: &User, password: String) -> Option<User> {
        let fresh = match self.inner.hasher.hash(&*self.inner.rng, password).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(kind = %e.kind(), "upgrading a password hash failed");
                return None;
            }
        };
        let write = async {
            match self.inner.users.get_user(&user.id).await? {
                Some(u) if u.password_hash == user.password_hash => {}
                _ => return Ok(None),
            }
            let update = UserUpdate {
                password_hash: Some(fresh),
                ..UserUpdate::default()
            };
            let updated = self.inner.users.update_user(&user.id, update).await?;
            self.forget_user(&user.id).await?;
            Ok::<_, Error>(updated)
        };
        match write.await {
            Ok(Some(updated)) => {
                tracing::info!(user = %redact_id(user.id.as_str()), "password hash upgraded");
                Some(updated)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(kind = %e.kind(), "upgrading a password hash failed");
                None
            }
        }
    }

    /// Rotates a refresh token into a new pair and renews the session's idle timeout (never past its
    /// absolute end).
    ///
    /// Simultaneous refreshes with one token count as reuse (the conservative reading of the OAuth
    /// 2.0 Security BCP): at most one of them gets a pair, the others fail with
    /// `TokenReuseDetected` or `TokenRevoked`, the family is revoked and the session ends, so the
    /// pair the winner got is useless too. Clients must serialize their refreshes.
    ///
    /// # Errors
    /// - `TokenInvalid` / `TokenExpired` for a token that does not verify.
    /// - `TokenReuseDetected` for a refresh token used before: its family is revoked and its session
    ///   ended.
    /// - `TokenExpired` when the session reached its absolute lifetime (the session is ended).
    /// - `TokenRevoked` when the session no longer exists or the family was revoked.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let claims = self.inner.tokens.decode_refresh(refresh_token)?;
        let (sid, user) = token_subject(&claims.sid, &claims.sub)?;
        let pair = match self.inner.tokens.refresh(refresh_token).await {
            Ok(pair) => pair,
            Err(e) if e.kind() == ErrorKind::TokenReuseDetected => {
                // The reuse error is what the caller must see, even if ending the session fails.
                let ended = self.inner.sessions.invalidate_session(&sid).await;
                let ended = ended.unwrap_or_else(|e| {
                    tracing::warn!(kind = %e.kind(), "ending a session after token reuse failed");
                    false
                });
                tracing::warn!(
                    user = %redact_id(user.as_str()),
                    session = %sid.redacted(),
                    session_ended = ended,
                    "refresh token reuse detected; family revoked and session ended"
                );
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let Some(data) = self.inner.sessions.get_permissions(&sid).await? else {
            return Err(self.end_family(&pair, token_revoked()).await);
        };
        if data.user_id != user {
            return Err(self.end_family(&pair, token_revoked()).await);
        }
        let now = self.now();
        let left = self.absolute_end(&data).micros_since(now) / 1_000_000;
        let idle = i64::try_from(self.inner.config.idle_timeout.as_secs()).unwrap_or(i64::MAX);
        // Renew by the idle timeout, but never past the absolute end (rounded down).
        let secs = left.min(idle);
        if secs < 1 {
            self.inner.sessions.invalidate_session(&sid).await?;
            tracing::info!(session = %sid.redacted(), "session reached its absolute lifetime");
            let e = Error::new(
                ErrorKind::TokenExpired,
                "the session reached its absolute lifetime",
            );
            return Err(self.end_family(&pair, e).await);
        }
        let ttl = Ttl::from_secs_i64(secs)?;
        if !self.inner.sessions.extend_session_ttl(&sid, ttl).await? {
            return Err(self.end_family(&pair, token_revoked()).await);
        }
        tracing::debug!(session = %sid.redacted(), "tokens refreshed");
        Ok(pair)
    }

    /// Revokes the family of a pair just issued by a refresh that cannot stand, and returns `e`.
    pub(super) async fn end_family(&self, pair: &TokenPair, e: Error) -> Error {
        if let Err(revoke) = self.inner.tokens.revoke(&pair.refresh_token).await {
            tracing::warn!(kind = %revoke.kind(), "revoking a token family failed");
        }
        e
    }

    /// The absolute end of a login session: from its metadata, or `created_at` plus the configured
    /// lifetime for a session that lacks it.
    pub(super) fn absolute_end(&self, data: &SessionData) -> Timestamp {
        data.metadata
            .as_map()
            .get(ABSOLUTE_EXPIRES_AT)
            .and_then(Value::as_str)
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .unwrap_or_else(|| {
                Timestamp::from_unix_micros(
                    data.created_at
                        .as_unix_micros()
                        .saturating_add(micros_of(self.inner.config.absolute_lifetime)),
                )
            })
    }

    /// Logs out: revokes the refresh token's family and ends its session.
    ///
    /// An expired (but validly signed) refresh token still logs out: its family is revoked and its
    /// session ended, which matters when families are configured to live shorter than sessions.
    ///
    /// # Errors
    /// `TokenInvalid` for a token that is not a validly signed refresh token; store errors.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        let (sid, _) = match self.inner.tokens.decode_refresh(refresh_token) {
            Ok(claims) => token_subject(&claims.sid, &claims.sub)?,
            Err(e) if e.kind() == ErrorKind::TokenExpired => {
                // `revoke` (below) checks the signature and every claim but the expiry before it
                // touches anything; it runs first so the payload is read only from a token this
                // service signed.
                self.inner.tokens.revoke(refresh_token).await?;
                let subject = signed_subject(refresh_token)?;
                self.inner.sessions.invalidate_session(&subject.0).await?;
                tracing::info!(session = %subject.0.redacted(), "logged out with an expired token");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.inner.tokens.revoke(refresh_token).await?;
        self.inner.sessions.invalidate_session(&sid).await?;
        tracing::info!(session = %sid.redacted(), "logged out");
        Ok(())
    }

    /// Sets a session's permissions. When any permission is added, the session moves to a new id
    /// (same user, metadata and remaining lifetime; the old id ends), so an id learned before the
    /// raise is worthless after it (session fixation defence); tokens bound to the old id stop
    /// working too, so issue new ones with [`issue_tokens`](Self::issue_tokens). When nothing is
    /// added, the id and the expiry stay. Returns the session's id after the call.
    ///
    /// # Errors
    /// `SessionNotFound` for a missing or expired session; store errors.
    pub async fn raise_permissions(
        &self,
        session: &SessionIdRef,
        permissions: PermissionList,
    ) -> Result<SessionId> {
        let not_found = || {
            Error::new(ErrorKind::SessionNotFound, "session not found")
                .with_detail("session", session.redacted())
        };
        let info = self
            .inner
            .sessions
            .get_session_info(session)
            .await?
            .ok_or_else(not_found)?;
        let adds = permissions
            .iter()
            .any(|p| !info.data.permissions.contains(p));
        if !adds {
            if !self
                .inner
                .sessions
                .update_permissions(session, permissions, None)
                .await?
            {
                return Err(not_found());
            }
            return Ok(session.to_owned());
        }
        let ttl = match info.expires_at {
            Some(at) => {
                let secs = at.secs_until_ceil(self.now());
                if secs == 0 {
                    return Err(not_found());
                }
                Some(Ttl::from_secs(secs)?)
            }
            None => None,
        };
        let new_id = generate_session_id_with(
            &*self.inner.rng,
            &self.inner.config.session_prefix,
            ID_RANDOM_BYTES,
        )?;
        let moved = NewSession::new(info.data.user_id.clone(), permissions)
            .with_ttl(ttl)
            .with_metadata(info.data.metadata.clone());
        // No limit here: the old session ends right after, and evicting another would be wrong.
        self.inner
            .sessions
            .create_session(&new_id, moved, SessionLimit::unlimited())
            .await?;
        if !self.inner.sessions.invalidate_session(session).await? {
            // The old session ended meanwhile (logout, revocation): so does its successor.
            self.inner.sessions.invalidate_session(&new_id).await?;
            return Err(not_found());
        }
        tracing::info!(
            user = %redact_id(info.data.user_id.as_str()),
            old = %session.redacted(),
            new = %new_id.redacted(),
            "session permissions raised; session id rotated"
        );
        Ok(new_id)
    }

    /// Issues a fresh token pair for a live session (after [`raise_permissions`](Self::raise_permissions)
    /// moved it, for example). Earlier families stay as they are.
    ///
    /// # Errors
    /// `SessionNotFound` for a missing or expired session; token and store errors.
    pub async fn issue_tokens(&self, session: &SessionIdRef) -> Result<TokenPair> {
        let data = self
            .inner
            .sessions
            .get_permissions(session)
            .await?
            .ok_or_else(|| {
                Error::new(ErrorKind::SessionNotFound, "session not found")
                    .with_detail("session", session.redacted())
            })?;
        self.inner
            .tokens
            .issue(&data.user_id, &session.to_owned())
            .await
    }

    /// Verifies an access token strictly (signature, claims, the user's token epoch) and checks its
    /// session still exists.
    ///
    /// # Errors
    /// `TokenInvalid` / `TokenExpired` for a token that does not verify; `TokenRevoked` after
    /// [`revoke_user_tokens`](Self::revoke_user_tokens) or when the session ended.
    pub async fn verify(&self, access_token: &str) -> Result<AccessClaims> {
        let claims = self.inner.tokens.verify_access_strict(access_token).await?;
        let (sid, user) = token_subject(&claims.sid, &claims.sub)?;
        match self.inner.sessions.get_permissions(&sid).await? {
            Some(data) if data.user_id == user => Ok(claims),
            _ => Err(token_revoked()),
        }
    }
}

/// The session and user of a refresh token whose signature and claims (all but the expiry) were
/// verified already, read from its payload.
fn signed_subject(token: &str) -> Result<(SessionId, UserId)> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .ok_or_else(malformed_claims)?;
    let claims: psm_jwt::RefreshClaims =
        serde_json::from_slice(&payload).map_err(|_| malformed_claims())?;
    token_subject(&claims.sid, &claims.sub)
}

/// The metadata of a login session: client ip and user agent (bounded), the absolute end, the origin.
fn login_metadata(client: &ClientInfo, absolute: Timestamp) -> Result<Metadata> {
    let bounded = |s: &Option<String>, max: usize| {
        s.as_ref().map_or(Value::Null, |s| {
            Value::String(s.chars().filter(|c| !c.is_control()).take(max).collect())
        })
    };
    let mut map = Map::new();
    map.insert("ip".to_owned(), bounded(&client.ip, MAX_IP_CHARS));
    map.insert(
        "user_agent".to_owned(),
        bounded(&client.user_agent, MAX_USER_AGENT_CHARS),
    );
    map.insert(
        ABSOLUTE_EXPIRES_AT.to_owned(),
        Value::String(absolute.to_rfc3339()),
    );
    map.insert("created_via".to_owned(), Value::String("auth".to_owned()));
    Metadata::from_map(map)
}
