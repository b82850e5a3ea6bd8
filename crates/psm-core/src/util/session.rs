//! Session id generation and normalization.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{Error, ErrorKind, MAX_SESSION_ID_LEN, OsRandom, RandomSource, Result, SessionId};

/// The prefix [`generate_session_id`] callers use when they have no better one (the seed's default).
pub const DEFAULT_SESSION_PREFIX: &str = "session";

/// Random bytes in an id from [`generate_session_id`]: 16, the 128 bits RULES.md requires.
///
/// The seed's `length = 32` asked for more; 128 bits from the OS CSPRNG are already far beyond
/// guessing (OWASP asks for 64), and the resulting `session_` + 22 characters (30 bytes) fit inline
/// in the memory store's one-cache-line record, where a longer id costs an extra cache miss on every
/// check. Callers who want more pass a larger count to [`generate_session_id_with`].
pub const DEFAULT_SESSION_RANDOM_BYTES: usize = 16;

/// Fewest random bytes [`generate_session_id_with`] accepts: 16 bytes are the 128 bits RULES.md requires.
pub const MIN_SESSION_RANDOM_BYTES: usize = 16;

/// Generates `<prefix>_<random>` with 32 bytes from the operating system's CSPRNG, encoded as URL-safe
/// base64 without padding.
///
/// An empty prefix yields the random part alone, without the underscore.
///
/// ```
/// use psm_core::{is_valid_session_id, util::{DEFAULT_SESSION_PREFIX, generate_session_id}};
///
/// let id = generate_session_id(DEFAULT_SESSION_PREFIX)?;
/// assert!(id.as_str().starts_with("session_"));
/// assert_eq!(id.as_str().len(), "session_".len() + 22);
/// assert!(is_valid_session_id(id.as_str()));
/// # Ok::<(), psm_core::Error>(())
/// ```
///
/// # Errors
/// See [`generate_session_id_with`].
pub fn generate_session_id(prefix: &str) -> Result<SessionId> {
    generate_session_id_with(&OsRandom, prefix, DEFAULT_SESSION_RANDOM_BYTES)
}

/// Generates `<prefix>_<random>` with `random_bytes` bytes from `rng`, encoded as URL-safe base64
/// without padding, so the result is always a valid session id.
///
/// An empty prefix yields the random part alone, without the underscore.
///
/// # Errors
/// - [`ErrorKind::Validation`] when `random_bytes` is below [`MIN_SESSION_RANDOM_BYTES`];
/// - [`ErrorKind::InvalidSessionId`] when `prefix` has characters other than ASCII letters, digits,
///   `-` and `_`, or when the id would be longer than 255 bytes;
/// - whatever `rng` returns when it fails (an [`ErrorKind::Provider`] for [`OsRandom`]).
pub fn generate_session_id_with(
    rng: &dyn RandomSource,
    prefix: &str,
    random_bytes: usize,
) -> Result<SessionId> {
    if random_bytes < MIN_SESSION_RANDOM_BYTES {
        return Err(
            Error::validation("session ids need at least 16 random bytes")
                .with_detail("random_bytes", random_bytes)
                .with_detail("min", MIN_SESSION_RANDOM_BYTES),
        );
    }
    if !prefix.bytes().all(is_session_id_byte) {
        return Err(Error::new(
            ErrorKind::InvalidSessionId,
            "session id prefix may only contain ascii letters, digits, '-' and '_'",
        ));
    }
    // Checked before allocating, so an absurd `random_bytes` costs nothing.
    let separator = usize::from(!prefix.is_empty());
    let total = encoded_len(random_bytes).and_then(|n| n.checked_add(prefix.len() + separator));
    if total.is_none_or(|n| n > MAX_SESSION_ID_LEN) {
        return Err(Error::new(
            ErrorKind::InvalidSessionId,
            "generated session id would be longer than 255 bytes",
        )
        .with_detail("prefix_length", prefix.len())
        .with_detail("random_bytes", random_bytes));
    }
    let mut buf = vec![0u8; random_bytes];
    rng.fill(&mut buf)?;
    let mut id = String::with_capacity(total.unwrap_or(0));
    id.push_str(prefix);
    if separator == 1 {
        id.push('_');
    }
    URL_SAFE_NO_PAD.encode_string(&buf, &mut id);
    SessionId::try_from(id)
}

/// Turns `s` into a session id by dropping every character outside `[A-Za-z0-9_-]` and truncating the
/// rest to 255 bytes.
///
/// ```
/// use psm_core::util::normalize_session_id;
///
/// assert_eq!(normalize_session_id(" sess ion/42! ")?.as_str(), "session42");
/// assert!(normalize_session_id("!!!").is_err());
/// # Ok::<(), psm_core::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidSessionId`] when no valid character remains.
pub fn normalize_session_id(s: &str) -> Result<SessionId> {
    // Every kept character is ASCII, so bytes and characters coincide and truncation is exact.
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii() && is_session_id_byte(*c as u8))
        .take(MAX_SESSION_ID_LEN)
        .collect();
    if kept.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidSessionId,
            "session id has no valid characters",
        )
        .with_detail("length", s.len()));
    }
    SessionId::try_from(kept)
}

fn is_session_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Length of unpadded base64 for `n` bytes: `ceil(4n / 3)`, or `None` on overflow.
fn encoded_len(n: usize) -> Option<usize> {
    let full = (n / 3).checked_mul(4)?;
    Some(full + [0, 2, 3][n % 3])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::is_valid_session_id;

    /// A deterministic source so tests can see exactly what was encoded.
    #[derive(Debug)]
    struct Fixed(u8);

    impl RandomSource for Fixed {
        fn fill(&self, buf: &mut [u8]) -> Result<()> {
            buf.fill(self.0);
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Broken;

    impl RandomSource for Broken {
        fn fill(&self, _: &mut [u8]) -> Result<()> {
            Err(Error::provider("no entropy"))
        }
    }

    #[test]
    fn default_id_has_prefix_and_128_bits() {
        let id = generate_session_id(DEFAULT_SESSION_PREFIX).unwrap();
        let (prefix, random) = id.as_str().split_at("session_".len());
        assert_eq!(prefix, "session_");
        assert_eq!(random.len(), 22);
        assert_eq!(URL_SAFE_NO_PAD.decode(random).unwrap().len(), 16);
    }

    #[test]
    fn encodes_url_safe_without_padding() {
        let id = generate_session_id_with(&Fixed(0xff), "p", 16).unwrap();
        assert_eq!(id.as_str(), "p______________________w");
        let id = generate_session_id_with(&Fixed(0xfb), "", 16).unwrap();
        assert_eq!(id.as_str(), "-_v7-_v7-_v7-_v7-_v7-w");
    }

    #[test]
    fn rejects_weak_bad_prefix_and_overlong() {
        let e = generate_session_id_with(&OsRandom, "s", 15).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation);
        for bad in ["a b", "a.b", "é", "a/b"] {
            let e = generate_session_id_with(&OsRandom, bad, 16).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidSessionId, "{bad:?}");
        }
        // 232 + 1 + 22 = 255 fits; one more byte of prefix does not.
        assert_eq!(
            generate_session_id_with(&OsRandom, &"p".repeat(232), 16)
                .unwrap()
                .as_str()
                .len(),
            255
        );
        let e = generate_session_id_with(&OsRandom, &"p".repeat(233), 16).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSessionId);
        let e = generate_session_id_with(&OsRandom, "p", usize::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSessionId);
    }

    #[test]
    fn propagates_rng_failure() {
        assert_eq!(
            generate_session_id_with(&Broken, "s", 16)
                .unwrap_err()
                .kind(),
            ErrorKind::Provider
        );
    }

    #[test]
    fn normalize_keeps_valid_characters_and_truncates() {
        assert_eq!(
            normalize_session_id("abc-DEF_123").unwrap().as_str(),
            "abc-DEF_123"
        );
        assert_eq!(
            normalize_session_id("ünï/code..id").unwrap().as_str(),
            "ncodeid"
        );
        assert_eq!(
            normalize_session_id(&"x".repeat(300))
                .unwrap()
                .as_str()
                .len(),
            255
        );
        for bad in ["", "   ", "é/.", "\u{0}"] {
            assert_eq!(
                normalize_session_id(bad).unwrap_err().kind(),
                ErrorKind::InvalidSessionId
            );
        }
    }

    #[test]
    fn encoded_len_matches_the_engine() {
        for n in 0..64 {
            assert_eq!(
                encoded_len(n),
                Some(URL_SAFE_NO_PAD.encode(vec![0u8; n]).len())
            );
        }
        assert_eq!(encoded_len(usize::MAX), None);
    }

    proptest! {
        #[test]
        fn generated_ids_are_valid_and_strong(prefix in "[A-Za-z0-9_-]{0,40}", extra in 0usize..64) {
            let id = generate_session_id_with(&OsRandom, &prefix, MIN_SESSION_RANDOM_BYTES + extra).unwrap();
            prop_assert!(is_valid_session_id(id.as_str()));
            let random = if prefix.is_empty() {
                id.as_str()
            } else {
                let expected = format!("{prefix}_");
                prop_assert!(id.as_str().starts_with(&expected));
                &id.as_str()[prefix.len() + 1..]
            };
            prop_assert!(random.len() >= 22);
            prop_assert_eq!(URL_SAFE_NO_PAD.decode(random).unwrap().len(), MIN_SESSION_RANDOM_BYTES + extra);
        }

        #[test]
        fn generation_never_panics(prefix in any::<String>(), n in any::<usize>()) {
            if let Ok(id) = generate_session_id_with(&OsRandom, &prefix, n % 512) {
                prop_assert!(is_valid_session_id(id.as_str()));
            }
        }

        #[test]
        fn normalized_ids_are_valid_or_an_error(s in any::<String>()) {
            match normalize_session_id(&s) {
                Ok(id) => {
                    prop_assert!(is_valid_session_id(id.as_str()));
                    prop_assert!(id.as_str().chars().all(|c| s.contains(c)));
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidSessionId),
            }
        }

        #[test]
        fn normalizing_a_valid_id_is_identity(s in "[A-Za-z0-9_-]{1,255}") {
            let id = normalize_session_id(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }

    #[test]
    fn ids_are_unique_across_many_calls() {
        let ids: HashSet<SessionId> = (0..10_000)
            .map(|_| generate_session_id_with(&OsRandom, "s", MIN_SESSION_RANDOM_BYTES).unwrap())
            .collect();
        assert_eq!(ids.len(), 10_000);
    }
}
