//! Time to live: whole seconds from 1 to 31,536,000 (one year).

use std::{fmt, num::NonZeroU32, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Result};

/// Largest accepted ttl: one year in seconds.
pub const MAX_TTL_SECS: u64 = 31_536_000;

/// A validated ttl. "No ttl" is expressed as `Option<Ttl>::None`, never as zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl(NonZeroU32);

impl Ttl {
    /// Validates a number of seconds.
    ///
    /// # Errors
    /// [`ErrorKind::Ttl`] unless `1 <= secs <= 31_536_000`.
    pub fn from_secs(secs: u64) -> Result<Self> {
        u32::try_from(secs)
            .ok()
            .filter(|_| secs <= MAX_TTL_SECS)
            .and_then(NonZeroU32::new)
            .map(Self)
            .ok_or_else(|| {
                Error::new(ErrorKind::Ttl, "ttl must be between 1 and 31536000 seconds")
                    .with_detail("value", secs)
            })
    }

    /// Validates a signed number of seconds (negative values are rejected like zero).
    ///
    /// # Errors
    /// [`ErrorKind::Ttl`] unless `1 <= secs <= 31_536_000`.
    pub fn from_secs_i64(secs: i64) -> Result<Self> {
        match u64::try_from(secs) {
            Ok(s) => Self::from_secs(s),
            Err(_) => Err(
                Error::new(ErrorKind::Ttl, "ttl must be between 1 and 31536000 seconds")
                    .with_detail("value", secs),
            ),
        }
    }

    /// The ttl in whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.0.get() as u64
    }

    /// The ttl as a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.as_secs())
    }
}

impl TryFrom<u64> for Ttl {
    type Error = Error;
    fn try_from(secs: u64) -> Result<Self> {
        Self::from_secs(secs)
    }
}

impl TryFrom<Duration> for Ttl {
    type Error = Error;
    /// Rejects durations with a fractional second, since ttls are whole seconds.
    fn try_from(d: Duration) -> Result<Self> {
        if d.subsec_nanos() != 0 {
            return Err(Error::new(
                ErrorKind::Ttl,
                "ttl must be a whole number of seconds",
            ));
        }
        Self::from_secs(d.as_secs())
    }
}

impl fmt::Debug for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.as_secs())
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::from_secs(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(Ttl::from_secs(1).unwrap().as_secs(), 1);
        assert_eq!(
            Ttl::from_secs(MAX_TTL_SECS).unwrap().as_secs(),
            MAX_TTL_SECS
        );
        for bad in [0, MAX_TTL_SECS + 1, u64::MAX, u64::from(u32::MAX) + 1] {
            assert_eq!(Ttl::from_secs(bad).unwrap_err().kind(), ErrorKind::Ttl);
        }
        assert_eq!(Ttl::from_secs_i64(-1).unwrap_err().kind(), ErrorKind::Ttl);
        assert!(Ttl::try_from(Duration::from_millis(1500)).is_err());
        assert_eq!(Ttl::try_from(Duration::from_secs(5)).unwrap().as_secs(), 5);
    }
}
