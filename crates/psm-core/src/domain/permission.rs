//! Permissions (1 to 255 bytes of UTF-8, no whitespace, no control characters) and validated lists.

use std::{borrow::Borrow, collections::HashSet, fmt, ops::Deref};

use ref_cast::{RefCastCustom, ref_cast_custom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Result};

/// Longest accepted permission, in bytes.
pub const MAX_PERMISSION_LEN: usize = 255;
/// Most entries a permission list may hold.
pub const MAX_PERMISSIONS: usize = 4096;
/// Up to this many entries, duplicates are found by a linear scan instead of a hash set.
const LINEAR_DEDUP_MAX: usize = 16;

/// A validated, borrowed permission string. Comparison is exact and case-sensitive; `*` and `?`
/// are literal characters here (wildcards belong to the pattern utilities).
#[derive(RefCastCustom, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct PermissionRef(str);

/// A validated, owned permission. Dereferences to [`PermissionRef`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(Box<str>);

/// Whether `s` is a valid permission (RULES.md).
pub fn is_valid_permission(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PERMISSION_LEN
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn invalid(s: &str) -> Error {
    let reason = if s.is_empty() {
        "permission is empty"
    } else if s.len() > MAX_PERMISSION_LEN {
        "permission is longer than 255 bytes"
    } else {
        "permission may not contain whitespace or control characters"
    };
    Error::new(ErrorKind::InvalidPermission, reason).with_detail("length", s.len())
}

impl PermissionRef {
    #[ref_cast_custom]
    const fn new_unchecked(s: &str) -> &Self;

    /// Validates `s` as a permission without allocating.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidPermission`] when `s` is empty, longer than 255 bytes, or has whitespace
    /// or control characters.
    pub fn parse(s: &str) -> Result<&Self> {
        if is_valid_permission(s) {
            Ok(Self::new_unchecked(s))
        } else {
            Err(invalid(s))
        }
    }

    /// The permission as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Permission {
    /// Validates and copies `s`.
    ///
    /// # Errors
    /// See [`PermissionRef::parse`].
    pub fn parse(s: &str) -> Result<Self> {
        PermissionRef::parse(s).map(ToOwned::to_owned)
    }
}

impl Deref for Permission {
    type Target = PermissionRef;
    fn deref(&self) -> &PermissionRef {
        PermissionRef::new_unchecked(&self.0)
    }
}

impl Borrow<PermissionRef> for Permission {
    fn borrow(&self) -> &PermissionRef {
        self
    }
}

impl AsRef<str> for PermissionRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Permission {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl ToOwned for PermissionRef {
    type Owned = Permission;
    fn to_owned(&self) -> Permission {
        Permission(self.0.into())
    }
}

impl TryFrom<&str> for Permission {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Permission {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        if is_valid_permission(&s) {
            Ok(Self(s.into_boxed_str()))
        } else {
            Err(invalid(&s))
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for PermissionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PermissionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Permission {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Permission {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

/// A validated permission list: 1 to 4,096 valid permissions, duplicates dropped (first occurrence
/// kept), order otherwise preserved.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PermissionList(Vec<Permission>);

impl PermissionList {
    /// Validates every entry, drops duplicates and checks the list size.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidPermission`] for a bad entry (reported with its index);
    /// [`ErrorKind::Validation`] for an empty list or more than 4,096 entries (duplicates included).
    pub fn parse<I>(items: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items = items.into_iter();
        let mut out: Vec<Permission> = Vec::with_capacity(items.size_hint().0.min(MAX_PERMISSIONS));
        // Most lists are a handful of entries: a linear scan beats hashing there and allocates
        // nothing; longer lists switch to a set of borrowed strings.
        let mut seen: Option<HashSet<Box<str>>> = None;
        for (index, item) in items.enumerate() {
            // The bound is on entries given, duplicates included, so a caller cannot make us scan
            // an unbounded input by repeating one permission.
            if index >= MAX_PERMISSIONS {
                return Err(too_many());
            }
            let p =
                PermissionRef::parse(item.as_ref()).map_err(|e| e.with_detail("index", index))?;
            let duplicate = match &mut seen {
                Some(set) => !set.insert(p.as_str().into()),
                None => out.iter().any(|q| **q == *p),
            };
            if duplicate {
                continue;
            }
            out.push(p.to_owned());
            if out.len() > MAX_PERMISSIONS {
                return Err(too_many());
            }
            if seen.is_none() && out.len() == LINEAR_DEDUP_MAX {
                seen = Some(out.iter().map(|q| q.as_str().into()).collect());
            }
        }
        if out.is_empty() {
            return Err(Error::validation("permission list is empty"));
        }
        Ok(Self(out))
    }

    /// Builds a list from already-validated permissions, dropping duplicates.
    ///
    /// # Errors
    /// [`ErrorKind::Validation`] for an empty list or more than 4,096 entries (duplicates included).
    pub fn from_permissions(items: Vec<Permission>) -> Result<Self> {
        if items.len() > MAX_PERMISSIONS {
            return Err(too_many());
        }
        if items.len() <= LINEAR_DEDUP_MAX {
            let mut out: Vec<Permission> = Vec::with_capacity(items.len());
            for p in items {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            return Self::checked(out);
        }
        let mut seen = HashSet::with_capacity(items.len());
        let deduped: Vec<Permission> = items
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        Self::checked(deduped)
    }

    fn checked(items: Vec<Permission>) -> Result<Self> {
        if items.is_empty() {
            return Err(Error::validation("permission list is empty"));
        }
        if items.len() > MAX_PERMISSIONS {
            return Err(too_many());
        }
        Ok(Self(items))
    }

    /// The permissions, in order.
    pub fn as_slice(&self) -> &[Permission] {
        &self.0
    }

    /// An iterator over the permissions as strings.
    pub fn iter_str(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|p| p.as_str())
    }

    /// Whether the list contains `p` (exact comparison).
    pub fn contains(&self, p: &PermissionRef) -> bool {
        self.0.iter().any(|q| **q == *p)
    }

    /// Number of permissions (never zero).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; present for API symmetry with collections.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The permissions as owned strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter_str().map(str::to_owned).collect()
    }

    /// Consumes the list into its permissions.
    pub fn into_vec(self) -> Vec<Permission> {
        self.0
    }
}

fn too_many() -> Error {
    Error::validation("permission list has more than 4096 entries")
        .with_detail("max", MAX_PERMISSIONS)
}

impl Deref for PermissionList {
    type Target = [Permission];
    fn deref(&self) -> &[Permission] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a PermissionList {
    type Item = &'a Permission;
    type IntoIter = std::slice::Iter<'a, Permission>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for PermissionList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for PermissionList {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PermissionList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        Self::parse(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_rules() {
        assert!(Permission::parse("files:read").is_ok());
        assert!(Permission::parse("ünïcødé*?").is_ok());
        assert!(Permission::parse(&"p".repeat(255)).is_ok());
        for bad in [
            "",
            "a b",
            "a\tb",
            "a\nb",
            "a\u{7f}",
            "a\u{a0}b",
            &"p".repeat(256),
        ] {
            assert_eq!(
                Permission::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidPermission,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_dedups_keeping_first_and_order() {
        let l = PermissionList::parse(["b", "a", "b", "c", "a"]).unwrap();
        assert_eq!(l.to_strings(), ["b", "a", "c"]);
    }

    #[test]
    fn list_bounds() {
        let empty: [&str; 0] = [];
        assert_eq!(
            PermissionList::parse(empty).unwrap_err().kind(),
            ErrorKind::Validation
        );
        let max: Vec<String> = (0..4096).map(|i| format!("p{i}")).collect();
        assert_eq!(PermissionList::parse(&max).unwrap().len(), 4096);
        let over: Vec<String> = (0..4097).map(|i| format!("p{i}")).collect();
        assert_eq!(
            PermissionList::parse(&over).unwrap_err().kind(),
            ErrorKind::Validation
        );
        let dup_heavy: Vec<String> = (0..4096).map(|i| format!("p{}", i % 10)).collect();
        let long_with_dups: Vec<String> = (0..100).chain(0..100).map(|i| format!("p{i}")).collect();
        let l = PermissionList::parse(&long_with_dups).unwrap();
        assert_eq!(l.len(), 100);
        assert_eq!(l.as_slice()[99].as_str(), "p99");
        let owned: Vec<Permission> = long_with_dups
            .iter()
            .map(|s| Permission::parse(s).unwrap())
            .collect();
        assert_eq!(PermissionList::from_permissions(owned).unwrap(), l);
        assert_eq!(PermissionList::parse(&dup_heavy).unwrap().len(), 10);
        let dup_over: Vec<String> = (0..4097).map(|i| format!("p{}", i % 10)).collect();
        assert_eq!(
            PermissionList::parse(&dup_over).unwrap_err().kind(),
            ErrorKind::Validation
        );
        let e = PermissionList::parse(["ok", "not ok"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidPermission);
        assert_eq!(e.detail("index"), Some("1"));
    }
}
