//! Fuzz properties of the verify path, run by `cargo xtask fuzz`: malformed tokens of arbitrary
//! bytes never panic and are never accepted, a mutated token never verifies, and a token signed with
//! the right key verifies only when its claims are ones the service would issue.
//!
//! Under a plain `cargo test` each property runs about a hundred cases; `cargo xtask fuzz` sets
//! `PSM_FUZZ_CASES` and runs exactly the tests under a `fuzz::` path with that many (divided by
//! each property's cost).

use std::sync::OnceLock;

use crate::common::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proptest::prelude::*;
use psm_core::ErrorKind;
use psm_jwt::TokenPair;
use tokio::runtime::Runtime;

struct World {
    rt: Runtime,
    h: Harness,
    pair: TokenPair,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let h = harness();
        let pair = rt
            .block_on(h.svc.issue(&user("alice"), &session("s1")))
            .unwrap();
        World { rt, h, pair }
    })
}

/// Every entry point rejects `token` with a token error (never a panic, never success).
fn assert_rejected(token: &str) -> Result<(), TestCaseError> {
    let w = world();
    let svc = &w.h.svc;
    let token_kinds = [ErrorKind::TokenInvalid, ErrorKind::TokenExpired];
    let errors = [
        svc.verify_access(token).map(|_| ()),
        svc.decode_refresh(token).map(|_| ()),
        w.rt.block_on(svc.verify_access_strict(token)).map(|_| ()),
        w.rt.block_on(svc.refresh(token)).map(|_| ()),
        w.rt.block_on(svc.revoke(token)).map(|_| ()),
    ];
    for r in errors {
        let err = match r {
            Ok(()) => return Err(TestCaseError::fail("a malformed token was accepted")),
            Err(e) => e,
        };
        prop_assert!(token_kinds.contains(&err.kind()), "{err}");
        if token.len() >= 8 {
            prop_assert!(!err.to_string().contains(token));
        }
    }
    Ok(())
}

/// The configuration of a property that costs `cost` times a cheap parser call: `PSM_FUZZ_CASES`
/// (set by `cargo xtask fuzz`) divided by `cost`, or 256 divided by `cost` under a plain `cargo test`.
fn config(cost: u32) -> ProptestConfig {
    let base = std::env::var("PSM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases: (base / cost).max(8),
        ..ProptestConfig::default()
    }
}

fn b64url() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,64}"
}

proptest! {
    #![proptest_config(config(2))]

    #[test]
    fn arbitrary_bytes_are_rejected(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        assert_rejected(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_strings_with_dots_are_rejected(
        parts in prop::collection::vec("[A-Za-z0-9_=+/\\-]{0,48}", 0..6)
    ) {
        assert_rejected(&parts.join("."))?;
    }

    #[test]
    fn arbitrary_segments_are_rejected(
        header in prop::collection::vec(any::<u8>(), 0..80),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        sig in b64url(),
    ) {
        let token = format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        assert_rejected(&token)?;
    }

    #[test]
    fn our_header_with_arbitrary_payload_and_signature_is_rejected(
        alg in prop::sample::select(vec!["HS256", "HS384", "none", "ES256", "RS256", "EdDSA"]),
        payload in ".{0,120}",
        sig in b64url(),
    ) {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
        let token = format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        assert_rejected(&token)?;
    }

    /// Changing, inserting or deleting one character anywhere in a valid token never yields a token
    /// that verifies (strict base64url decoding leaves no equivalent spelling).
    #[test]
    fn one_character_mutations_of_a_valid_token_are_rejected(
        refresh in any::<bool>(),
        pos in any::<prop::sample::Index>(),
        op in 0u8..3,
        ch in prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
                .chars()
                .collect::<Vec<_>>()
        ),
    ) {
        let w = world();
        let original = if refresh { &w.pair.refresh_token } else { &w.pair.access_token };
        let mut chars: Vec<char> = original.chars().collect();
        let i = pos.index(chars.len());
        match op {
            0 => chars[i] = ch,
            1 => chars.insert(i, ch),
            _ => {
                chars.remove(i);
            }
        }
        let token: String = chars.into_iter().collect();
        prop_assume!(&token != original);
        assert_rejected(&token)?;
    }
}

#[test]
fn the_unmutated_token_still_verifies() {
    // Guards the mutation property: the world's tokens are valid to begin with.
    let w = world();
    w.h.svc.verify_access(&w.pair.access_token).unwrap();
    w.h.svc.decode_refresh(&w.pair.refresh_token).unwrap();
}

/// `header.payload` signed with the harness's HS256 key, as the service signs.
fn sign(header: &str, payload: &[u8]) -> String {
    let body = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HMAC_SECRET);
    let tag = aws_lc_rs::hmac::sign(&key, body.as_bytes());
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A JSON value for a claim: the types a claim may have and the ones it may not.
fn claim_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            ISSUER, AUDIENCE, "access", "refresh", "alice", "s1", "", " "
        ])
        .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        prop::collection::vec("[a-z]{0,4}", 0..3).prop_map(Value::from),
    ]
}

/// One change to a claims object.
#[derive(Debug, Clone)]
enum ClaimEdit {
    Remove(&'static str),
    Set(&'static str, serde_json::Value),
    Shift(&'static str, i64),
}

fn claim_edit() -> impl Strategy<Value = ClaimEdit> {
    let field = prop::sample::select(vec![
        "iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "typ", "epoch", "fam", "extra",
    ]);
    let time = prop::sample::select(vec!["iat", "nbf", "exp", "epoch"]);
    prop_oneof![
        field.clone().prop_map(ClaimEdit::Remove),
        (field, claim_value()).prop_map(|(f, v)| ClaimEdit::Set(f, v)),
        (time, prop_oneof![-100_000_i64..100_000, any::<i64>()])
            .prop_map(|(f, d)| ClaimEdit::Shift(f, d)),
    ]
}

impl ClaimEdit {
    fn apply(&self, claims: &mut serde_json::Map<String, serde_json::Value>) {
        match self {
            Self::Remove(f) => {
                claims.remove(*f);
            }
            Self::Set(f, v) => {
                claims.insert((*f).to_owned(), v.clone());
            }
            Self::Shift(f, d) => {
                if let Some(n) = claims.get(*f).and_then(serde_json::Value::as_i64) {
                    claims.insert((*f).to_owned(), n.saturating_add(*d).into());
                }
            }
        }
    }
}

/// The header segment, the claims bytes and the claims of `token`, which the service issued.
fn parts(token: &str) -> (String, Vec<u8>, serde_json::Map<String, serde_json::Value>) {
    let mut segments = token.split('.');
    let header = segments.next().unwrap().to_owned();
    let payload = URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap();
    let claims = serde_json::from_slice(&payload).unwrap();
    (header, payload, claims)
}

proptest! {
    #![proptest_config(config(2))]

    /// Tokens signed with the service's own key but with edited claims: whatever verifies carries
    /// the issuer, audience and type the service issues, and an access token never passes as a
    /// refresh token or the other way round.
    #[test]
    fn correctly_signed_tokens_with_edited_claims(
        refresh in any::<bool>(),
        edits in prop::collection::vec(claim_edit(), 1..3),
    ) {
        let w = world();
        let svc = &w.h.svc;
        let original = if refresh { &w.pair.refresh_token } else { &w.pair.access_token };
        let (header, payload, mut claims) = parts(original);
        // Re-signing the untouched claims reproduces the token exactly: the forgery is faithful.
        prop_assert_eq!(&sign(&header, &payload), original);
        let before = claims.clone();
        for e in &edits {
            e.apply(&mut claims);
        }
        let token = sign(&header, &serde_json::to_vec(&claims).unwrap());
        let token_kinds = [ErrorKind::TokenInvalid, ErrorKind::TokenExpired, ErrorKind::TokenRevoked, ErrorKind::TokenReuseDetected];
        let access = svc.verify_access(&token);
        let decoded = svc.decode_refresh(&token);
        if refresh {
            prop_assert!(access.is_err(), "a refresh token verified as an access token");
        } else {
            prop_assert!(decoded.is_err(), "an access token decoded as a refresh token");
        }
        match access {
            Ok(c) => {
                prop_assert_eq!(c.iss.as_str(), ISSUER);
                prop_assert_eq!(c.aud.as_str(), AUDIENCE);
                prop_assert_eq!(Some(&serde_json::Value::from(c.typ.clone())), before.get("typ"));
                prop_assert_eq!(Some(&serde_json::Value::from(c.sub.clone())), claims.get("sub"));
            }
            Err(e) => prop_assert!(token_kinds.contains(&e.kind()), "{:?}: {}", e.kind(), e),
        }
        match decoded {
            Ok(c) => {
                prop_assert_eq!(c.iss.as_str(), ISSUER);
                prop_assert_eq!(c.aud.as_str(), AUDIENCE);
            }
            Err(e) => prop_assert!(token_kinds.contains(&e.kind()), "{:?}: {}", e.kind(), e),
        }
        if let Err(e) = w.rt.block_on(svc.verify_access_strict(&token)) {
            prop_assert!(token_kinds.contains(&e.kind()), "{:?}: {}", e.kind(), e);
        }
    }
}
