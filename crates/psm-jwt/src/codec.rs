//! Token parsing and verification: one strict path shared by access and refresh tokens.
//!
//! The header and payload are each decoded once; the signature is checked by `jsonwebtoken`'s
//! crypto layer with the key the `kid` names and that key's pinned algorithm; every claim is checked
//! here, against the injected clock (never the system clock).

use std::borrow::Cow;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::crypto;
use psm_core::{Error, ErrorKind, Result, Timestamp, is_valid_session_id, is_valid_user_id};
use serde::{Deserialize, de::IgnoredAny};

use crate::{KeySet, TokenConfig};

/// Longest token accepted, in bytes: far above any token psm issues (an RS256 pair member is
/// under 1 KiB), low enough that a hostile input costs little.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

const MICROS: i64 = 1_000_000;

pub(crate) fn invalid(message: &'static str) -> Error {
    Error::new(ErrorKind::TokenInvalid, message)
}

/// The header fields psm looks at. Other members (`jku`, `jwk`, `x5u`, ...) are ignored: keys come
/// only from the key set, never from the token.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// RFC 8725 section 3.11 explicit typing: `at+jwt` or `rt+jwt`, checked once signed.
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    /// RFC 7515 section 4.1.11: extensions psm does not understand must fail the token.
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Whether the header `typ` names the media type `expected` (`at+jwt` or `rt+jwt`). RFC 7515
/// section 4.1.9: media type names are case-insensitive and `application/` may be omitted, so
/// `application/at+jwt` is the same type (RFC 9068 section 4 accepts both spellings).
fn header_typ_matches(typ: &str, expected: &str) -> bool {
    let prefix = "application/";
    let bare = match typ.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &typ[prefix.len()..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

/// Checks the structure, the key id, the algorithm, the signature and the header `typ`
/// (`expected_typ`, explicit typing) of `token`; returns the decoded payload bytes (JSON), not yet
/// trusted for anything but having been signed by a key of `keys`.
pub(crate) fn verify_signature(
    keys: &KeySet,
    token: &str,
    expected_typ: &'static str,
) -> Result<Vec<u8>> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("token is not a compact jws of three parts"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(invalid("token is not a compact jws of three parts"));
    }
    if signature.is_empty() {
        return Err(invalid("token is not signed"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| invalid("token header is not base64url"))?;
    let header: RawHeader<'_> =
        serde_json::from_slice(&header_json).map_err(|_| invalid("token header is malformed"))?;
    if header.crit.is_some() {
        return Err(invalid("token has critical header parameters"));
    }
    let Some(kid) = header.kid else {
        return Err(invalid("token has no key id"));
    };
    let Some(key) = keys.find(&kid) else {
        return Err(invalid("token key id is unknown"));
    };
    // The algorithm is the key's, never the token's: a token claiming another algorithm (`none`,
    // or HS256 against an asymmetric key's public bytes) is refused before any crypto runs.
    if header.alg != key.algorithm().name() {
        return Err(invalid("token algorithm does not match its key"));
    }
    let message_len = token.len() - signature.len() - 1;
    let message = &token.as_bytes()[..message_len];
    let verified = match key.hmac_verifier() {
        // HMAC with the key prepared once; `hmac::verify` compares in constant time.
        Some(hmac_key) => {
            let mut tag = [0u8; 64];
            match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
                Ok(n) => aws_lc_rs::hmac::verify(hmac_key, message, &tag[..n]).is_ok(),
                Err(_) => false,
            }
        }
        None => crypto::verify(signature, message, key.decoding(), key.algorithm().to_jwt())
            .unwrap_or(false),
    };
    if !verified {
        return Err(invalid("token signature is invalid"));
    }
    // Checked after the signature, when the header is known to come from a key holder: a token of
    // one kind (or a plain `JWT`) must never pass as the other, whatever its claims say.
    if !header
        .typ
        .is_some_and(|typ| header_typ_matches(&typ, expected_typ))
    {
        return Err(invalid(if expected_typ == crate::ACCESS_HEADER_TYP {
            "token type header is not at+jwt"
        } else {
            "token type header is not rt+jwt"
        }));
    }
    URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("token payload is not base64url"))
}

/// The claims every psm token carries, borrowed for checking.
pub(crate) struct Common<'a> {
    pub(crate) iss: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) sid: &'a str,
    pub(crate) jti: &'a str,
    pub(crate) typ: &'a str,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
}

/// Whether `s` is a valid `TokenId` / `FamilyId` (1 to 128 of `[A-Za-z0-9_-]`), without allocating.
pub(crate) fn is_valid_opaque_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks type, issuer, audience, id formats and times (with the configured leeway) at `now`.
/// `check_exp` is false only for revocation, where an expired token may still name its family.
pub(crate) fn check_common(
    config: &TokenConfig,
    now: Timestamp,
    c: &Common<'_>,
    expected_typ: &'static str,
    check_exp: bool,
) -> Result<()> {
    if c.typ != expected_typ {
        return Err(invalid(if expected_typ == crate::ACCESS_TYP {
            "token is not an access token"
        } else {
            "token is not a refresh token"
        }));
    }
    if c.iss != config.issuer {
        return Err(invalid("token issuer is not accepted"));
    }
    if c.aud != config.audience {
        return Err(invalid("token audience is not accepted"));
    }
    if !is_valid_user_id(c.sub) || !is_valid_session_id(c.sid) || !is_valid_opaque_id(c.jti) {
        return Err(invalid("token claims are malformed"));
    }
    let now = now.as_unix_micros();
    let leeway = config.leeway_micros();
    let latest_accepted_start = now.saturating_add(leeway);
    if c.nbf.saturating_mul(MICROS) > latest_accepted_start {
        return Err(invalid("token is not valid yet"));
    }
    if c.iat.saturating_mul(MICROS) > latest_accepted_start {
        return Err(invalid("token was issued in the future"));
    }
    if c.exp < c.nbf {
        return Err(invalid("token expires before it becomes valid"));
    }
    // RFC 7519: `exp` is the time on or after which the token must not be accepted.
    if check_exp && now >= c.exp.saturating_mul(MICROS).saturating_add(leeway) {
        return Err(Error::new(ErrorKind::TokenExpired, "token has expired"));
    }
    Ok(())
}
