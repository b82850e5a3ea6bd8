//! Password policy and argon2id hashing, always on Tokio's blocking pool.

use argon2::{Algorithm, Argon2, PasswordHasher, PasswordVerifier, Version};
use psm_core::{Error, ErrorKind, PasswordHash, RandomSource, Result};

use crate::auth::config::{Argon2Params, AuthConfig};

/// Salt bytes per hash (argon2's recommended length).
const SALT_BYTES: usize = 16;

/// Checks the password policy: only the length, counted in characters (NIST SP 800-63B and OWASP ask
/// for no composition rules).
pub(crate) fn check_policy(config: &AuthConfig, password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < config.password_min_chars || chars > config.password_max_chars {
        // The message names the bounds, never the password or its length.
        return Err(Error::new(
            ErrorKind::Validation,
            "password length is outside the policy",
        )
        .with_detail("field", "password")
        .with_detail("min_chars", config.password_min_chars)
        .with_detail("max_chars", config.password_max_chars));
    }
    Ok(())
}

/// Hashes `password` with argon2id on the blocking pool, salted from `rng`.
pub(crate) async fn hash(
    params: Argon2Params,
    rng: &dyn RandomSource,
    password: String,
) -> Result<PasswordHash> {
    let params = params.to_argon2()?;
    let mut salt = [0u8; SALT_BYTES];
    rng.fill(&mut salt)?;
    let phc = tokio::task::spawn_blocking(move || {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|_| Error::provider("password hashing task failed"))?
    .map_err(|e| Error::provider("password hashing failed").with_source(e))?;
    PasswordHash::new(&phc)
}

/// Verifies `password` against `hash` on the blocking pool, in constant time (argon2 compares the
/// outputs without early exit). The cost comes from the hash's own parameters.
///
/// Returns `false` for a wrong password and for a hash argon2 cannot read.
pub(crate) async fn verify(hash: PasswordHash, password: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .map_err(|_| Error::provider("password verification task failed"))
}

#[cfg(test)]
mod tests {
    use psm_core::OsRandom;

    use super::*;

    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let h = hash(CHEAP, &OsRandom, "correct horse".to_owned())
            .await
            .unwrap();
        assert!(h.as_str().starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        assert!(!h.as_str().contains("correct horse"));
        assert!(verify(h.clone(), "correct horse".to_owned()).await.unwrap());
        assert!(!verify(h, "correct horsE".to_owned()).await.unwrap());
        let other = hash(CHEAP, &OsRandom, "correct horse".to_owned())
            .await
            .unwrap();
        assert_ne!(
            other,
            hash(CHEAP, &OsRandom, "correct horse".to_owned())
                .await
                .unwrap(),
            "salted"
        );
    }

    #[tokio::test]
    async fn unreadable_hash_does_not_verify() {
        let h = PasswordHash::new("$argon2id$garbage").unwrap();
        assert!(!verify(h, "whatever1".to_owned()).await.unwrap());
    }

    #[test]
    fn policy_counts_characters() {
        let c = AuthConfig::default();
        assert!(check_policy(&c, "1234567").is_err());
        assert!(check_policy(&c, "12345678").is_ok());
        // Eight characters, sixteen bytes.
        assert!(check_policy(&c, "éééééééé").is_ok());
        assert!(check_policy(&c, &"x".repeat(128)).is_ok());
        let e = check_policy(&c, &"x".repeat(129)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation);
        assert!(!e.to_string().contains("xxxx"));
    }
}
