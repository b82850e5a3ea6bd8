//! User ids: 1 to 255 bytes of UTF-8 without control characters.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Result};

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// A validated user id.
///
/// Any character but a control character is allowed, so adapters must escape or hash it before it
/// enters a key, a file name or a query.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Box<str>);

/// Whether `s` is a valid user id (RULES.md).
pub fn is_valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_USER_ID_LEN && !s.chars().any(char::is_control)
}

fn invalid(s: &str) -> Error {
    let reason = if s.is_empty() {
        "user id is empty"
    } else if s.len() > MAX_USER_ID_LEN {
        "user id is longer than 255 bytes"
    } else {
        "user id may not contain control characters"
    };
    Error::new(ErrorKind::InvalidUserId, reason).with_detail("length", s.len())
}

impl UserId {
    /// Validates and copies `s`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidUserId`] when `s` is empty, longer than 255 bytes, or has control characters.
    pub fn parse(s: &str) -> Result<Self> {
        if is_valid_user_id(s) {
            Ok(Self(s.into()))
        } else {
            Err(invalid(s))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for UserId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        if is_valid_user_id(&s) {
            Ok(Self(s.into_boxed_str()))
        } else {
            Err(invalid(&s))
        }
    }
}

impl std::str::FromStr for UserId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for UserId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for UserId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rules() {
        for ok in [
            "u",
            "user 1",
            "ü/../x",
            "'; DROP TABLE users; --",
            &"u".repeat(255),
        ] {
            assert!(UserId::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a\0b", "a\nb", "\u{1b}", &"u".repeat(256)] {
            assert_eq!(
                UserId::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidUserId,
                "{bad:?}"
            );
        }
    }
}
