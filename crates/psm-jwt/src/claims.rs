//! The claims of access and refresh tokens, and [`TokenPair`].

use std::fmt;

use psm_core::{FamilyId, SessionId, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// The `typ` claim of an access token.
pub const ACCESS_TYP: &str = "access";
/// The `typ` claim of a refresh token.
pub const REFRESH_TYP: &str = "refresh";
/// The JOSE header `typ` of an access token (RFC 9068; RFC 8725 section 3.11 explicit typing).
/// Verification also accepts `application/at+jwt`, case-insensitively.
pub const ACCESS_HEADER_TYP: &str = "at+jwt";
/// The JOSE header `typ` of a refresh token (explicit typing, so a refresh token never passes as
/// an access token). Verification also accepts `application/rt+jwt`, case-insensitively.
pub const REFRESH_HEADER_TYP: &str = "rt+jwt";

/// The claims of an access token. Every field is required when a token is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (one string).
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// The login session id.
    pub sid: String,
    /// This token's id.
    pub jti: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: i64,
    /// Not before (seconds since the Unix epoch).
    pub nbf: i64,
    /// Expiry (seconds since the Unix epoch).
    pub exp: i64,
    /// Token type, always `"access"`.
    pub typ: String,
    /// The user's token epoch when the token was issued; strict verification rejects a token
    /// whose epoch is older than the user's current one.
    pub epoch: u64,
}

/// The claims of a refresh token. Every field is required when a token is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (one string).
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// The login session id.
    pub sid: String,
    /// The refresh-token family id.
    pub fam: String,
    /// This token's id: the id the family stores and consumes.
    pub jti: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: i64,
    /// Not before (seconds since the Unix epoch).
    pub nbf: i64,
    /// Expiry (seconds since the Unix epoch): the family's absolute end.
    pub exp: i64,
    /// Token type, always `"refresh"`.
    pub typ: String,
}

/// An access token and a refresh token issued together. `Debug` shows neither token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The signed access token (a bearer credential).
    pub access_token: String,
    /// The signed refresh token (a bearer credential; single use).
    pub refresh_token: String,
    /// When the access token expires.
    pub access_expires_at: Timestamp,
    /// When the refresh token (and its whole family) expires.
    pub refresh_expires_at: Timestamp,
    /// The refresh-token family.
    pub family_id: FamilyId,
    /// The login session.
    pub session_id: SessionId,
    /// The user.
    pub user_id: UserId,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("family_id", &self.family_id)
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .finish()
    }
}
