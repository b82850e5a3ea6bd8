//! TokenService tests: every token attack of issue 6, rotation, revocation, keys and configuration.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::common::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, crypto};
use psm_core::{ErrorKind, FamilyId, NewTokenFamily, Result, TokenId};
use psm_jwt::{AccessClaims, Algorithm, KeySet, SigningKey, TokenConfig, TokenPair};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// helpers

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn segments(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments(token)[0]).unwrap()).unwrap()
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments(token)[1]).unwrap()).unwrap()
}

/// A compact JWS with exactly this header and payload, HMAC-signed with `secret` under `alg`.
fn forge_hmac(
    header: &Value,
    claims: &Value,
    alg: jsonwebtoken::Algorithm,
    secret: &[u8],
) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig = crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg).unwrap();
    format!("{message}.{sig}")
}

/// A compact JWS with exactly this header and payload, signed by `key` (what a holder of the real
/// key could produce), for claim-level tests.
fn sign_raw(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig = crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

fn real_hmac_key() -> EncodingKey {
    EncodingKey::from_secret(HMAC_SECRET)
}

/// The header psm puts on its access tokens (key "k1").
fn access_header() -> Value {
    json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"})
}

/// The header psm puts on its refresh tokens (key "k1").
fn refresh_header() -> Value {
    json!({"alg": "HS256", "typ": "rt+jwt", "kid": "k1"})
}

/// `claims` signed with the test key under `header`: valid in every respect the header leaves.
fn sign_hs256(header: &Value, claims: &Value) -> String {
    sign_raw(
        header,
        claims,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    )
}

/// `header` with its `typ` set to `typ`, or removed when `typ` is `None`.
fn with_typ(header: &Value, typ: Option<&Value>) -> Value {
    let mut h = header.clone();
    match typ {
        Some(t) => h["typ"] = t.clone(),
        None => {
            h.as_object_mut().unwrap().remove("typ");
        }
    }
    h
}

async fn issue(h: &Harness) -> TokenPair {
    h.svc
        .issue(&user("alice"), &session("session_a1"))
        .await
        .unwrap()
}

/// Asserts neither the token nor any of its segments, nor the secret, appear in `text`.
fn assert_no_secret(text: &str, token: &str) {
    assert!(!text.contains(token), "token leaked: {text}");
    for seg in segments(token) {
        if seg.len() >= 8 {
            assert!(!text.contains(seg), "token segment leaked: {text}");
        }
    }
    assert!(
        !text.contains(std::str::from_utf8(HMAC_SECRET).unwrap()),
        "secret leaked: {text}"
    );
}

fn assert_error_clean(err: &psm_core::Error, token: &str) {
    assert_no_secret(&err.to_string(), token);
    assert_no_secret(&format!("{err:?}"), token);
    let msg = err.message();
    assert_eq!(msg, msg.to_lowercase(), "message not lowercase: {msg}");
    assert!(!msg.ends_with('.'));
}

// ---------------------------------------------------------------------------------------------
// happy paths and every algorithm

#[tokio::test]
async fn issue_then_verify_carries_every_claim() {
    let h = harness();
    let now = h.clock.now_secs();
    let pair = issue(&h).await;
    let c = h.svc.verify_access(&pair.access_token).unwrap();
    assert_eq!(
        c,
        AccessClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "alice".into(),
            sid: "session_a1".into(),
            jti: c.jti.clone(),
            iat: now,
            nbf: now,
            exp: now + 15 * 60,
            typ: "access".into(),
            epoch: 0,
        }
    );
    assert_eq!(TokenId::parse(&c.jti).unwrap().as_str().len(), 22);
    let r = h.svc.decode_refresh(&pair.refresh_token).unwrap();
    assert_eq!(r.typ, "refresh");
    assert_eq!(r.fam, pair.family_id.as_str());
    assert_eq!(r.exp, now + 30 * 24 * 3600);
    assert_eq!(FamilyId::parse(&r.fam).unwrap().as_str().len(), 22);
    assert_ne!(r.jti, c.jti);
    assert_eq!(pair.access_expires_at.as_unix_secs(), c.exp);
    assert_eq!(pair.refresh_expires_at.as_unix_secs(), r.exp);
    assert_eq!(pair.user_id.as_str(), "alice");
    assert_eq!(pair.session_id.as_str(), "session_a1");
    assert_eq!(
        h.svc
            .verify_access_strict(&pair.access_token)
            .await
            .unwrap(),
        c
    );

    // Only ids are stored: the family's current token is the refresh token's jti.
    let record = h.store.table.export_family(&pair.family_id).unwrap();
    assert_eq!(record.family.current_token.as_str(), r.jti);
    let stored = format!("{record:?}");
    assert_no_secret(&stored, &pair.refresh_token);
    assert_no_secret(&stored, &pair.access_token);
}

#[tokio::test]
async fn ids_are_fresh_on_every_issue() {
    let h = harness();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let p = issue(&h).await;
        let a = h.svc.verify_access(&p.access_token).unwrap();
        let r = h.svc.decode_refresh(&p.refresh_token).unwrap();
        assert!(seen.insert(a.jti));
        assert!(seen.insert(r.jti));
        assert!(seen.insert(r.fam));
    }
}

#[tokio::test]
async fn every_algorithm_round_trips() {
    let keys = [
        SigningKey::hmac("hs256", Algorithm::HS256, &HMAC_SECRET[..32]).unwrap(),
        SigningKey::hmac("hs384", Algorithm::HS384, &HMAC_SECRET[..48]).unwrap(),
        SigningKey::hmac("hs512", Algorithm::HS512, &HMAC_SECRET[..64]).unwrap(),
        es256_a("es256"),
        ed25519("eddsa"),
        rs256("rs256"),
    ];
    for key in keys {
        let (kid, alg) = (key.kid().to_owned(), key.algorithm());
        let h = harness_with(KeySet::new(key).unwrap(), config());
        let pair = issue(&h).await;
        for token in [&pair.access_token, &pair.refresh_token] {
            let header = header_of(token);
            assert_eq!(header["alg"], alg.name(), "{alg}");
            assert_eq!(header["kid"], kid.as_str());
        }
        h.svc.verify_access(&pair.access_token).unwrap();
        h.svc
            .verify_access_strict(&pair.access_token)
            .await
            .unwrap();
        h.svc.decode_refresh(&pair.refresh_token).unwrap();
        let next = h.svc.refresh(&pair.refresh_token).await.unwrap();
        h.svc.verify_access(&next.access_token).unwrap();
        assert_eq!(next.family_id, pair.family_id);
        assert!(h.svc.revoke(&next.refresh_token).await.unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// attacks

#[tokio::test]
async fn alg_none_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    let claims = claims_of(&pair.access_token);
    let sig = segments(&pair.access_token)[2];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
        let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&claims));
        let with_old_sig = format!("{}.{}.{sig}", b64_json(&header), b64_json(&claims));
        for (token, why) in [
            (&unsigned, "token is not signed"),
            (&with_old_sig, "token algorithm does not match its key"),
        ] {
            let err = h.svc.verify_access(token).unwrap_err();
            assert_eq!(
                (err.kind(), err.message()),
                (ErrorKind::TokenInvalid, why),
                "{alg}"
            );
            assert_eq!(
                kind(h.svc.verify_access_strict(token).await),
                ErrorKind::TokenInvalid
            );
        }
    }
    let rclaims = claims_of(&pair.refresh_token);
    let header = json!({"alg": "none", "kid": "k1"});
    let token = format!("{}.{}.", b64_json(&header), b64_json(&rclaims));
    assert_eq!(kind(h.svc.decode_refresh(&token)), ErrorKind::TokenInvalid);
    assert_eq!(kind(h.svc.refresh(&token).await), ErrorKind::TokenInvalid);
    assert_eq!(kind(h.svc.revoke(&token).await), ErrorKind::TokenInvalid);
}

/// The classic confusion: the verifier holds an ES256/RS256 public key, and the attacker signs an
/// HS256 token using that public key's PEM bytes as the HMAC secret.
#[tokio::test]
async fn hs256_signed_with_an_asymmetric_public_key_is_rejected() {
    for (key, public_pem) in [(es256_a("asym"), ES256_A_PUB), (rs256("asym"), RS256_PUB)] {
        let alg = key.algorithm();
        let h = harness_with(KeySet::new(key).unwrap(), config());
        let pair = issue(&h).await;
        // Also the verify-only form of the key: a retired key must not be an HMAC secret either.
        let retired = harness_with(
            KeySet::new(hs256("current"))
                .unwrap()
                .with_verify_key(SigningKey::verify_only_pem("asym", alg, public_pem).unwrap())
                .unwrap(),
            config(),
        );
        for hmac in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let header = json!({"alg": format!("{hmac:?}"), "typ": "JWT", "kid": "asym"});
            let forged_access =
                forge_hmac(&header, &claims_of(&pair.access_token), hmac, public_pem);
            let forged_refresh =
                forge_hmac(&header, &claims_of(&pair.refresh_token), hmac, public_pem);
            for svc in [&h.svc, &retired.svc] {
                let err = svc.verify_access(&forged_access).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{alg} {hmac:?}");
                assert_eq!(err.message(), "token algorithm does not match its key");
                assert_error_clean(&err, &forged_access);
                assert_eq!(
                    kind(svc.decode_refresh(&forged_refresh)),
                    ErrorKind::TokenInvalid
                );
                assert_eq!(
                    kind(svc.refresh(&forged_refresh).await),
                    ErrorKind::TokenInvalid
                );
            }
        }
        // Also with the public key's DER-less raw forms a confused verifier might use.
        let header = json!({"alg": "HS256", "kid": "asym"});
        let trimmed: Vec<u8> = public_pem.iter().copied().filter(|b| *b != b'\n').collect();
        let forged = forge_hmac(
            &header,
            &claims_of(&pair.access_token),
            jsonwebtoken::Algorithm::HS256,
            &trimmed,
        );
        assert_eq!(kind(h.svc.verify_access(&forged)), ErrorKind::TokenInvalid);
        // The untouched token still verifies: the rejection is about the forgery.
        h.svc.verify_access(&pair.access_token).unwrap();
    }
}

#[tokio::test]
async fn a_token_naming_another_algorithm_than_its_key_is_rejected() {
    // An ES256 token presented under a kid whose key is RS256, and the reverse: alg pinned per key.
    let es = harness_with(KeySet::new(es256_a("k")).unwrap(), config());
    let rs = harness_with(KeySet::new(rs256("k")).unwrap(), config());
    let es_pair = issue(&es).await;
    let rs_pair = issue(&rs).await;
    assert_eq!(
        kind(rs.svc.verify_access(&es_pair.access_token)),
        ErrorKind::TokenInvalid
    );
    assert_eq!(
        kind(es.svc.verify_access(&rs_pair.access_token)),
        ErrorKind::TokenInvalid
    );
    // HS384 token against an HS256 key with the same secret.
    let h = harness();
    let pair = issue(&h).await;
    let header = json!({"alg": "HS384", "kid": "k1"});
    let forged = forge_hmac(
        &header,
        &claims_of(&pair.access_token),
        jsonwebtoken::Algorithm::HS384,
        HMAC_SECRET,
    );
    assert_eq!(kind(h.svc.verify_access(&forged)), ErrorKind::TokenInvalid);
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    let parts = segments(&pair.access_token);
    let mut claims = claims_of(&pair.access_token);
    for (field, value) in [
        ("sub", json!("mallory")),
        ("epoch", json!(99)),
        ("exp", json!(i64::MAX / 2)),
        ("sid", json!("session_other")),
        ("typ", json!("access")),
    ] {
        claims[field] = value;
        let token = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);
        let err = h.svc.verify_access(&token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{field}");
        assert_eq!(err.message(), "token signature is invalid");
        assert_error_clean(&err, &token);
    }
    // A tampered refresh token cannot retarget another family or extend its own.
    let rparts = segments(&pair.refresh_token);
    let mut rclaims = claims_of(&pair.refresh_token);
    rclaims["exp"] = json!(rclaims["exp"].as_i64().unwrap() + 3600);
    let token = format!("{}.{}.{}", rparts[0], b64_json(&rclaims), rparts[2]);
    assert_eq!(kind(h.svc.refresh(&token).await), ErrorKind::TokenInvalid);
    // A tampered header, and a flipped signature byte.
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1", "x": 1});
    let token = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
    let mut sig = parts[2].as_bytes().to_vec();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let token = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).unwrap()
    );
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
    // The original is fine and its family untouched.
    h.svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn stripped_signature_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    for token in [&pair.access_token, &pair.refresh_token] {
        let p = segments(token);
        for stripped in [
            format!("{}.{}.", p[0], p[1]),
            format!("{}.{}", p[0], p[1]),
            format!("{}.{}..", p[0], p[1]),
            format!("{}.{}.{}.", p[0], p[1], p[2]),
            format!("{}.{}.{}", p[0], p[1], &p[2][..p[2].len() / 2]),
        ] {
            let err = h.svc.verify_access(&stripped).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TokenInvalid);
            assert_error_clean(&err, &stripped);
            assert_eq!(
                kind(h.svc.decode_refresh(&stripped)),
                ErrorKind::TokenInvalid
            );
            assert_eq!(
                kind(h.svc.refresh(&stripped).await),
                ErrorKind::TokenInvalid
            );
        }
    }
}

#[tokio::test]
async fn unknown_or_injected_kid_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    let claims = claims_of(&pair.access_token);
    // Signed with the right secret but naming another kid, no kid, or hostile kids.
    let hostile = [
        json!("k2"),
        json!("K1"),
        json!(""),
        json!("../../../../dev/null"),
        json!("k1' OR '1'='1"),
        json!("k1\u{0000}"),
        json!(null),
        json!(1),
        json!(["k1"]),
    ];
    for kid in hostile {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let token = forge_hmac(
            &header,
            &claims,
            jsonwebtoken::Algorithm::HS256,
            HMAC_SECRET,
        );
        assert_eq!(
            kind(h.svc.verify_access(&token)),
            ErrorKind::TokenInvalid,
            "{kid}"
        );
    }
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = forge_hmac(
        &header,
        &claims,
        jsonwebtoken::Algorithm::HS256,
        HMAC_SECRET,
    );
    let err = h.svc.verify_access(&token).unwrap_err();
    assert_eq!(err.message(), "token has no key id");
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k2"});
    let token = forge_hmac(
        &header,
        &claims,
        jsonwebtoken::Algorithm::HS256,
        HMAC_SECRET,
    );
    let err = h.svc.verify_access(&token).unwrap_err();
    assert_eq!(err.message(), "token key id is unknown");

    // The attacker's own key under our kid, or carried in the header (jwk / jku): ignored.
    let attacker = b"attacker-controlled-secret-that-is-long-enough-000";
    let header = json!({
        "alg": "HS256", "kid": "k1", "jku": "https://evil.test/jwks",
        "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker)}
    });
    let token = forge_hmac(&header, &claims, jsonwebtoken::Algorithm::HS256, attacker);
    let err = h.svc.verify_access(&token).unwrap_err();
    assert_eq!(err.message(), "token signature is invalid");

    // A token from a service with another key set.
    let other = harness_with(KeySet::new(es256_a("k9")).unwrap(), config());
    let foreign = issue(&other).await;
    assert_eq!(
        kind(h.svc.verify_access(&foreign.access_token)),
        ErrorKind::TokenInvalid
    );
    assert_eq!(
        kind(h.svc.refresh(&foreign.refresh_token).await),
        ErrorKind::TokenInvalid
    );

    // A `crit` header psm does not understand fails the token even when correctly signed.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]});
    let token = forge_hmac(
        &header,
        &claims,
        jsonwebtoken::Algorithm::HS256,
        HMAC_SECRET,
    );
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
    // The same header without `crit` is accepted: the forging helper is sound.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let token = forge_hmac(
        &header,
        &claims,
        jsonwebtoken::Algorithm::HS256,
        HMAC_SECRET,
    );
    h.svc.verify_access(&token).unwrap();
}

#[tokio::test]
async fn expiry_honours_the_leeway_and_no_more() {
    let h = harness(); // access 15 min, leeway 30 s
    let pair = issue(&h).await;
    h.clock.advance(Duration::from_secs(15 * 60 + 29));
    h.svc.verify_access(&pair.access_token).unwrap();
    h.clock.advance(Duration::from_secs(1));
    let err = h.svc.verify_access(&pair.access_token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenExpired);
    assert_error_clean(&err, &pair.access_token);
    assert_eq!(
        kind(h.svc.verify_access_strict(&pair.access_token).await),
        ErrorKind::TokenExpired
    );

    // Zero leeway: rejected at exp exactly.
    let mut cfg = config();
    cfg.leeway = Duration::ZERO;
    let h = harness_with(KeySet::new(hs256("k1")).unwrap(), cfg);
    let pair = issue(&h).await;
    h.clock.advance(Duration::from_secs(15 * 60 - 1));
    h.svc.verify_access(&pair.access_token).unwrap();
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        kind(h.svc.verify_access(&pair.access_token)),
        ErrorKind::TokenExpired
    );
}

#[tokio::test]
async fn not_yet_valid_honours_the_leeway_and_no_more() {
    let h = harness();
    let start = h.clock.now_ts();
    let pair = issue(&h).await;
    // A verifier whose clock is 30 s behind accepts; 31 s behind does not.
    h.clock.set(start.plus_secs(-30));
    h.svc.verify_access(&pair.access_token).unwrap();
    h.svc.decode_refresh(&pair.refresh_token).unwrap();
    h.clock.set(start.plus_secs(-31));
    let err = h.svc.verify_access(&pair.access_token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid);
    assert_eq!(err.message(), "token is not valid yet");
    assert_eq!(
        kind(h.svc.decode_refresh(&pair.refresh_token)),
        ErrorKind::TokenInvalid
    );

    // A correctly signed token with nbf in the future (and a valid iat) is refused too.
    h.clock.set(start);
    let mut claims = claims_of(&pair.access_token);
    claims["nbf"] = json!(start.as_unix_secs() + 120);
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let token = sign_raw(
        &header,
        &claims,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
    h.clock.advance(Duration::from_secs(120 - 30));
    h.svc.verify_access(&token).unwrap();
}

#[tokio::test]
async fn issued_in_the_future_honours_the_leeway_and_no_more() {
    let h = harness(); // leeway 30 s
    let now = h.clock.now_secs();
    let pair = issue(&h).await;
    // Only `iat` moves: `nbf` stays now and `exp` stays ahead, so the iat check alone decides.
    for (iat, accepted) in [
        (now + 30, true),
        (now + 31, false),
        (now + 3600, false),
        (i64::MAX, false),
    ] {
        let mut a = claims_of(&pair.access_token);
        a["iat"] = json!(iat);
        let access = sign_hs256(&access_header(), &a);
        let mut r = claims_of(&pair.refresh_token);
        r["iat"] = json!(iat);
        let refresh = sign_hs256(&refresh_header(), &r);
        if accepted {
            h.svc.verify_access(&access).unwrap();
            h.svc.verify_access_strict(&access).await.unwrap();
            h.svc.decode_refresh(&refresh).unwrap();
            continue;
        }
        let err = h.svc.verify_access(&access).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{iat}");
        assert_eq!(err.message(), "token was issued in the future", "{iat}");
        assert_error_clean(&err, &access);
        assert_eq!(
            kind(h.svc.verify_access_strict(&access).await),
            ErrorKind::TokenInvalid
        );
        let err = h.svc.decode_refresh(&refresh).unwrap_err();
        assert_eq!(err.message(), "token was issued in the future", "{iat}");
        assert_eq!(kind(h.svc.refresh(&refresh).await), ErrorKind::TokenInvalid);
        assert_eq!(kind(h.svc.revoke(&refresh).await), ErrorKind::TokenInvalid);
    }
    // The rejected refreshes and revocations never reached the family.
    h.svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    for cfg in [
        TokenConfig::new("https://other-issuer.test", AUDIENCE),
        TokenConfig::new(ISSUER, "other-audience"),
        TokenConfig::new(format!("{ISSUER}/"), AUDIENCE),
    ] {
        let other = harness_on(KeySet::new(hs256("k1")).unwrap(), cfg, &h.store);
        assert_eq!(
            kind(other.svc.verify_access(&pair.access_token)),
            ErrorKind::TokenInvalid
        );
        assert_eq!(
            kind(other.svc.decode_refresh(&pair.refresh_token)),
            ErrorKind::TokenInvalid
        );
        assert_eq!(
            kind(other.svc.refresh(&pair.refresh_token).await),
            ErrorKind::TokenInvalid
        );
    }
    // An audience array (even one containing ours) is not the single audience psm issues.
    let mut claims = claims_of(&pair.access_token);
    claims["aud"] = json!([AUDIENCE, "x"]);
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let token = sign_raw(
        &header,
        &claims,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
    // The original family was not consumed by the rejected refreshes.
    h.svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn every_claim_is_required() {
    let h = harness();
    let pair = issue(&h).await;
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let key = real_hmac_key();
    let hs = jsonwebtoken::Algorithm::HS256;
    let access = claims_of(&pair.access_token);
    for field in [
        "iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "typ", "epoch",
    ] {
        let mut c = access.clone();
        c.as_object_mut().unwrap().remove(field);
        let token = sign_raw(&header, &c, &key, hs);
        assert_eq!(
            kind(h.svc.verify_access(&token)),
            ErrorKind::TokenInvalid,
            "{field}"
        );
        let mut c = access.clone();
        c[field] = json!(null);
        let token = sign_raw(&header, &c, &key, hs);
        assert_eq!(
            kind(h.svc.verify_access(&token)),
            ErrorKind::TokenInvalid,
            "{field}"
        );
    }
    let refresh = claims_of(&pair.refresh_token);
    let rheader = json!({"alg": "HS256", "typ": "rt+jwt", "kid": "k1"});
    for field in [
        "iss", "aud", "sub", "sid", "fam", "jti", "iat", "nbf", "exp", "typ",
    ] {
        let mut c = refresh.clone();
        c.as_object_mut().unwrap().remove(field);
        let token = sign_raw(&rheader, &c, &key, hs);
        assert_eq!(
            kind(h.svc.decode_refresh(&token)),
            ErrorKind::TokenInvalid,
            "{field}"
        );
        assert_eq!(
            kind(h.svc.refresh(&token).await),
            ErrorKind::TokenInvalid,
            "{field}"
        );
    }
    // Malformed ids inside a correctly signed token.
    for (field, value) in [
        ("sub", json!("")),
        ("sid", json!("../x")),
        ("jti", json!("a.b")),
    ] {
        let mut c = access.clone();
        c[field] = value;
        let token = sign_raw(&header, &c, &key, hs);
        assert_eq!(
            kind(h.svc.verify_access(&token)),
            ErrorKind::TokenInvalid,
            "{field}"
        );
    }
    let mut c = refresh.clone();
    c["fam"] = json!("fam with spaces");
    let token = sign_raw(&rheader, &c, &key, hs);
    assert_eq!(kind(h.svc.refresh(&token).await), ErrorKind::TokenInvalid);
    // Duplicate members are refused rather than resolved either way.
    let dup = format!(
        "{}.{}",
        b64_json(&header),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&access).unwrap().replacen(
            '{',
            "{\"sub\":\"mallory\",",
            1
        ))
    );
    let sig = crypto::sign(dup.as_bytes(), &key, hs).unwrap();
    assert_eq!(
        kind(h.svc.verify_access(&format!("{dup}.{sig}"))),
        ErrorKind::TokenInvalid
    );
}

#[tokio::test]
async fn access_and_refresh_tokens_are_not_interchangeable() {
    let h = harness();
    let pair = issue(&h).await;
    let err = h.svc.verify_access(&pair.refresh_token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid);
    assert_error_clean(&err, &pair.refresh_token);
    // Rejected on the explicit type header (RFC 8725 section 3.11), after a valid signature.
    assert_eq!(err.message(), "token type header is not at+jwt");
    assert_eq!(
        kind(h.svc.verify_access_strict(&pair.refresh_token).await),
        ErrorKind::TokenInvalid
    );
    assert_eq!(
        kind(h.svc.decode_refresh(&pair.access_token)),
        ErrorKind::TokenInvalid
    );
    assert_eq!(
        kind(h.svc.refresh(&pair.access_token).await),
        ErrorKind::TokenInvalid
    );
    assert_eq!(
        kind(h.svc.revoke(&pair.access_token).await),
        ErrorKind::TokenInvalid
    );
    // A refresh token relabelled `typ: access` (correctly signed) still lacks `epoch`; an access
    // token relabelled `refresh` lacks `fam`.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let mut r = claims_of(&pair.refresh_token);
    r["typ"] = json!("access");
    let token = sign_raw(
        &header,
        &r,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    );
    let err = h.svc.verify_access(&token).unwrap_err();
    assert_eq!(err.message(), "token claims are malformed or incomplete");
    let rheader = json!({"alg": "HS256", "typ": "rt+jwt", "kid": "k1"});
    let mut a = claims_of(&pair.access_token);
    a["typ"] = json!("refresh");
    let token = sign_raw(
        &rheader,
        &a,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(kind(h.svc.decode_refresh(&token)), ErrorKind::TokenInvalid);
    // And the typ check alone: an access token carrying every refresh claim but typ "access".
    let mut both = claims_of(&pair.access_token);
    both["fam"] = claims_of(&pair.refresh_token)["fam"].clone();
    let token = sign_raw(
        &rheader,
        &both,
        &real_hmac_key(),
        jsonwebtoken::Algorithm::HS256,
    );
    let err = h.svc.decode_refresh(&token).unwrap_err();
    assert_eq!(err.message(), "token is not a refresh token");
    // Nothing above touched the family.
    h.svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn tokens_carry_explicit_type_headers() {
    for key in [hs256("k1"), es256_a("k1"), ed25519("k1"), rs256("k1")] {
        let h = harness_with(KeySet::new(key).unwrap(), config());
        let pair = issue(&h).await;
        assert_eq!(header_of(&pair.access_token)["typ"], "at+jwt");
        assert_eq!(header_of(&pair.refresh_token)["typ"], "rt+jwt");
        assert_eq!(psm_jwt::ACCESS_HEADER_TYP, "at+jwt");
        assert_eq!(psm_jwt::REFRESH_HEADER_TYP, "rt+jwt");
        let next = h.svc.refresh(&pair.refresh_token).await.unwrap();
        assert_eq!(header_of(&next.access_token)["typ"], "at+jwt");
        assert_eq!(header_of(&next.refresh_token)["typ"], "rt+jwt");
    }
}

/// Header `typ` values that name neither kind psm expects, or the other kind. `None`: no `typ`.
fn wrong_typs(other_kind: &str) -> Vec<Option<Value>> {
    vec![
        Some(json!("JWT")),
        Some(json!("jwt")),
        Some(json!("application/jwt")),
        Some(json!(other_kind)),
        Some(json!(format!("application/{other_kind}"))),
        Some(json!("")),
        Some(json!("+jwt")),
        Some(json!("application/")),
        Some(json!(null)),
        None,
    ]
}

#[tokio::test]
async fn an_access_token_without_the_at_jwt_type_header_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    let claims = claims_of(&pair.access_token);
    // Control: the same claims under the accepted spellings (RFC 9068 section 4; media types are
    // case-insensitive) verify, so below only the header differs.
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/At+Jwt",
    ] {
        let token = sign_hs256(&with_typ(&access_header(), Some(&json!(typ))), &claims);
        h.svc.verify_access(&token).unwrap();
        h.svc.verify_access_strict(&token).await.unwrap();
    }
    let mut bad = wrong_typs("rt+jwt");
    bad.extend([Some(json!("at+jwt ")), Some(json!("xapplication/at+jwt"))]);
    for typ in bad {
        let token = sign_hs256(&with_typ(&access_header(), typ.as_ref()), &claims);
        let err = h.svc.verify_access(&token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{typ:?}");
        assert_eq!(err.message(), "token type header is not at+jwt", "{typ:?}");
        assert_error_clean(&err, &token);
        assert_eq!(
            kind(h.svc.verify_access_strict(&token).await),
            ErrorKind::TokenInvalid,
            "{typ:?}"
        );
    }
    // A `typ` that is not a string makes the header malformed.
    let token = sign_hs256(&with_typ(&access_header(), Some(&json!(1))), &claims);
    assert_eq!(kind(h.svc.verify_access(&token)), ErrorKind::TokenInvalid);
}

#[tokio::test]
async fn a_refresh_token_without_the_rt_jwt_type_header_is_rejected() {
    let h = harness();
    let pair = issue(&h).await;
    let claims = claims_of(&pair.refresh_token);
    // Control: the same claims under the right header decode (decoding touches no state).
    for typ in ["rt+jwt", "application/rt+jwt", "RT+JWT"] {
        let token = sign_hs256(&with_typ(&refresh_header(), Some(&json!(typ))), &claims);
        h.svc.decode_refresh(&token).unwrap();
    }
    for typ in wrong_typs("at+jwt") {
        let token = sign_hs256(&with_typ(&refresh_header(), typ.as_ref()), &claims);
        let err = h.svc.decode_refresh(&token).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{typ:?}");
        assert_eq!(err.message(), "token type header is not rt+jwt", "{typ:?}");
        assert_error_clean(&err, &token);
        assert_eq!(
            kind(h.svc.refresh(&token).await),
            ErrorKind::TokenInvalid,
            "{typ:?}"
        );
        assert_eq!(
            kind(h.svc.revoke(&token).await),
            ErrorKind::TokenInvalid,
            "{typ:?}"
        );
    }
    // None of the rejected tokens consumed or revoked the family.
    h.svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn oversized_token_is_rejected_cheaply() {
    let h = harness();
    let pair = issue(&h).await;
    let p = segments(&pair.access_token);
    let big = format!(
        "{}.{}{}.{}",
        p[0],
        p[1],
        "A".repeat(psm_jwt::MAX_TOKEN_LEN),
        p[2]
    );
    let err = h.svc.verify_access(&big).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid);
    assert_eq!(err.message(), "token is too long");
}

// ---------------------------------------------------------------------------------------------
// rotation, reuse and revocation

#[tokio::test]
async fn rotation_issues_a_new_pair_in_the_same_family_and_session() {
    let h = harness();
    let first = issue(&h).await;
    h.clock.advance(Duration::from_secs(60));
    let second = h.svc.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.family_id, first.family_id);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.user_id, first.user_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let r1 = h.svc.decode_refresh(&first.refresh_token).unwrap();
    let r2 = h.svc.decode_refresh(&second.refresh_token).unwrap();
    assert_ne!(r1.jti, r2.jti);
    assert_eq!(r2.iat, r1.iat + 60);
    let family = h.store.table.export_family(&first.family_id).unwrap();
    assert_eq!(family.family.current_token.as_str(), r2.jti);
    assert_eq!(family.family.rotations, 1);
    assert_eq!(family.consumed.len(), 1);
    assert_eq!(family.consumed[0].as_str(), r1.jti);
    let third = h.svc.refresh(&second.refresh_token).await.unwrap();
    h.svc
        .verify_access_strict(&third.access_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn only_ids_reach_the_store() {
    let h = harness();
    let alice = user("alice");
    let p1 = h.svc.issue(&alice, &session("s1")).await.unwrap();
    let p2 = h.svc.refresh(&p1.refresh_token).await.unwrap();
    let p3 = h.svc.refresh(&p2.refresh_token).await.unwrap();
    h.svc.revoke_user_tokens(&alice).await.unwrap(); // so an epoch is stored too
    let tokens = [
        &p1.access_token,
        &p1.refresh_token,
        &p2.access_token,
        &p2.refresh_token,
        &p3.access_token,
        &p3.refresh_token,
    ];

    // Everything the store holds, as text.
    let mut records = Vec::new();
    h.store.table.for_each_family(|r| records.push(r));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    let mut stored: Vec<String> = vec![
        r.family.id.to_string(),
        r.family.user_id.to_string(),
        r.family.session_id.as_ref().unwrap().to_string(),
        r.family.current_token.to_string(),
        format!("{r:?}"),
    ];
    stored.extend(r.consumed.iter().map(ToString::to_string));
    h.store
        .table
        .for_each_epoch(|u, e| stored.push(format!("{u:?} {e}")));
    assert_eq!(stored.len(), 8);
    for text in &stored {
        for token in tokens {
            assert_no_secret(text, token);
        }
    }

    // Each stored id is a plain 128-bit id (22 base64url characters) and exactly the id the
    // tokens name, not a token or part of one.
    let plain = |s: &str| s.len() == 22 && URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == 16);
    let jti = |t: &str| claims_of(t)["jti"].as_str().unwrap().to_owned();
    assert!(plain(r.family.id.as_str()));
    assert_eq!(r.family.id, p1.family_id);
    assert_eq!(FamilyId::parse(r.family.id.as_str()).unwrap(), r.family.id);
    assert_eq!(claims_of(&p3.refresh_token)["fam"], r.family.id.as_str());
    assert!(plain(r.family.current_token.as_str()));
    assert_eq!(r.family.current_token.as_str(), jti(&p3.refresh_token));
    let mut consumed: Vec<String> = r.consumed.iter().map(|t| t.as_str().to_owned()).collect();
    consumed.sort();
    let mut expected = vec![jti(&p1.refresh_token), jti(&p2.refresh_token)];
    expected.sort();
    assert_eq!(consumed, expected);
    for id in &r.consumed {
        assert!(plain(id.as_str()));
        assert_eq!(&TokenId::parse(id.as_str()).unwrap(), id);
    }
    // Access token ids never reach the store at all.
    for access in [&p1.access_token, &p2.access_token, &p3.access_token] {
        let id = jti(access);
        assert!(stored.iter().all(|text| !text.contains(&id)));
    }
}

#[tokio::test]
async fn reused_refresh_token_revokes_the_family() {
    let h = harness();
    let first = issue(&h).await;
    let second = h.svc.refresh(&first.refresh_token).await.unwrap();
    let err = h.svc.refresh(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenReuseDetected);
    assert_error_clean(&err, &first.refresh_token);
    // The newest token of the family is dead too, and stays dead.
    let err = h.svc.refresh(&second.refresh_token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
    assert_error_clean(&err, &second.refresh_token);
    assert_eq!(
        kind(h.svc.refresh(&second.refresh_token).await),
        ErrorKind::TokenRevoked
    );
    assert_eq!(
        kind(h.svc.refresh(&first.refresh_token).await),
        ErrorKind::TokenReuseDetected
    );
    assert!(
        h.store
            .table
            .export_family(&first.family_id)
            .unwrap()
            .family
            .revoked
    );
    // AuthService learns the session of the reused token without touching state.
    let claims = h.svc.decode_refresh(&first.refresh_token).unwrap();
    assert_eq!(claims.sid, "session_a1");
    // Other families of the user are untouched.
    let other = issue(&h).await;
    h.svc.refresh(&other.refresh_token).await.unwrap();
}

async fn race(n: usize) {
    let h = harness();
    let pair = issue(&h).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let svc = h.svc.clone();
        let token = pair.refresh_token.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            svc.refresh(&token).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(p) => winners.push(p),
            Err(e) => assert_eq!(e.kind(), ErrorKind::TokenReuseDetected, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of {n} refreshes succeeds");
    let family = h.store.table.export_family(&pair.family_id).unwrap();
    assert_eq!(family.family.rotations, 1);
    // The losers presented a consumed token, so the family is revoked with the winner's token.
    assert!(family.family.revoked);
    assert_eq!(
        kind(h.svc.refresh(&winners[0].refresh_token).await),
        ErrorKind::TokenRevoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_parallel_refreshes_one_wins() {
    for _ in 0..20 {
        race(2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_parallel_refreshes_one_wins() {
    for _ in 0..5 {
        race(64).await;
    }
}

#[tokio::test]
async fn rotation_never_extends_the_family_lifetime() {
    let mut cfg = config();
    cfg.refresh_lifetime = Duration::from_secs(3600);
    cfg.access_ttl = Duration::from_secs(15 * 60);
    let h = harness_with(KeySet::new(hs256("k1")).unwrap(), cfg);
    let start = h.clock.now_secs();
    let family_end = start + 3600;
    let mut pair = issue(&h).await;
    assert_eq!(pair.refresh_expires_at.as_unix_secs(), family_end);
    for step in 1..=5 {
        h.clock.advance(Duration::from_secs(10 * 60));
        pair = h.svc.refresh(&pair.refresh_token).await.unwrap();
        assert_eq!(
            pair.refresh_expires_at.as_unix_secs(),
            family_end,
            "step {step}"
        );
        assert_eq!(
            h.svc.decode_refresh(&pair.refresh_token).unwrap().exp,
            family_end
        );
        let access = h.svc.verify_access(&pair.access_token).unwrap();
        // Access tokens are capped at the family's end.
        assert_eq!(access.exp, (start + step * 600 + 900).min(family_end));
        assert_eq!(pair.access_expires_at.as_unix_secs(), access.exp);
    }
    let family = h.store.table.export_family(&pair.family_id).unwrap().family;
    assert_eq!(family.expires_at.as_unix_secs(), family_end);
    // 60 min in: the family is over (the token's exp too, plus leeway).
    h.clock.advance(Duration::from_secs(10 * 60 + 30));
    let err = h.svc.refresh(&pair.refresh_token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenExpired);
}

#[tokio::test]
async fn an_expired_family_is_reported_by_the_store_within_the_leeway() {
    // Inside the token leeway the token still decodes, but the store's family is over.
    let mut cfg = config();
    cfg.refresh_lifetime = Duration::from_secs(600);
    let h = harness_with(KeySet::new(hs256("k1")).unwrap(), cfg);
    let pair = issue(&h).await;
    h.clock.advance(Duration::from_secs(600 + 10));
    h.svc.decode_refresh(&pair.refresh_token).unwrap();
    assert_eq!(
        kind(h.svc.refresh(&pair.refresh_token).await),
        ErrorKind::TokenExpired
    );
}

#[tokio::test]
async fn revoke_user_tokens_kills_every_earlier_token() {
    let h = harness();
    let alice = user("alice");
    let bob = user("bob");
    let a1 = h.svc.issue(&alice, &session("s1")).await.unwrap();
    let a2 = h.svc.issue(&alice, &session("s2")).await.unwrap();
    let a2b = h.svc.refresh(&a2.refresh_token).await.unwrap();
    let b1 = h.svc.issue(&bob, &session("s3")).await.unwrap();

    assert_eq!(h.svc.revoke_user_tokens(&alice).await.unwrap(), 2);
    for access in [&a1.access_token, &a2.access_token, &a2b.access_token] {
        let err = h.svc.verify_access_strict(access).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenRevoked);
        assert_error_clean(&err, access);
        // The stateless path cannot know: it is bounded by the access ttl.
        h.svc.verify_access(access).unwrap();
    }
    assert_eq!(
        kind(h.svc.refresh(&a1.refresh_token).await),
        ErrorKind::TokenRevoked
    );
    assert_eq!(
        kind(h.svc.refresh(&a2b.refresh_token).await),
        ErrorKind::TokenRevoked
    );
    // Bob is untouched.
    h.svc.verify_access_strict(&b1.access_token).await.unwrap();
    h.svc.refresh(&b1.refresh_token).await.unwrap();
    // A login after the revocation works and carries the new epoch.
    let a3 = h.svc.issue(&alice, &session("s4")).await.unwrap();
    assert_eq!(
        h.svc
            .verify_access_strict(&a3.access_token)
            .await
            .unwrap()
            .epoch,
        1
    );
    let a3b = h.svc.refresh(&a3.refresh_token).await.unwrap();
    assert_eq!(
        h.svc
            .verify_access_strict(&a3b.access_token)
            .await
            .unwrap()
            .epoch,
        1
    );
    // Revoking again counts only live families.
    assert_eq!(h.svc.revoke_user_tokens(&alice).await.unwrap(), 1);
    assert_eq!(
        kind(h.svc.verify_access_strict(&a3b.access_token).await),
        ErrorKind::TokenRevoked
    );
}

#[tokio::test]
async fn a_login_racing_revoke_user_tokens_fails_and_its_family_is_revoked() {
    let (svc, racing) = racing_harness();
    let table = &racing.inner.table;
    let alice = user("alice");
    // The revocation's sweep runs just before the family exists, its epoch bump just after.
    racing.revoke_around_create.store(true, Ordering::SeqCst);
    let err = svc.issue(&alice, &session("s1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
    assert_eq!(err.message(), err.message().to_lowercase());
    assert_eq!(table.user_epoch(&alice), 1);
    let families = table.families_of(&alice);
    assert_eq!(families.len(), 1);
    assert!(table.export_family(&families[0]).unwrap().family.revoked);

    // The hook is spent: the next login works, with the new epoch.
    let pair = svc.issue(&alice, &session("s2")).await.unwrap();
    assert_eq!(
        svc.verify_access_strict(&pair.access_token)
            .await
            .unwrap()
            .epoch,
        1
    );
    svc.refresh(&pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn a_refresh_racing_revoke_user_tokens_fails() {
    let (svc, racing) = racing_harness();
    let table = &racing.inner.table;
    let alice = user("alice");
    let pair = svc.issue(&alice, &session("s1")).await.unwrap();
    // The consume rotates, then a whole revocation runs before the service looks at the epoch.
    racing.revoke_after_consume.store(true, Ordering::SeqCst);
    let err = svc.refresh(&pair.refresh_token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
    assert_error_clean(&err, &pair.refresh_token);
    assert!(table.export_family(&pair.family_id).unwrap().family.revoked);
    assert_eq!(
        kind(svc.verify_access_strict(&pair.access_token).await),
        ErrorKind::TokenRevoked
    );
    // The presented token was consumed: presenting it again is reuse.
    assert_eq!(
        kind(svc.refresh(&pair.refresh_token).await),
        ErrorKind::TokenReuseDetected
    );
}

#[tokio::test]
async fn revoke_user_tokens_sweeps_again_after_raising_the_epoch() {
    let (svc, racing) = racing_harness();
    let table = &racing.inner.table;
    let alice = user("alice");
    let early = svc.issue(&alice, &session("s1")).await.unwrap();
    // A login that read the old epoch twice (before and after creating its family) and whose
    // family landed between the first sweep and the bump: only a second sweep can end it.
    let late = FamilyId::parse("late_family_0123456789").unwrap();
    *racing.create_before_bump.lock().unwrap() = Some(NewTokenFamily {
        id: late.clone(),
        user_id: alice.clone(),
        session_id: Some(session("s2")),
        first_token: TokenId::parse("late_token_0123456789a").unwrap(),
        expires_at: racing.inner.clock.now_ts().plus_secs(3600),
    });
    assert_eq!(svc.revoke_user_tokens(&alice).await.unwrap(), 2);
    assert!(table.export_family(&late).unwrap().family.revoked);
    assert!(
        table
            .export_family(&early.family_id)
            .unwrap()
            .family
            .revoked
    );
    assert_eq!(table.user_epoch(&alice), 1);
}

#[tokio::test]
async fn a_token_from_a_future_epoch_fails_closed() {
    // A store that lost its epochs (a fresh store) must not accept tokens of a later epoch.
    let h = harness();
    let alice = user("alice");
    h.svc.revoke_user_tokens(&alice).await.unwrap();
    let pair = h.svc.issue(&alice, &session("s1")).await.unwrap();
    let fresh = harness_with(KeySet::new(hs256("k1")).unwrap(), config());
    fresh.svc.verify_access(&pair.access_token).unwrap();
    assert_eq!(
        kind(fresh.svc.verify_access_strict(&pair.access_token).await),
        ErrorKind::TokenInvalid
    );
    // And a refresh against a store that never saw the family.
    assert_eq!(
        kind(fresh.svc.refresh(&pair.refresh_token).await),
        ErrorKind::TokenInvalid
    );
}

#[tokio::test]
async fn revoke_ends_one_family() {
    let h = harness();
    let pair = issue(&h).await;
    let other = issue(&h).await;
    assert!(h.svc.revoke(&pair.refresh_token).await.unwrap());
    assert!(!h.svc.revoke(&pair.refresh_token).await.unwrap());
    assert_eq!(
        kind(h.svc.refresh(&pair.refresh_token).await),
        ErrorKind::TokenRevoked
    );
    h.svc.refresh(&other.refresh_token).await.unwrap();
    // Logging out with an expired refresh token still works (and reports the family as gone).
    let late = issue(&h).await;
    h.clock.advance(Duration::from_secs(31 * 24 * 3600));
    assert_eq!(
        kind(h.svc.decode_refresh(&late.refresh_token)),
        ErrorKind::TokenExpired
    );
    assert!(!h.svc.revoke(&late.refresh_token).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// keys and configuration

#[test]
fn short_hmac_secrets_are_a_configuration_error() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let err = SigningKey::hmac("k", alg, &HMAC_SECRET[..min - 1]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ProviderConfiguration, "{alg}");
        assert_no_secret(&format!("{err:?} {err}"), "x");
        SigningKey::hmac("k", alg, &HMAC_SECRET[..min]).unwrap();
    }
    assert_eq!(
        kind(SigningKey::hmac("k", Algorithm::HS256, b"")),
        ErrorKind::ProviderConfiguration
    );
    // HMAC constructor with an asymmetric algorithm, and the reverse.
    assert_eq!(
        kind(SigningKey::hmac("k", Algorithm::ES256, HMAC_SECRET)),
        ErrorKind::ProviderConfiguration
    );
    assert_eq!(
        kind(SigningKey::from_private_pem(
            "k",
            Algorithm::HS256,
            HMAC_SECRET,
            b""
        )),
        ErrorKind::ProviderConfiguration
    );
    assert_eq!(
        kind(SigningKey::verify_only_pem(
            "k",
            Algorithm::HS256,
            ES256_A_PUB
        )),
        ErrorKind::ProviderConfiguration
    );
    // Key ids are validated.
    for kid in ["", "a b", "k/1", &"k".repeat(129)] {
        assert_eq!(
            kind(SigningKey::hmac(kid, Algorithm::HS256, HMAC_SECRET)),
            ErrorKind::ProviderConfiguration
        );
    }
}

#[test]
fn asymmetric_keys_must_fit_their_algorithm() {
    let cfg_err = |r: Result<SigningKey>| assert_eq!(kind(r), ErrorKind::ProviderConfiguration);
    // SEC1 EC keys are not supported by jsonwebtoken: refused with a clear error.
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ES256_A_SEC1,
        b"",
    ));
    // Wrong curve, wrong key type.
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ES384,
        b"",
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ED25519,
        b"",
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        RS256,
        b"",
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::RS256,
        ES256_A,
        b"",
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::EdDSA,
        ES256_A,
        b"",
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::EdDSA,
        b"not a pem",
        b"",
    ));
    // A public key that does not match the private key.
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ES256_A,
        ES256_B_PUB,
    ));
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ES256_A,
        RS256_PUB,
    ));
    // Public PEMs given as private keys, and the reverse.
    cfg_err(SigningKey::from_private_pem(
        "k",
        Algorithm::ES256,
        ES256_A_PUB,
        b"",
    ));
    cfg_err(SigningKey::verify_only_pem("k", Algorithm::ES256, ES256_A));
    cfg_err(SigningKey::verify_only_pem(
        "k",
        Algorithm::ES256,
        RS256_PUB,
    ));
    cfg_err(SigningKey::verify_only_pem(
        "k",
        Algorithm::RS256,
        ES256_A_PUB,
    ));
    cfg_err(SigningKey::verify_only_pem(
        "k",
        Algorithm::EdDSA,
        ES256_A_PUB,
    ));
    // The derived public half is used when no public PEM is given.
    for (alg, pem) in [
        (Algorithm::ES256, ES256_B),
        (Algorithm::EdDSA, ED25519),
        (Algorithm::RS256, RS256),
    ] {
        let key = SigningKey::from_private_pem("k", alg, pem, b"").unwrap();
        assert!(key.can_sign());
        assert_eq!(key.algorithm(), alg);
    }
    let verify_only = SigningKey::verify_only_pem("k", Algorithm::EdDSA, ED25519_PUB).unwrap();
    assert!(!verify_only.can_sign());
}

#[tokio::test]
async fn key_sets_rotate() {
    // Epoch 1: key "2024" signs.
    let old = harness_with(
        KeySet::new(SigningKey::from_private_pem("2024", Algorithm::ES256, ES256_A, b"").unwrap())
            .unwrap(),
        config(),
    );
    let old_pair = issue(&old).await;

    // Epoch 2: key "2025" signs, "2024" is verify-only; same state store.
    let keys = KeySet::new(
        SigningKey::from_private_pem("2025", Algorithm::ES256, ES256_B, ES256_B_PUB).unwrap(),
    )
    .unwrap()
    .with_verify_key(SigningKey::verify_only_pem("2024", Algorithm::ES256, ES256_A_PUB).unwrap())
    .unwrap();
    assert_eq!(keys.kids().collect::<Vec<_>>(), ["2025", "2024"]);
    assert_eq!(keys.current().kid(), "2025");
    let new = harness_on(keys, config(), &old.store);
    new.svc.verify_access(&old_pair.access_token).unwrap();
    let rotated = new.svc.refresh(&old_pair.refresh_token).await.unwrap();
    for token in [&rotated.access_token, &rotated.refresh_token] {
        assert_eq!(header_of(token)["kid"], "2025");
    }
    let fresh = issue(&new).await;
    assert_eq!(header_of(&fresh.access_token)["kid"], "2025");
    new.svc.verify_access(&fresh.access_token).unwrap();
    // The old service does not know "2025".
    assert_eq!(
        kind(old.svc.verify_access(&fresh.access_token)),
        ErrorKind::TokenInvalid
    );

    // Epoch 3: "2024" dropped: its tokens are rejected as an unknown kid.
    let newest = harness_on(
        KeySet::new(SigningKey::from_private_pem("2025", Algorithm::ES256, ES256_B, b"").unwrap())
            .unwrap(),
        config(),
        &old.store,
    );
    let err = newest
        .svc
        .verify_access(&old_pair.access_token)
        .unwrap_err();
    assert_eq!(err.message(), "token key id is unknown");

    // A signing key added for verification is only used to verify.
    let keys = KeySet::new(hs256("a"))
        .unwrap()
        .with_verify_key(hs256("b"))
        .unwrap();
    let h = harness_with(keys, config());
    assert_eq!(header_of(&issue(&h).await.access_token)["kid"], "a");
}

#[test]
fn key_set_rules() {
    let verify_only = SigningKey::verify_only_pem("v", Algorithm::ES256, ES256_A_PUB).unwrap();
    assert_eq!(
        kind(KeySet::new(verify_only)),
        ErrorKind::ProviderConfiguration
    );
    let dup = KeySet::new(hs256("k1"))
        .unwrap()
        .with_verify_key(es256_a("k1"));
    assert_eq!(kind(dup), ErrorKind::ProviderConfiguration);
}

#[test]
fn configuration_is_validated() {
    let mut cfg = config();
    cfg.validate().unwrap();
    assert_eq!(cfg.access_ttl, Duration::from_secs(900));
    assert_eq!(cfg.refresh_lifetime, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(cfg.leeway, Duration::from_secs(30));
    cfg.leeway = Duration::from_secs(60);
    cfg.validate().unwrap();
    cfg.leeway = Duration::from_secs(61);
    assert_eq!(kind(cfg.validate()), ErrorKind::ProviderConfiguration);
    cfg.leeway = Duration::from_millis(60_001);
    assert_eq!(kind(cfg.validate()), ErrorKind::ProviderConfiguration);
    let store = TableStore::new(psm_core::ManualClock::at_2024());
    let new = psm_jwt::TokenService::new(
        KeySet::new(hs256("k1")).unwrap(),
        cfg,
        Arc::new(store.clone()),
        Arc::new(store.clock.clone()),
        Arc::new(psm_core::OsRandom),
    );
    assert_eq!(kind(new), ErrorKind::ProviderConfiguration);
    for bad in [
        TokenConfig::new("", AUDIENCE),
        TokenConfig::new(ISSUER, ""),
        TokenConfig {
            access_ttl: Duration::ZERO,
            ..config()
        },
        TokenConfig {
            refresh_lifetime: Duration::ZERO,
            ..config()
        },
        TokenConfig {
            access_ttl: Duration::from_secs(86_401),
            ..config()
        },
    ] {
        assert_eq!(kind(bad.validate()), ErrorKind::ProviderConfiguration);
    }
}

// ---------------------------------------------------------------------------------------------
// no secrets in Debug or errors

#[tokio::test]
async fn debug_output_holds_no_secret_or_token() {
    let hmac = hs256("k1");
    let es = es256_a("es");
    let rs = rs256("rs");
    let ed = ed25519("ed");
    let keys = KeySet::new(hmac.clone())
        .unwrap()
        .with_verify_key(es.clone())
        .unwrap();
    let h = harness_with(keys.clone(), config());
    let pair = issue(&h).await;
    let dumps = [
        format!("{hmac:?}"),
        format!("{es:?}"),
        format!("{rs:?}"),
        format!("{ed:?}"),
        format!("{keys:?}"),
        format!("{keys:#?}"),
        format!("{pair:?}"),
        format!("{pair:#?}"),
        format!("{:?}", h.svc),
        format!("{:#?}", h.svc),
    ];
    let pem_lines: Vec<&str> = [ES256_A, RS256, ED25519, ES256_A_PUB, RS256_PUB]
        .iter()
        .flat_map(|pem| std::str::from_utf8(pem).unwrap().lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for dump in &dumps {
        assert_no_secret(dump, &pair.access_token);
        assert_no_secret(dump, &pair.refresh_token);
        for line in &pem_lines {
            assert!(!dump.contains(line), "key material leaked: {dump}");
        }
        // No byte-array rendering of the secret either.
        assert!(
            !dump.contains(
                &format!("{:?}", &HMAC_SECRET[..8])
                    .trim_end_matches(']')
                    .to_owned()
            )
        );
    }
    assert!(dumps[0].contains("k1") && dumps[0].contains("HS256"));
    assert!(dumps[6].contains("[redacted]"));
}

#[tokio::test]
async fn a_remembered_token_answers_as_a_fresh_verification_and_its_mutations_still_fail() {
    let h = harness();
    let pair = issue(&h).await;
    let first = h.svc.verify_access(&pair.access_token).unwrap();
    assert_eq!(h.svc.verify_access(&pair.access_token).unwrap(), first);
    // Every one-character change of a remembered token is verified from scratch, and fails.
    let bytes = pair.access_token.as_bytes();
    for at in (0..bytes.len()).step_by(7) {
        let mut changed = bytes.to_vec();
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        if changed != pair.access_token {
            assert!(
                h.svc.verify_access(&changed).is_err(),
                "mutation at {at} verified"
            );
        }
    }
    // Revocation still reaches a remembered token through the strict check.
    h.svc
        .revoke_user_tokens(&psm_core::UserId::parse(&first.sub).unwrap())
        .await
        .unwrap();
    assert_eq!(
        kind(h.svc.verify_access_strict(&pair.access_token).await),
        ErrorKind::TokenRevoked
    );
}
