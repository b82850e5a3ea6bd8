//! Permission list utilities: normalization, merging and set checks.

use std::{collections::HashSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{Error, Permission, PermissionRef, Result};

/// How [`merge_permissions`] combines the current permissions with new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// The new permissions replace the current ones (the seed's default).
    #[default]
    Replace,
    /// The union: the current permissions first, then the new ones not already present.
    Add,
    /// The difference: the current permissions that are not among the new ones.
    Remove,
}

impl MergeMode {
    /// The mode's name: `"replace"`, `"add"` or `"remove"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Add => "add",
            Self::Remove => "remove",
        }
    }
}

impl fmt::Display for MergeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MergeMode {
    type Err = Error;

    /// Parses `"replace"`, `"add"` or `"remove"` (exactly, lowercase).
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "replace" => Ok(Self::Replace),
            "add" => Ok(Self::Add),
            "remove" => Ok(Self::Remove),
            _ => Err(Error::validation(
                "merge mode must be one of 'replace', 'add' or 'remove'",
            )),
        }
    }
}

/// Trims surrounding whitespace from each entry, drops empty entries and duplicates (the first
/// occurrence is kept, order is otherwise preserved), and validates the rest.
///
/// An entry that is still invalid after trimming (inner whitespace, a control character, more than
/// 255 bytes) is an error rather than silently dropped, so a typo never quietly removes a permission.
/// The list size is not limited here; [`crate::PermissionList`] enforces the 4,096-entry bound.
///
/// ```
/// use psm_core::util::normalize_permissions;
///
/// let perms = normalize_permissions([" read ", "", "write", "read", "\t"])?;
/// assert_eq!(perms, ["read", "write"]);
/// assert!(normalize_permissions(["files read"]).is_err());
/// # Ok::<(), psm_core::Error>(())
/// ```
///
/// # Errors
/// [`crate::ErrorKind::InvalidPermission`] for an invalid entry, with its position as the `index` detail.
pub fn normalize_permissions<I>(items: I) -> Result<Vec<Permission>>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let trimmed = item.as_ref().trim();
        if trimmed.is_empty() {
            continue;
        }
        let p = PermissionRef::parse(trimmed).map_err(|e| e.with_detail("index", index))?;
        if seen.insert(p.as_str().to_owned()) {
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

/// Combines `current` and `new` according to `mode`. The result never holds duplicates (first
/// occurrence kept, order otherwise preserved):
///
/// - with [`MergeMode::Replace`], `new`;
/// - with [`MergeMode::Add`], `current`, then the entries of `new` not already present;
/// - with [`MergeMode::Remove`], the entries of `current` that are not in `new`.
///
/// ```
/// use psm_core::{Permission, util::{MergeMode, merge_permissions}};
///
/// let p = |v: &[&str]| v.iter().map(|s| Permission::parse(s)).collect::<Result<Vec<_>, _>>();
/// let (current, new) = (p(&["read", "write"])?, p(&["admin", "read"])?);
/// assert_eq!(merge_permissions(&current, &new, MergeMode::Replace), ["admin", "read"]);
/// assert_eq!(merge_permissions(&current, &new, MergeMode::Add), ["read", "write", "admin"]);
/// assert_eq!(merge_permissions(&current, &new, MergeMode::Remove), ["write"]);
/// # Ok::<(), psm_core::Error>(())
/// ```
pub fn merge_permissions(
    current: &[Permission],
    new: &[Permission],
    mode: MergeMode,
) -> Vec<Permission> {
    let mut seen: HashSet<&str> = HashSet::new();
    match mode {
        MergeMode::Replace => new
            .iter()
            .filter(|p| seen.insert(p.as_str()))
            .cloned()
            .collect(),
        MergeMode::Add => current
            .iter()
            .chain(new)
            .filter(|p| seen.insert(p.as_str()))
            .cloned()
            .collect(),
        MergeMode::Remove => {
            let removed: HashSet<&str> = new.iter().map(|p| p.as_str()).collect();
            current
                .iter()
                .filter(|p| !removed.contains(p.as_str()) && seen.insert(p.as_str()))
                .cloned()
                .collect()
        }
    }
}

/// Whether `user` holds at least one of `required` (exact, case-sensitive comparison).
///
/// An empty `required` list yields `false`: there is nothing the user could hold.
///
/// ```
/// use psm_core::util::has_any_permission;
///
/// assert!(has_any_permission(&["read", "write"], &["admin", "write"]));
/// assert!(!has_any_permission(&["read"], &["Read"]));
/// assert!(!has_any_permission::<&str, &str>(&["read"], &[]));
/// ```
pub fn has_any_permission<U, R>(user: &[U], required: &[R]) -> bool
where
    U: AsRef<str>,
    R: AsRef<str>,
{
    let held = Held::new(user);
    required.iter().any(|r| held.contains(r.as_ref()))
}

/// Whether `user` holds every one of `required` (exact, case-sensitive comparison).
///
/// An empty `required` list yields `true`: nothing is missing.
///
/// ```
/// use psm_core::util::has_all_permissions;
///
/// assert!(has_all_permissions(&["read", "write"], &["write", "read"]));
/// assert!(!has_all_permissions(&["read"], &["read", "write"]));
/// assert!(has_all_permissions::<&str, &str>(&[], &[]));
/// ```
pub fn has_all_permissions<U, R>(user: &[U], required: &[R]) -> bool
where
    U: AsRef<str>,
    R: AsRef<str>,
{
    let held = Held::new(user);
    required.iter().all(|r| held.contains(r.as_ref()))
}

/// The user's permissions, as a linear scan for short lists (cheaper than hashing) and a set otherwise.
enum Held<'a, U> {
    Scan(&'a [U]),
    Set(HashSet<&'a str>),
}

/// Lists up to this length are scanned instead of hashed.
const SCAN_LIMIT: usize = 16;

impl<'a, U: AsRef<str>> Held<'a, U> {
    fn new(user: &'a [U]) -> Self {
        if user.len() <= SCAN_LIMIT {
            Self::Scan(user)
        } else {
            Self::Set(user.iter().map(AsRef::as_ref).collect())
        }
    }

    fn contains(&self, p: &str) -> bool {
        match self {
            Self::Scan(user) => user.iter().any(|u| u.as_ref() == p),
            Self::Set(set) => set.contains(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ErrorKind;

    fn perms(v: &[&str]) -> Vec<Permission> {
        v.iter().map(|s| Permission::parse(s).unwrap()).collect()
    }

    #[test]
    fn normalize_trims_and_dedups() {
        let out = normalize_permissions(["  b", "a ", "", "b", " ", "c", "a"]).unwrap();
        assert_eq!(out, ["b", "a", "c"]);
        let empty: [&str; 0] = [];
        assert!(normalize_permissions(empty).unwrap().is_empty());
        assert!(
            normalize_permissions(vec![String::from("  ")])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn normalize_reports_invalid_entries_with_index() {
        let e = normalize_permissions(["ok", " ", "a b"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidPermission);
        assert_eq!(e.detail("index"), Some("2"));
        let long = "p".repeat(256);
        assert_eq!(
            normalize_permissions([long]).unwrap_err().kind(),
            ErrorKind::InvalidPermission
        );
        assert_eq!(
            normalize_permissions(["a\u{0}"]).unwrap_err().kind(),
            ErrorKind::InvalidPermission
        );
    }

    #[test]
    fn merge_modes() {
        let current = perms(&["read", "write", "read"]);
        let new = perms(&["admin", "read", "admin"]);
        assert_eq!(
            merge_permissions(&current, &new, MergeMode::Replace),
            ["admin", "read"]
        );
        assert_eq!(
            merge_permissions(&current, &new, MergeMode::Add),
            ["read", "write", "admin"]
        );
        assert_eq!(
            merge_permissions(&current, &new, MergeMode::Remove),
            ["write"]
        );
        assert!(merge_permissions(&[], &[], MergeMode::Add).is_empty());
    }

    #[test]
    fn merge_mode_parses_and_serializes() {
        for mode in [MergeMode::Replace, MergeMode::Add, MergeMode::Remove] {
            assert_eq!(mode.as_str().parse::<MergeMode>().unwrap(), mode);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(serde_json::from_str::<MergeMode>(&json).unwrap(), mode);
        }
        for bad in ["", "Replace", "union", " add"] {
            assert_eq!(
                bad.parse::<MergeMode>().unwrap_err().kind(),
                ErrorKind::Validation
            );
        }
        assert_eq!(MergeMode::default(), MergeMode::Replace);
    }

    #[test]
    fn any_and_all() {
        let user = perms(&["read", "write"]);
        assert!(has_any_permission(&user, &["write"]));
        assert!(!has_any_permission(&user, &["admin"]));
        assert!(!has_any_permission(&user, &[] as &[&str]));
        assert!(has_all_permissions(&user, &["read", "write"]));
        assert!(!has_all_permissions(&user, &["read", "admin"]));
        assert!(has_all_permissions(&user, &[] as &[&str]));
        assert!(!has_any_permission(&[] as &[&str], &["read"]));
        // Long lists take the hashed path; results must not change.
        let many: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        assert!(has_all_permissions(&many, &["p0", "p99"]));
        assert!(!has_all_permissions(&many, &["p0", "p100"]));
        assert!(has_any_permission(&many, &["x", "p42"]));
        assert!(!has_any_permission(&many, &["x", "P42"]));
    }

    fn perm_vec() -> impl Strategy<Value = Vec<Permission>> {
        prop::collection::vec("[a-e]{1,2}", 0..12)
            .prop_map(|v| v.iter().map(|s| Permission::parse(s).unwrap()).collect())
    }

    fn dedup(v: &[Permission]) -> Vec<Permission> {
        let mut out: Vec<Permission> = Vec::new();
        for p in v {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    proptest! {
        #[test]
        fn add_contains_both_in_order(current in perm_vec(), new in perm_vec()) {
            let merged = merge_permissions(&current, &new, MergeMode::Add);
            prop_assert!(current.iter().chain(&new).all(|p| merged.contains(p)));
            prop_assert_eq!(&merged[..dedup(&current).len()], &dedup(&current)[..]);
            prop_assert_eq!(merged.len(), dedup(&merged).len());
        }

        #[test]
        fn remove_contains_none_of_new(current in perm_vec(), new in perm_vec()) {
            let merged = merge_permissions(&current, &new, MergeMode::Remove);
            prop_assert!(new.iter().all(|p| !merged.contains(p)));
            prop_assert!(current.iter().filter(|p| !new.contains(p)).all(|p| merged.contains(p)));
            prop_assert_eq!(merged.len(), dedup(&merged).len());
        }

        #[test]
        fn replace_is_dedup_of_new(current in perm_vec(), new in perm_vec()) {
            prop_assert_eq!(merge_permissions(&current, &new, MergeMode::Replace), dedup(&new));
        }

        #[test]
        fn any_all_agree_with_naive(user in perm_vec(), required in perm_vec()) {
            prop_assert_eq!(has_any_permission(&user, &required), required.iter().any(|r| user.contains(r)));
            prop_assert_eq!(has_all_permissions(&user, &required), required.iter().all(|r| user.contains(r)));
        }

        #[test]
        fn normalize_never_panics_and_yields_valid_unique(items in prop::collection::vec(any::<String>(), 0..8)) {
            if let Ok(out) = normalize_permissions(&items) {
                prop_assert!(out.iter().all(|p| crate::is_valid_permission(p.as_str())));
                prop_assert_eq!(out.len(), dedup(&out).len());
            }
        }
    }
}
