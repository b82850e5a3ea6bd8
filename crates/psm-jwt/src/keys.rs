//! Keys: [`SigningKey`] (one `kid`, one pinned algorithm) and [`KeySet`] (the current signing key
//! plus keys kept for verification during rotation).

use std::{fmt, sync::Arc};

use aws_lc_rs::hmac;
use jsonwebtoken::{DecodingKey, EncodingKey, crypto, jwk::EllipticCurve};
use psm_core::{Error, Result};

use crate::Algorithm;

/// Longest accepted key id, in bytes.
const MAX_KID_LEN: usize = 128;

/// What a key is probed with at construction, so a mismatched pair fails at startup, not per token.
const PROBE: &[u8] = b"psm-jwt key probe";

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One key with its id (`kid`) and the one algorithm it may be used with.
///
/// A key that can sign (HMAC or a private key) also verifies; a verify-only key
/// ([`SigningKey::verify_only_pem`]) is what a retired key becomes after rotation. `Debug` shows the
/// id, the algorithm and whether the key can sign, never key material.
#[derive(Clone)]
pub struct SigningKey {
    kid: Box<str>,
    alg: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// For HMAC keys, the verification key prepared once (jsonwebtoken's verify prepares it on
    /// every call).
    hmac: Option<hmac::Key>,
}

fn hmac_key(alg: Algorithm, secret: &[u8]) -> Option<hmac::Key> {
    let algorithm = match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => return None,
    };
    Some(hmac::Key::new(algorithm, secret))
}

fn check_kid(kid: &str) -> Result<()> {
    if !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err(Error::configuration(
            "key id must be 1 to 128 ascii letters, digits, '-', '_' or '.'",
        ))
    }
}

fn bad_pem(which: &'static str, alg: Algorithm) -> Error {
    Error::configuration(which).with_detail("algorithm", alg)
}

/// Parses a public PEM into a verification key for `alg` and checks its shape (curve, size).
fn public_from_pem(alg: Algorithm, public_pem: &[u8]) -> Result<DecodingKey> {
    let not_public = || {
        bad_pem(
            "public key pem does not hold a public key for this algorithm",
            alg,
        )
    };
    let key = match alg {
        Algorithm::ES256 => DecodingKey::from_ec_pem(public_pem).map_err(|_| not_public())?,
        Algorithm::EdDSA => DecodingKey::from_ed_pem(public_pem).map_err(|_| not_public())?,
        Algorithm::RS256 => DecodingKey::from_rsa_pem(public_pem).map_err(|_| not_public())?,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Err(bad_pem(
                "hmac keys have no public half; use SigningKey::hmac",
                alg,
            ));
        }
    };
    let bytes = key.try_get_as_bytes().map_err(|_| not_public())?;
    let shape_ok = match alg {
        // An uncompressed P-256 point; a P-384 key would be 97 bytes.
        Algorithm::ES256 => bytes.len() == 65 && bytes.first() == Some(&4),
        Algorithm::EdDSA => bytes.len() == 32,
        // aws-lc refuses moduli outside 2048..=8192 bits when verifying; checked again here so a
        // short key fails at startup.
        Algorithm::RS256 => (crypto::aws_lc::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key)(bytes)
        .is_ok_and(|(n, _)| significant_len(&n) >= MIN_RSA_MODULUS_BYTES),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => false,
    };
    if shape_ok {
        Ok(key)
    } else {
        Err(bad_pem(
            "public key has the wrong curve or size for this algorithm",
            alg,
        ))
    }
}

/// Length of a big-endian integer without leading zero bytes.
fn significant_len(n: &[u8]) -> usize {
    n.len() - n.iter().take_while(|b| **b == 0).count()
}

/// Whether `encoding` signs something `decoding` accepts under `alg`.
fn pair_matches(alg: Algorithm, encoding: &EncodingKey, decoding: &DecodingKey) -> bool {
    let alg = alg.to_jwt();
    crypto::sign(PROBE, encoding, alg)
        .and_then(|sig| crypto::verify(&sig, PROBE, decoding, alg))
        .unwrap_or(false)
}

impl SigningKey {
    /// An HMAC key.
    ///
    /// # Errors
    /// `ProviderConfiguration` when `alg` is not an HS algorithm, the key id is malformed (1 to 128
    /// ascii letters, digits, `-`, `_`, `.`), or `secret` is shorter than 32 bytes. Following
    /// RFC 7518 section 3.2, HS384 and HS512 need at least 48 and 64 bytes (the hash size).
    pub fn hmac(kid: &str, alg: Algorithm, secret: &[u8]) -> Result<Self> {
        check_kid(kid)?;
        let Some(min) = alg.min_hmac_secret_len() else {
            return Err(Error::configuration(
                "SigningKey::hmac needs an hs algorithm; use from_private_pem for asymmetric keys",
            )
            .with_detail("algorithm", alg));
        };
        if secret.len() < min {
            return Err(Error::configuration("hmac secret is too short")
                .with_detail("algorithm", alg)
                .with_detail("min_bytes", min)
                .with_detail("bytes", secret.len()));
        }
        Ok(Self {
            kid: kid.into(),
            alg,
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
            hmac: hmac_key(alg, secret),
        })
    }

    /// An asymmetric key from a PKCS#8 private PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// The public half used for verification is derived from the private key. `public_pem` may be
    /// empty; when it is not, it must be the matching public key (SPKI PEM) and is checked against
    /// the private key. ES256 takes a P-256 key, EdDSA an Ed25519 key, RS256 an RSA key of at least
    /// 2048 bits. SEC1 (`BEGIN EC PRIVATE KEY`) is not supported by `jsonwebtoken`; convert it with
    /// `openssl pkcs8 -topk8 -nocrypt`.
    ///
    /// # Errors
    /// `ProviderConfiguration` when `alg` is an HS algorithm, the key id is malformed, a PEM cannot
    /// be parsed or does not fit `alg`, or the public key does not match the private key.
    pub fn from_private_pem(
        kid: &str,
        alg: Algorithm,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self> {
        check_kid(kid)?;
        let not_private = || {
            bad_pem(
                "private key pem does not hold a pkcs#8 private key for this algorithm",
                alg,
            )
        };
        let utils = &crypto::aws_lc::DEFAULT_PROVIDER.key_utils;
        let (encoding, derived) = match alg {
            Algorithm::ES256 => {
                let enc = EncodingKey::from_ec_pem(private_pem).map_err(|_| not_private())?;
                let (curve, x, y) =
                    (utils.ec_pub_components_from_private_key)(enc.as_bytes(), alg.to_jwt())
                        .map_err(|_| not_private())?;
                if curve != EllipticCurve::P256 {
                    return Err(not_private());
                }
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (enc, DecodingKey::from_ec_der(&point))
            }
            Algorithm::EdDSA => {
                let enc = EncodingKey::from_ed_pem(private_pem).map_err(|_| not_private())?;
                let public = (utils.ed_pub_components_from_private_key)(
                    enc.as_bytes(),
                    &EllipticCurve::Ed25519,
                )
                .map_err(|_| not_private())?;
                (enc, DecodingKey::from_ed_der(&public))
            }
            Algorithm::RS256 => {
                let enc = EncodingKey::from_rsa_pem(private_pem).map_err(|_| not_private())?;
                let (n, e) = (utils.rsa_pub_components_from_private_key)(enc.as_bytes())
                    .map_err(|_| not_private())?;
                if significant_len(&n) < MIN_RSA_MODULUS_BYTES {
                    return Err(bad_pem("rsa keys must have at least 2048 bits", alg));
                }
                (enc, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(bad_pem(
                    "hs algorithms take a shared secret; use SigningKey::hmac",
                    alg,
                ));
            }
        };
        if !pair_matches(alg, &encoding, &derived) {
            return Err(not_private());
        }
        if !public_pem.is_empty() {
            let given = public_from_pem(alg, public_pem)?;
            if !pair_matches(alg, &encoding, &given) {
                return Err(bad_pem(
                    "public key pem does not match the private key",
                    alg,
                ));
            }
        }
        Ok(Self {
            kid: kid.into(),
            alg,
            encoding: Some(encoding),
            decoding: derived,
            hmac: None,
        })
    }

    /// A verify-only asymmetric key from a public PEM (SPKI, `-----BEGIN PUBLIC KEY-----`): what a
    /// key retired from signing becomes, so tokens it signed keep verifying until they expire.
    ///
    /// # Errors
    /// `ProviderConfiguration` when `alg` is an HS algorithm, the key id is malformed, or the PEM
    /// does not hold a public key of the right type, curve or size for `alg`.
    pub fn verify_only_pem(kid: &str, alg: Algorithm, public_pem: &[u8]) -> Result<Self> {
        check_kid(kid)?;
        let decoding = public_from_pem(alg, public_pem)?;
        Ok(Self {
            kid: kid.into(),
            alg,
            encoding: None,
            decoding,
            hmac: None,
        })
    }

    /// This key's id (the `kid` header of the tokens it signs).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key is used with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether the key can sign (false for [`SigningKey::verify_only_pem`] keys).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// A copy of this key that can only verify (for keeping a retired HMAC or private key).
    #[must_use]
    pub fn to_verify_only(&self) -> Self {
        Self {
            kid: self.kid.clone(),
            alg: self.alg,
            encoding: None,
            decoding: self.decoding.clone(),
            hmac: self.hmac.clone(),
        }
    }

    /// The prepared HMAC verification key, for HS algorithms.
    pub(crate) fn hmac_verifier(&self) -> Option<&hmac::Key> {
        self.hmac.as_ref()
    }

    pub(crate) fn encoding(&self) -> Option<&EncodingKey> {
        self.encoding.as_ref()
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.alg)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

/// The keys of a [`crate::TokenService`]: one current key that signs, and any number of keys
/// accepted for verification only (rotation). A token's `kid` header names the key that verifies
/// it; a token whose `kid` is not in the set is rejected.
///
/// Cloning is cheap (the keys are shared). `Debug` lists key ids and algorithms only.
#[derive(Clone)]
pub struct KeySet {
    /// Index 0 is the current (signing) key.
    keys: Arc<[SigningKey]>,
}

impl KeySet {
    /// A key set whose `current` key signs every new token.
    ///
    /// # Errors
    /// `ProviderConfiguration` when `current` cannot sign (a verify-only key).
    pub fn new(current: SigningKey) -> Result<Self> {
        if !current.can_sign() {
            return Err(
                Error::configuration("the current key of a key set must be able to sign")
                    .with_detail("kid", current.kid()),
            );
        }
        Ok(Self {
            keys: Arc::from(vec![current]),
        })
    }

    /// Adds `key` for verification only (a key that can sign is still used only to verify).
    ///
    /// # Errors
    /// `ProviderConfiguration` when a key with the same id is already in the set.
    pub fn with_verify_key(self, key: SigningKey) -> Result<Self> {
        if self.find(key.kid()).is_some() {
            return Err(
                Error::configuration("duplicate key id in key set").with_detail("kid", key.kid())
            );
        }
        let mut keys: Vec<SigningKey> = self.keys.iter().cloned().collect();
        keys.push(key.to_verify_only());
        Ok(Self {
            keys: Arc::from(keys),
        })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        // `keys` is never empty: `new` puts the current key first and nothing removes keys.
        &self.keys[0]
    }

    /// The ids of every key in the set, the current one first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(SigningKey::kid)
    }

    /// The key named `kid`. A linear scan: sets hold a handful of keys, and comparing a few short
    /// strings beats hashing one.
    pub(crate) fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| &*k.kid == kid)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("current", self.current())
            .field("verify_only", &&self.keys[1..])
            .finish()
    }
}
