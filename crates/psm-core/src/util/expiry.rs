//! Expiry arithmetic. The current time is always passed in (from a [`crate::Clock`]), never read here.

use crate::{Result, Timestamp, Ttl};

/// The instant a session stored at `now` with `ttl` expires.
///
/// ```
/// use psm_core::{Timestamp, Ttl, util::calculate_expiry_time};
///
/// let now = Timestamp::from_unix_secs(1_000);
/// assert_eq!(calculate_expiry_time(now, Ttl::from_secs(60)?), Timestamp::from_unix_secs(1_060));
/// # Ok::<(), psm_core::Error>(())
/// ```
pub fn calculate_expiry_time(now: Timestamp, ttl: Ttl) -> Timestamp {
    now.plus_ttl(ttl)
}

/// Whether something expiring at `expires_at` has expired at `now` (RULES.md: when `now >= expires_at`).
///
/// ```
/// use psm_core::{Timestamp, util::is_expired};
///
/// let at = Timestamp::from_unix_secs(100);
/// assert!(!is_expired(at, Timestamp::from_unix_secs(99)));
/// assert!(is_expired(at, at));
/// ```
pub fn is_expired(expires_at: Timestamp, now: Timestamp) -> bool {
    now >= expires_at
}

/// [`is_expired`] for an RFC 3339 expiry such as `"2024-01-01T12:00:00Z"` (any offset).
///
/// # Errors
/// [`crate::ErrorKind::Validation`] when `expires_at` is not RFC 3339.
pub fn is_expired_str(expires_at: &str, now: Timestamp) -> Result<bool> {
    Timestamp::parse_rfc3339(expires_at).map(|at| is_expired(at, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, MAX_TTL_SECS};

    #[test]
    fn expiry_is_now_plus_ttl_and_inclusive() {
        let now = Timestamp::from_unix_micros(1_704_110_400_123_456);
        let at = calculate_expiry_time(now, Ttl::from_secs(100).unwrap());
        assert_eq!(at.micros_since(now), 100_000_000);
        assert!(!is_expired(at, now));
        assert!(!is_expired(
            at,
            Timestamp::from_unix_micros(at.as_unix_micros() - 1)
        ));
        assert!(is_expired(at, at));
        assert!(is_expired(at, at.plus_secs(1)));
    }

    #[test]
    fn expiry_saturates_at_the_end_of_time() {
        let end = Timestamp::from_unix_micros(i64::MAX);
        assert_eq!(
            calculate_expiry_time(end, Ttl::from_secs(MAX_TTL_SECS).unwrap()),
            end
        );
    }

    #[test]
    fn parses_rfc3339_strings() {
        let now = Timestamp::parse_rfc3339("2024-01-01T12:00:00Z").unwrap();
        assert!(is_expired_str("2024-01-01T12:00:00Z", now).unwrap());
        assert!(is_expired_str("2024-01-01T12:59:59+01:00", now).unwrap());
        assert!(!is_expired_str("2024-01-01T12:00:00.000001Z", now).unwrap());
        for bad in ["", "tomorrow", "2024-01-01", "2024-13-01T00:00:00Z"] {
            assert_eq!(
                is_expired_str(bad, now).unwrap_err().kind(),
                ErrorKind::Validation
            );
        }
    }
}
