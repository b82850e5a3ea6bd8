//! User accounts: validated usernames, emails and password hashes, and the user record.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Permission, Result, Timestamp, UserId};

/// A validated username: 3 to 64 characters of ASCII letters, digits, `.`, `-` and `_`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(Box<str>);

impl Username {
    /// Validates `s`.
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] when `s` breaks the rule above.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(Error::validation(
                "username must be 3 to 64 ascii letters, digits, '.', '-' or '_'",
            )
            .with_detail("field", "username"))
        }
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The username lowercased, the form uniqueness is checked on.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A validated email address, kept as given; compared case-insensitively through [`Email::normalized`].
///
/// Validation is deliberately structural (one `@`, non-empty local part of at most 64 bytes, a domain
/// with a dot, at most 254 bytes, no whitespace or control characters): deliverability is the mail
/// system's question, not ours.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(Box<str>);

impl Email {
    /// Validates `s`.
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] when `s` is not a plausible address.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::validation("email address is not valid").with_detail("field", "email");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Self(s.into()))
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address lowercased: the key for case-insensitive lookups and uniqueness.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A password hash in PHC string format (for example argon2id). Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Box<str>);

impl PasswordHash {
    /// Wraps a PHC hash string.
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] when `s` is not a PHC string (`$alg$...`) or longer than 512 bytes.
    pub fn new(s: &str) -> Result<Self> {
        if s.starts_with('$')
            && s.len() <= 512
            && s.len() > 1
            && !s.chars().any(char::is_whitespace)
        {
            Ok(Self(s.into()))
        } else {
            Err(Error::validation("password hash must be a phc string"))
        }
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub id: UserId,
    /// Unique (case-insensitive) username.
    pub username: Username,
    /// Unique (case-insensitive) email.
    pub email: Email,
    /// Password hash (PHC string).
    pub password_hash: PasswordHash,
    /// Permissions granted to the user's sessions.
    pub permissions: Vec<Permission>,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the account was last changed.
    pub updated_at: Timestamp,
}

/// What a store needs to create a user. The caller chooses the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The new user's id.
    pub id: UserId,
    /// Username.
    pub username: Username,
    /// Email.
    pub email: Email,
    /// Password hash.
    pub password_hash: PasswordHash,
    /// Permissions (duplicates are dropped by the store, first kept).
    pub permissions: Vec<Permission>,
}

/// A partial update of a user; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserUpdate {
    /// New username.
    pub username: Option<Username>,
    /// New email.
    pub email: Option<Email>,
    /// New password hash.
    pub password_hash: Option<PasswordHash>,
    /// New permissions (replacing the old ones).
    pub permissions: Option<Vec<Permission>>,
}

macro_rules! string_serde {
    ($t:ty, $ctor:path) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ctor(&s).map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_serde!(Username, Username::parse);
string_serde!(Email, Email::parse);

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Drops duplicate permissions, keeping the first occurrence (how stores normalize user permissions).
pub fn dedup_permissions(mut permissions: Vec<Permission>) -> Vec<Permission> {
    let mut seen = std::collections::HashSet::with_capacity(permissions.len());
    permissions.retain(|p| seen.insert(p.clone()));
    permissions
}

/// Rejects a user permission list over the list limit.
///
/// # Errors
/// [`ErrorKind::Validation`] when more than 4,096 permissions are given.
pub fn check_user_permissions(permissions: &[Permission]) -> Result<()> {
    if permissions.len() > crate::domain::permission::MAX_PERMISSIONS {
        return Err(Error::new(
            ErrorKind::Validation,
            "user has more than 4096 permissions",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_and_email_rules() {
        assert!(Username::parse("alice_01").is_ok());
        for bad in ["al", "a b c", "alice!", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse("Alice@Example.com").is_ok());
        assert_eq!(
            Email::parse("Alice@Example.COM").unwrap().normalized(),
            "alice@example.com"
        );
        for bad in [
            "", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.b", "a@b..c", "a@b.c.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hash_is_never_printed() {
        let h = PasswordHash::new("$argon2id$v=19$secret").unwrap();
        assert!(!format!("{h:?}").contains("secret"));
        assert!(PasswordHash::new("plain").is_err());
    }
}
