//! UTC timestamps with microsecond precision, RFC 3339 with a `Z` suffix on the wire.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

use crate::{Error, ErrorKind, Result, Ttl};

/// A UTC instant, stored as microseconds since the Unix epoch (8 bytes, `Copy`, totally ordered).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Microseconds per second.
const MICROS: i64 = 1_000_000;

/// Smallest and largest instants that render as a four-digit RFC 3339 year.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS; // 0001-01-01T00:00:00Z
const MAX_MICROS: i64 = 253_402_300_799 * MICROS + 999_999; // 9999-12-31T23:59:59.999999Z

impl Timestamp {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Self = Self(0);

    /// Builds a timestamp from microseconds since the Unix epoch, clamped to years 1 to 9999.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(if micros < MIN_MICROS {
            MIN_MICROS
        } else if micros > MAX_MICROS {
            MAX_MICROS
        } else {
            micros
        })
    }

    /// Builds a timestamp from whole seconds since the Unix epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self::from_unix_micros(secs.saturating_mul(MICROS))
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded towards negative infinity).
    pub const fn as_unix_secs(self) -> i64 {
        self.0.div_euclid(MICROS)
    }

    /// This instant plus `ttl`.
    #[must_use]
    pub const fn plus_ttl(self, ttl: Ttl) -> Self {
        // Ttl is at most one year, so this cannot overflow before clamping.
        Self::from_unix_micros(self.0.saturating_add(ttl.as_secs() as i64 * MICROS))
    }

    /// This instant plus `secs` seconds (saturating).
    #[must_use]
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self::from_unix_micros(self.0.saturating_add(secs.saturating_mul(MICROS)))
    }

    /// Microseconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn micros_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole seconds from `now` until `self`, rounded up; zero when `self <= now`.
    pub fn secs_until_ceil(self, now: Self) -> u64 {
        let d = self.0.saturating_sub(now.0);
        if d <= 0 {
            0
        } else {
            u64::try_from((d + MICROS - 1) / MICROS).unwrap_or(u64::MAX)
        }
    }

    /// Converts to a `time` date-time in UTC.
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        // In range by construction (years 1 to 9999).
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Converts from a `time` date-time (any offset), truncating to microseconds.
    pub fn from_offset_date_time(t: OffsetDateTime) -> Self {
        let micros = t.unix_timestamp_nanos().div_euclid(1000);
        Self::from_unix_micros(i64::try_from(micros).unwrap_or(if micros < 0 {
            i64::MIN
        } else {
            i64::MAX
        }))
    }

    /// RFC 3339 in UTC with a `Z` suffix and exactly six fractional digits.
    pub fn to_rfc3339(self) -> String {
        let t = self.to_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }

    /// Parses RFC 3339 (any offset; converted to UTC, truncated to microseconds).
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] when `s` is not RFC 3339 or lies outside years 1 to 9999.
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        let out_of_range = || {
            Error::new(
                ErrorKind::Validation,
                "timestamp lies outside years 1 to 9999",
            )
        };
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| {
                Error::new(ErrorKind::Validation, "timestamp is not rfc 3339").with_source(e)
            })?
            // Checked: the UTC instant of `9999-12-31T23:00:00-01:00` is past the last year
            // `time` represents, where the unchecked conversion panics.
            .checked_to_offset(UtcOffset::UTC)
            .ok_or_else(out_of_range)?;
        let micros = t.unix_timestamp_nanos().div_euclid(1000);
        if !(i128::from(MIN_MICROS)..=i128::from(MAX_MICROS)).contains(&micros) {
            return Err(out_of_range());
        }
        Ok(Self::from_offset_date_time(t))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_with_micros_and_z() {
        let t = Timestamp::from_unix_micros(1_704_110_400_123_456);
        assert_eq!(t.to_rfc3339(), "2024-01-01T12:00:00.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert_eq!(
            Timestamp::parse_rfc3339("2024-01-01T13:00:00.123456+01:00").unwrap(),
            t
        );
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_rfc3339(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn offsets_past_the_last_or_first_representable_day_are_refused() {
        // Regressions from `cargo xtask fuzz`: converting these to UTC leaves the years `time`
        // represents, which must be an error and not a panic.
        for s in [
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T23:00:00-23:59",
            "0000-01-01T00:00:00+00:01",
            "0000-01-01T00:59:59.999+23:59",
        ] {
            assert_eq!(
                Timestamp::parse_rfc3339(s).map(|_| ()).unwrap_err().kind(),
                ErrorKind::Validation,
                "{s}"
            );
        }
        assert_eq!(
            Timestamp::parse_rfc3339("9999-12-31T23:59:59+00:01")
                .unwrap()
                .to_rfc3339(),
            "9999-12-31T23:58:59.000000Z"
        );
    }

    #[test]
    fn ceil_seconds() {
        let now = Timestamp::from_unix_secs(100);
        assert_eq!(now.plus_secs(100).secs_until_ceil(now), 100);
        assert_eq!(
            Timestamp::from_unix_micros(now.as_unix_micros() + 1).secs_until_ceil(now),
            1
        );
        assert_eq!(now.secs_until_ceil(now), 0);
        assert_eq!(Timestamp::from_unix_secs(50).secs_until_ceil(now), 0);
    }

    #[test]
    fn clamps_extremes() {
        assert_eq!(
            Timestamp::from_unix_micros(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(i64::MIN).to_rfc3339(),
            "0001-01-01T00:00:00.000000Z"
        );
    }
}
