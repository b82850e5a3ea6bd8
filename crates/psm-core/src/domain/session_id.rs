//! Session ids: 1 to 255 bytes of ASCII letters, digits, `-` and `_`.

use std::{borrow::Borrow, fmt, ops::Deref};

use ref_cast::{RefCastCustom, ref_cast_custom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Result, error::redact_id};

/// Longest accepted session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 255;

/// A validated, borrowed session id (like `str` to [`SessionId`]'s `String`).
///
/// Built only through [`SessionIdRef::parse`], so it always holds 1 to 255 bytes of
/// `[A-Za-z0-9_-]`. Validation allocates nothing, which keeps hot checks cheap.
#[derive(RefCastCustom, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct SessionIdRef(str);

/// A validated, owned session id. Dereferences to [`SessionIdRef`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Box<str>);

/// Whether `s` is a valid session id (RULES.md: 1 to 255 bytes of ASCII letters, digits, `-`, `_`).
pub fn is_valid_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SESSION_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SessionIdRef {
    #[ref_cast_custom]
    const fn new_unchecked(s: &str) -> &Self;

    /// Validates `s` as a session id without allocating.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidSessionId`] when `s` is empty, longer than 255 bytes or has other characters.
    pub fn parse(s: &str) -> Result<&Self> {
        if is_valid_session_id(s) {
            Ok(Self::new_unchecked(s))
        } else {
            Err(invalid(s))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short prefix safe for logs and messages.
    pub fn redacted(&self) -> String {
        redact_id(&self.0)
    }
}

fn invalid(s: &str) -> Error {
    let reason = if s.is_empty() {
        "session id is empty"
    } else if s.len() > MAX_SESSION_ID_LEN {
        "session id is longer than 255 bytes"
    } else {
        "session id may only contain ascii letters, digits, '-' and '_'"
    };
    Error::new(ErrorKind::InvalidSessionId, reason).with_detail("length", s.len())
}

impl SessionId {
    /// Validates and copies `s`.
    ///
    /// # Errors
    /// See [`SessionIdRef::parse`].
    pub fn parse(s: &str) -> Result<Self> {
        SessionIdRef::parse(s).map(ToOwned::to_owned)
    }
}

impl Deref for SessionId {
    type Target = SessionIdRef;
    fn deref(&self) -> &SessionIdRef {
        SessionIdRef::new_unchecked(&self.0)
    }
}

impl Borrow<SessionIdRef> for SessionId {
    fn borrow(&self) -> &SessionIdRef {
        self
    }
}

impl AsRef<SessionIdRef> for SessionId {
    fn as_ref(&self) -> &SessionIdRef {
        self
    }
}

impl AsRef<str> for SessionIdRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl ToOwned for SessionIdRef {
    type Owned = SessionId;
    fn to_owned(&self) -> SessionId {
        SessionId(self.0.into())
    }
}

impl TryFrom<&str> for SessionId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        if is_valid_session_id(&s) {
            Ok(Self(s.into_boxed_str()))
        } else {
            Err(invalid(&s))
        }
    }
}

impl std::str::FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0.into()
    }
}

impl fmt::Display for SessionIdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionIdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for SessionIdRef {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet_and_lengths() {
        assert!(SessionId::parse("a").is_ok());
        assert!(SessionId::parse("session_AZaz09-_").is_ok());
        assert!(SessionId::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_everything_else_with_the_right_kind() {
        for bad in [
            "",
            "a b",
            "a/b",
            "../x",
            "é",
            "a.b",
            "a\0",
            &"x".repeat(256),
        ] {
            let e = SessionId::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidSessionId, "{bad:?}");
            assert!(!e.to_string().contains(bad) || bad.is_empty());
        }
    }

    #[test]
    fn owned_and_borrowed_agree() {
        let owned = SessionId::parse("abc").unwrap();
        let borrowed: &SessionIdRef = &owned;
        assert_eq!(borrowed.as_str(), "abc");
        assert_eq!(borrowed.to_owned(), owned);
        assert_eq!(serde_json::to_string(&owned).unwrap(), "\"abc\"");
        assert!(serde_json::from_str::<SessionId>("\"a b\"").is_err());
    }
}
