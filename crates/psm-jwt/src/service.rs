//! [`TokenService`]: issue, verify, rotate and revoke access/refresh token pairs.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Header;
use psm_core::{
    ConsumeOutcome, DynClock, DynTokenStateStore, Error, ErrorKind, FamilyId, NewTokenFamily,
    RandomSource, Result, SessionId, Timestamp, TokenId, UserId, redact_id,
};
use serde::Serialize;

use crate::{
    ACCESS_HEADER_TYP, ACCESS_TYP, AccessClaims, KeySet, REFRESH_HEADER_TYP, REFRESH_TYP,
    RefreshClaims, TokenConfig, TokenPair,
    codec::{Common, check_common, invalid, verify_signature},
};

/// Random bytes in a token or family id (128 bits).
const ID_BYTES: usize = 16;

/// Issues, verifies, rotates and revokes JWT access/refresh pairs.
///
/// - Access tokens are verified statelessly ([`verify_access`](Self::verify_access)) or, with the
///   user's token epoch read from the [`TokenStateStore`](psm_core::TokenStateStore) on every call,
///   strictly ([`verify_access_strict`](Self::verify_access_strict); no cache).
/// - Refresh tokens are single use: [`refresh`](Self::refresh) consumes one through the store's
///   compare-and-swap and returns a new pair in the same family. Presenting a consumed token revokes
///   the family. A family's absolute lifetime is fixed at [`issue`](Self::issue).
/// - Only token and family ids reach the store, never tokens.
///
/// Cloning is cheap and shares everything. `Debug` shows no key material.
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySet,
    config: TokenConfig,
    state: DynTokenStateStore,
    clock: DynClock,
    rng: Arc<dyn RandomSource>,
    /// Access tokens whose signature and claims verified, by their full text. A hit skips the
    /// decoding and the signature (both fixed for the token's life, as the key set is fixed for
    /// the service's) but never the time checks, which run again against the clock.
    verified: RwLock<HashMap<Box<str>, AccessClaims>>,
}

/// Most verified access tokens remembered; when full, the memory starts over.
const VERIFIED_ENTRIES: usize = 4096;

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("TokenService")
            .field("keys", &i.keys)
            .field("config", &i.config)
            .field("state", &i.state.provider_name())
            .field("clock", &i.clock)
            .finish_non_exhaustive()
    }
}

/// What one signed pair needs.
struct PairSpec<'a> {
    user: &'a UserId,
    session: &'a SessionId,
    family: &'a FamilyId,
    refresh_jti: &'a TokenId,
    iat: i64,
    family_exp: i64,
    epoch: u64,
}

impl TokenService {
    /// A service signing with `keys.current()`, keeping refresh state and user epochs in `state`,
    /// telling time by `clock` and drawing ids from `rng`.
    ///
    /// # Errors
    /// `ProviderConfiguration` when [`TokenConfig::validate`] fails.
    pub fn new(
        keys: KeySet,
        config: TokenConfig,
        state: DynTokenStateStore,
        clock: DynClock,
        rng: Arc<dyn RandomSource>,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                config,
                state,
                clock,
                rng,
                verified: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TokenConfig {
        &self.inner.config
    }

    /// The key set.
    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
    }

    /// Starts a refresh family for `user` and `session` (absolute lifetime
    /// [`TokenConfig::refresh_lifetime`]) and returns its first pair.
    ///
    /// A login racing [`revoke_user_tokens`](Self::revoke_user_tokens) does not survive it: the
    /// user's epoch is read again once the family exists, and if a revocation raised it meanwhile
    /// the new family is revoked and the login fails.
    ///
    /// # Errors
    /// `TokenRevoked` when the user's tokens were revoked while the pair was being issued; store
    /// errors; `Provider` when the random source or signing fails.
    pub async fn issue(&self, user: &UserId, session: &SessionId) -> Result<TokenPair> {
        let i = &*self.inner;
        let iat = i.clock.now().as_unix_secs();
        let family_exp = iat.saturating_add(i.config.refresh_lifetime_secs());
        // The epoch is read before the family is created, matching `refresh` (see there).
        let epoch = i.state.user_epoch(user).await?;
        let family = FamilyId::parse(&self.random_id()?)?;
        let refresh_jti = TokenId::parse(&self.random_id()?)?;
        let pair = self.sign_pair(&PairSpec {
            user,
            session,
            family: &family,
            refresh_jti: &refresh_jti,
            iat,
            family_exp,
            epoch,
        })?;
        i.state
            .create_family(NewTokenFamily {
                id: family.clone(),
                user_id: user.clone(),
                session_id: Some(session.clone()),
                first_token: refresh_jti,
                expires_at: Timestamp::from_unix_secs(family_exp),
            })
            .await?;
        // `revoke_user_tokens` may have swept the user's families before this one existed; its
        // epoch bump (or its second sweep) comes after, so one of the two catches this family.
        self.end_if_epoch_moved(user, &family, epoch).await?;
        Ok(pair)
    }

    /// Fails with `TokenRevoked`, revoking `family`, when `user`'s epoch is no longer `epoch`.
    async fn end_if_epoch_moved(&self, user: &UserId, family: &FamilyId, epoch: u64) -> Result<()> {
        let state = &self.inner.state;
        if state.user_epoch(user).await? == epoch {
            return Ok(());
        }
        state.revoke_family(family).await?;
        Err(Error::new(
            ErrorKind::TokenRevoked,
            "the user's tokens were revoked while the pair was being issued",
        ))
    }

    /// Verifies an access token without touching state: the key its `kid` names with that key's
    /// pinned algorithm, the header `typ` ([`ACCESS_HEADER_TYP`](crate::ACCESS_HEADER_TYP)), then
    /// `typ == "access"`, `iss`, `aud`, the id formats, and `nbf`/`iat`/`exp`
    /// against the service's clock with the leeway. Every claim is required.
    ///
    /// Being stateless, it does not see what happened after issue (a reuse that revoked the
    /// family, a logout, [`revoke_user_tokens`](Self::revoke_user_tokens)): such a token verifies
    /// here until it expires. Authorize with psm's `AuthService::verify` or
    /// [`verify_access_strict`](Self::verify_access_strict).
    ///
    /// The service remembers the last few thousand tokens that verified, by their full text, and
    /// answers them again without decoding or checking the signature (neither can change for a
    /// given text and key set); the time checks run on every call.
    ///
    /// # Errors
    /// `TokenExpired` past `exp` plus leeway; `TokenInvalid` for anything else wrong.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims> {
        let i = &*self.inner;
        let known = i
            .verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned();
        if let Some(claims) = known {
            check_common(&i.config, i.clock.now(), &claims.common(), ACCESS_TYP, true)?;
            return Ok(claims);
        }
        let claims: AccessClaims = self.verified(token, ACCESS_HEADER_TYP, ACCESS_TYP, true)?;
        let mut verified = i.verified.write().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_ENTRIES {
            verified.clear();
        }
        verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// [`verify_access`](Self::verify_access), then the user's current token epoch from the store
    /// (read on every call, no cache): a token issued before
    /// [`revoke_user_tokens`](Self::revoke_user_tokens) fails.
    ///
    /// # Errors
    /// As `verify_access`; `TokenRevoked` when the token's epoch is older than the user's;
    /// `TokenInvalid` when it is newer (the store lost its state, so fail closed); store errors.
    pub async fn verify_access_strict(&self, token: &str) -> Result<AccessClaims> {
        let claims = self.verify_access(token)?;
        let user = UserId::parse(&claims.sub).map_err(|_| invalid("token claims are malformed"))?;
        let current = self.inner.state.user_epoch(&user).await?;
        if claims.epoch < current {
            return Err(Error::new(
                ErrorKind::TokenRevoked,
                "token has been revoked",
            ));
        }
        if claims.epoch > current {
            return Err(invalid("token epoch is ahead of the token state store"));
        }
        Ok(claims)
    }

    /// Verifies a refresh token's signature, header `typ`
    /// ([`REFRESH_HEADER_TYP`](crate::REFRESH_HEADER_TYP)) and claims (`typ == "refresh"`, expiry
    /// included) without touching state.
    ///
    /// # Errors
    /// `TokenExpired` past `exp` plus leeway; `TokenInvalid` for anything else wrong.
    pub fn decode_refresh(&self, token: &str) -> Result<RefreshClaims> {
        self.decode_refresh_inner(token, true)
    }

    /// The claims of `token` once its signature, header `typ` and the claims every token carries
    /// are checked (the expiry only with `check_exp`).
    fn verified<C: Claims>(
        &self,
        token: &str,
        header_typ: &'static str,
        typ: &'static str,
        check_exp: bool,
    ) -> Result<C> {
        let i = &*self.inner;
        let payload = verify_signature(&i.keys, token, header_typ)?;
        let claims: C = serde_json::from_slice(&payload)
            .map_err(|_| invalid("token claims are malformed or incomplete"))?;
        check_common(&i.config, i.clock.now(), &claims.common(), typ, check_exp)?;
        Ok(claims)
    }

    fn decode_refresh_inner(&self, token: &str, check_exp: bool) -> Result<RefreshClaims> {
        let claims: RefreshClaims =
            self.verified(token, REFRESH_HEADER_TYP, REFRESH_TYP, check_exp)?;
        if !crate::codec::is_valid_opaque_id(&claims.fam) {
            return Err(invalid("token claims are malformed"));
        }
        Ok(claims)
    }

    /// Rotates: consumes `refresh_token` (compare-and-swap through
    /// [`TokenStateStore::consume`](psm_core::TokenStateStore::consume)) and returns a new pair in
    /// the same family and session. The new refresh token expires with the family; rotation never
    /// extends it. The new pair is signed before the store is touched, so a consumed token always
    /// has a successor in the caller's hands.
    ///
    /// Ordering against [`revoke_user_tokens`](Self::revoke_user_tokens): the epoch is read before
    /// the consume, and revocation revokes families before raising the epoch, so a refresh racing a
    /// revocation either fails or yields an access token with the old epoch, never a live one. The
    /// epoch is read again after the consume; if it moved, the refresh fails with `TokenRevoked`
    /// instead of handing out a pair that is already dead.
    ///
    /// # Errors
    /// - `TokenReuseDetected` when the token was consumed before (the store revokes the family; the
    ///   caller should end the session, see [`decode_refresh`](Self::decode_refresh)); also for the
    ///   losers of simultaneous refreshes with one token.
    /// - `TokenRevoked` (family revoked, or the user's tokens revoked during the refresh),
    ///   `TokenExpired` (token or family past its lifetime),
    ///   `TokenInvalid` (bad token, or a family the store does not know).
    /// - Store errors; `Provider` when the random source or signing fails.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let i = &*self.inner;
        let claims = self.decode_refresh(refresh_token)?;
        let malformed = |_| invalid("token claims are malformed");
        let family = FamilyId::parse(&claims.fam).map_err(malformed)?;
        let presented = TokenId::parse(&claims.jti).map_err(malformed)?;
        let user = UserId::parse(&claims.sub).map_err(malformed)?;
        let session = SessionId::parse(&claims.sid).map_err(malformed)?;

        let epoch = i.state.user_epoch(&user).await?;
        let next = TokenId::parse(&self.random_id()?)?;
        let iat = i.clock.now().as_unix_secs();
        let pair = self.sign_pair(&PairSpec {
            user: &user,
            session: &session,
            family: &family,
            refresh_jti: &next,
            iat,
            // The token's `exp` is the family's absolute end, fixed at issue.
            family_exp: claims.exp,
            epoch,
        })?;
        match i.state.consume(&family, &presented, &next).await? {
            ConsumeOutcome::Rotated(f) => {
                if f.user_id != user || f.expires_at.as_unix_secs() != claims.exp {
                    // Only a store that disagrees with what it was given at issue gets here.
                    return Err(invalid("refresh token does not match its family"));
                }
                self.end_if_epoch_moved(&user, &family, epoch).await?;
                Ok(pair)
            }
            ConsumeOutcome::ReuseDetected(_) => {
                tracing::warn!(
                    family = %redact_id(family.as_str()),
                    "refresh token reuse detected; token family revoked"
                );
                Err(Error::new(
                    ErrorKind::TokenReuseDetected,
                    "refresh token was already used; its token family is revoked",
                ))
            }
            ConsumeOutcome::Revoked => Err(Error::new(
                ErrorKind::TokenRevoked,
                "refresh token family has been revoked",
            )),
            ConsumeOutcome::Expired => Err(Error::new(
                ErrorKind::TokenExpired,
                "refresh token family has expired",
            )),
            ConsumeOutcome::Unknown => Err(invalid("refresh token is not known")),
            _ => Err(invalid("refresh token was not accepted")),
        }
    }

    /// Revokes the family of a validly signed refresh token (an expired one included, so logout
    /// with a stale token still works). Returns `true` if the family was live and not yet revoked.
    ///
    /// # Errors
    /// `TokenInvalid` for a token that is not a valid refresh token; store errors.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool> {
        let claims = self.decode_refresh_inner(refresh_token, false)?;
        let family =
            FamilyId::parse(&claims.fam).map_err(|_| invalid("token claims are malformed"))?;
        self.inner.state.revoke_family(&family).await
    }

    /// Revokes every refresh family of `user`, then raises the user's token epoch, so every access
    /// token issued before fails [`verify_access_strict`](Self::verify_access_strict) and every
    /// refresh token fails [`refresh`](Self::refresh). Returns how many families were revoked.
    ///
    /// Families go first, the epoch second: see [`refresh`](Self::refresh) for why. The families
    /// are swept once more after the bump, for a login racing this call: an [`issue`](Self::issue)
    /// that read the old epoch and created its family after the first sweep either sees the new
    /// epoch when it checks again (and fails) or created its family before the second sweep.
    ///
    /// # Errors
    /// Store errors.
    pub async fn revoke_user_tokens(&self, user: &UserId) -> Result<u64> {
        let state = &self.inner.state;
        let revoked = state.revoke_user_families(user).await?;
        state.bump_user_epoch(user).await?;
        let late = state.revoke_user_families(user).await?;
        Ok(revoked.saturating_add(late))
    }

    /// A fresh random id: 16 bytes, URL-safe base64 without padding (22 characters).
    fn random_id(&self) -> Result<String> {
        let mut bytes = [0u8; ID_BYTES];
        self.inner.rng.fill(&mut bytes)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String> {
        let key = self.inner.keys.current();
        let Some(encoding) = key.encoding() else {
            // KeySet::new refuses a current key that cannot sign.
            return Err(Error::configuration("the current key cannot sign"));
        };
        let mut header = Header::new(key.algorithm().to_jwt());
        header.kid = Some(key.kid().to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, encoding)
            .map_err(|_| Error::provider("signing a token failed").with_detail("kid", key.kid()))
    }

    fn sign_pair(&self, spec: &PairSpec<'_>) -> Result<TokenPair> {
        let config = &self.inner.config;
        // An access token never outlives its family.
        let access_exp = spec
            .iat
            .saturating_add(config.access_ttl_secs())
            .min(spec.family_exp);
        let access = AccessClaims {
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            sub: spec.user.as_str().to_owned(),
            sid: spec.session.as_str().to_owned(),
            jti: self.random_id()?,
            iat: spec.iat,
            nbf: spec.iat,
            exp: access_exp,
            typ: ACCESS_TYP.to_owned(),
            epoch: spec.epoch,
        };
        let refresh = RefreshClaims {
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            sub: spec.user.as_str().to_owned(),
            sid: spec.session.as_str().to_owned(),
            fam: spec.family.as_str().to_owned(),
            jti: spec.refresh_jti.as_str().to_owned(),
            iat: spec.iat,
            nbf: spec.iat,
            exp: spec.family_exp,
            typ: REFRESH_TYP.to_owned(),
        };
        Ok(TokenPair {
            access_token: self.sign(&access, ACCESS_HEADER_TYP)?,
            refresh_token: self.sign(&refresh, REFRESH_HEADER_TYP)?,
            access_expires_at: Timestamp::from_unix_secs(access_exp),
            refresh_expires_at: Timestamp::from_unix_secs(spec.family_exp),
            family_id: spec.family.clone(),
            session_id: spec.session.clone(),
            user_id: spec.user.clone(),
        })
    }
}

/// The claims both token kinds share, for [`check_common`].
trait Claims: serde::de::DeserializeOwned {
    fn common(&self) -> Common<'_>;
}

impl Claims for AccessClaims {
    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            aud: &self.aud,
            sub: &self.sub,
            sid: &self.sid,
            jti: &self.jti,
            typ: &self.typ,
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
        }
    }
}

impl Claims for RefreshClaims {
    fn common(&self) -> Common<'_> {
        Common {
            iss: &self.iss,
            aud: &self.aud,
            sub: &self.sub,
            sid: &self.sid,
            jti: &self.jti,
            typ: &self.typ,
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
        }
    }
}
