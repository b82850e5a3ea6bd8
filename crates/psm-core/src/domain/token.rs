//! Refresh-token family state: opaque token and family ids, family records, consume outcomes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result, SessionId, Timestamp, UserId};

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            /// Validates `s`: 1 to 128 bytes of ASCII letters, digits, `-` and `_`.
            ///
            /// # Errors
            /// [`crate::ErrorKind::Validation`] otherwise.
            pub fn parse(s: &str) -> Result<Self> {
                if !s.is_empty()
                    && s.len() <= 128
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    Ok(Self(s.into()))
                } else {
                    Err(Error::validation(concat!($what, " must be 1 to 128 ascii letters, digits, '-' or '_'")))
                }
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

opaque_id!(
    /// The id (`jti`) of one refresh token. Only ids are stored, never whole tokens.
    TokenId,
    "token id"
);
opaque_id!(
    /// The id of a refresh-token family: every token rotated from one login.
    FamilyId,
    "family id"
);

/// What a store needs to start a refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTokenFamily {
    /// Family id.
    pub id: FamilyId,
    /// The user the family belongs to.
    pub user_id: UserId,
    /// The login session the family belongs to, if any.
    pub session_id: Option<SessionId>,
    /// The first refresh token's id.
    pub first_token: TokenId,
    /// Absolute end of the family; rotation never extends it.
    pub expires_at: Timestamp,
}

/// A refresh-token family as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFamily {
    /// Family id.
    pub id: FamilyId,
    /// Owner.
    pub user_id: UserId,
    /// Login session, if any.
    pub session_id: Option<SessionId>,
    /// The one token id that may be consumed next.
    pub current_token: TokenId,
    /// When the family started.
    pub created_at: Timestamp,
    /// Absolute end of the family.
    pub expires_at: Timestamp,
    /// Whether the family was revoked.
    pub revoked: bool,
    /// How many rotations happened.
    pub rotations: u32,
}

/// The result of consuming a refresh-token id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumeOutcome {
    /// The id was current: it is now consumed and `next` is current.
    Rotated(TokenFamily),
    /// The id was already consumed: the family is now revoked (the caller revokes its session too).
    ReuseDetected(TokenFamily),
    /// The family is revoked.
    Revoked,
    /// The family is past its absolute lifetime.
    Expired,
    /// No such family, or an id this family never issued.
    Unknown,
}
