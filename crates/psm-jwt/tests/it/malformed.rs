//! Property tests: malformed tokens of arbitrary bytes never panic and are never accepted.

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

fn b64url() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,64}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
