//! The records the stores return and accept, with the seed's response field names.

use std::{fmt, num::NonZeroU32};

use serde::{Deserialize, Serialize, Serializer, ser::SerializeMap};

use crate::{
    Error, Metadata, Permission, PermissionList, PermissionRef, Result, Timestamp, Ttl, UserId,
};

/// What a store needs to create or replace a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The owner of the session.
    pub user_id: UserId,
    /// The session's permissions.
    pub permissions: PermissionList,
    /// Time to live; `None` means the session never expires (the facade applies `default_ttl`).
    pub ttl: Option<Ttl>,
    /// Caller metadata, stored as given.
    pub metadata: Metadata,
}

impl NewSession {
    /// A session for `user_id` with `permissions`, no ttl and empty metadata.
    pub fn new(user_id: UserId, permissions: PermissionList) -> Self {
        Self {
            user_id,
            permissions,
            ttl: None,
            metadata: Metadata::empty(),
        }
    }

    /// Sets the ttl.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Ttl>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A stored session (the seed's `get_permissions` response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// The owner.
    pub user_id: UserId,
    /// The permissions, in stored order.
    pub permissions: PermissionList,
    /// When the session was created (or last replaced by `store_permissions`).
    pub created_at: Timestamp,
    /// When the session was last changed.
    pub updated_at: Timestamp,
    /// Caller metadata, exactly as stored.
    pub metadata: Metadata,
}

/// A stored session plus its ttl state (the seed's `get_session_info` response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session record.
    #[serde(flatten)]
    pub data: SessionData,
    /// Whole seconds left, rounded up; `None` when the session never expires.
    pub ttl_remaining: Option<u64>,
    /// Whether the session has an expiry.
    pub has_ttl: bool,
    /// The absolute expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// The provider name that holds the session.
    pub provider: String,
}

impl SessionInfo {
    /// Builds the info for `data` expiring at `expires_at`, as seen at `now` by `provider`.
    /// Every provider builds it here, so `ttl_remaining` rounds the same way everywhere.
    pub fn new(
        data: SessionData,
        expires_at: Option<Timestamp>,
        now: Timestamp,
        provider: &str,
    ) -> Self {
        Self {
            data,
            ttl_remaining: expires_at.map(|e| e.secs_until_ceil(now)),
            has_ttl: expires_at.is_some(),
            expires_at,
            provider: provider.to_owned(),
        }
    }
}

/// The result of `check_permissions`: permission → granted, in the order asked.
/// Serializes as a JSON object (the seed's response format).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PermissionCheck(Vec<(Permission, bool)>);

impl PermissionCheck {
    /// Builds a check result from entries in the order asked.
    pub fn from_entries(entries: Vec<(Permission, bool)>) -> Self {
        Self(entries)
    }

    /// Every permission marked false (what a missing or expired session yields).
    pub fn all_false(permissions: &PermissionList) -> Self {
        Self(permissions.iter().map(|p| (p.clone(), false)).collect())
    }

    /// The result for one permission, if it was asked.
    pub fn get(&self, permission: &str) -> Option<bool> {
        self.0
            .iter()
            .find(|(p, _)| p.as_str() == permission)
            .map(|(_, g)| *g)
    }

    /// The entries, in the order asked.
    pub fn entries(&self) -> &[(Permission, bool)] {
        &self.0
    }

    /// Whether every asked permission is granted.
    pub fn all(&self) -> bool {
        self.0.iter().all(|(_, g)| *g)
    }

    /// Whether at least one asked permission is granted.
    pub fn any(&self) -> bool {
        self.0.iter().any(|(_, g)| *g)
    }

    /// Number of permissions asked.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was asked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The granted permissions, in the order asked.
    pub fn granted(&self) -> impl Iterator<Item = &PermissionRef> {
        self.0.iter().filter(|(_, g)| *g).map(|(p, _)| &**p)
    }
}

impl fmt::Debug for PermissionCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(p, g)| (p, g)))
            .finish()
    }
}

impl Serialize for PermissionCheck {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (p, g) in &self.0 {
            m.serialize_entry(p.as_str(), g)?;
        }
        m.end()
    }
}

/// Largest accepted page size for `list_sessions`.
pub const MAX_PAGE_LIMIT: u32 = 10_000;

/// A validated page request: `limit` 1 to 10,000 and an `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    limit: NonZeroU32,
    offset: u64,
}

impl Page {
    /// Validates a page request.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] unless `1 <= limit <= 10_000`.
    pub fn new(limit: u64, offset: u64) -> Result<Self> {
        u32::try_from(limit)
            .ok()
            .filter(|l| *l <= MAX_PAGE_LIMIT)
            .and_then(NonZeroU32::new)
            .map(|limit| Self { limit, offset })
            .ok_or_else(|| {
                Error::validation("limit must be between 1 and 10000").with_detail("limit", limit)
            })
    }

    /// Validates signed values, as they arrive from JSON or the CLI.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] for a limit outside 1 to 10,000 or a negative offset.
    pub fn from_i64(limit: i64, offset: i64) -> Result<Self> {
        let offset = u64::try_from(offset).map_err(|_| {
            Error::validation("offset must not be negative").with_detail("offset", offset)
        })?;
        let limit = u64::try_from(limit).map_err(|_| {
            Error::validation("limit must be between 1 and 10000").with_detail("limit", limit)
        })?;
        Self::new(limit, offset)
    }

    /// The first page of `limit` items.
    ///
    /// # Errors
    /// See [`Page::new`].
    pub fn first(limit: u64) -> Result<Self> {
        Self::new(limit, 0)
    }

    /// The page size.
    pub fn limit(self) -> usize {
        self.limit.get() as usize
    }

    /// How many items to skip.
    pub fn offset(self) -> u64 {
        self.offset
    }

    /// The offset as `usize`, saturating (an offset beyond memory simply yields an empty page).
    pub fn offset_usize(self) -> usize {
        usize::try_from(self.offset).unwrap_or(usize::MAX)
    }

    /// The next page of the same size.
    #[must_use]
    pub fn next(self) -> Self {
        Self {
            limit: self.limit,
            offset: self.offset.saturating_add(u64::from(self.limit.get())),
        }
    }
}

impl Default for Page {
    /// The seed's defaults: limit 100, offset 0.
    fn default() -> Self {
        Self {
            limit: NonZeroU32::MIN.saturating_add(99),
            offset: 0,
        }
    }
}

/// What `create_session` does when the user already has `max` live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// Fail with [`crate::ErrorKind::SessionLimitReached`] and store nothing.
    #[default]
    Reject,
    /// Remove the oldest sessions (by `created_at`, then id) to make room.
    EvictOldest,
}

/// A per-user concurrent-session limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionLimit {
    /// Most live sessions one user may hold (at least 1).
    pub max: NonZeroU32,
    /// What happens at the limit.
    pub policy: LimitPolicy,
}

impl SessionLimit {
    /// A limit of `max` sessions with `policy`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Validation`] when `max` is zero.
    pub fn new(max: u32, policy: LimitPolicy) -> Result<Self> {
        NonZeroU32::new(max)
            .map(|max| Self { max, policy })
            .ok_or_else(|| Error::validation("session limit must be at least 1"))
    }

    /// No practical limit (`u32::MAX` sessions).
    pub fn unlimited() -> Self {
        Self {
            max: NonZeroU32::MAX,
            policy: LimitPolicy::Reject,
        }
    }

    /// The limit as `usize`.
    pub fn max_usize(self) -> usize {
        self.max.get() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn page_bounds() {
        assert!(Page::new(1, 0).is_ok());
        assert!(Page::new(10_000, u64::MAX).is_ok());
        assert_eq!(Page::new(0, 0).unwrap_err().kind(), ErrorKind::Validation);
        assert_eq!(
            Page::new(10_001, 0).unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert_eq!(
            Page::from_i64(10, -1).unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert_eq!(
            Page::from_i64(-1, 0).unwrap_err().kind(),
            ErrorKind::Validation
        );
        assert_eq!(Page::default().limit(), 100);
        assert_eq!(Page::new(5, 10).unwrap().next().offset(), 15);
    }

    #[test]
    fn check_serializes_as_ordered_object() {
        let c = PermissionCheck::from_entries(vec![
            (Permission::parse("z").unwrap(), true),
            (Permission::parse("a").unwrap(), false),
        ]);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"z":true,"a":false}"#
        );
        assert!(c.any() && !c.all());
    }

    #[test]
    fn info_rounds_ttl_up_and_flattens() {
        let now = Timestamp::from_unix_secs(1000);
        let data = SessionData {
            user_id: UserId::parse("u").unwrap(),
            permissions: PermissionList::parse(["read"]).unwrap(),
            created_at: now,
            updated_at: now,
            metadata: Metadata::empty(),
        };
        let info = SessionInfo::new(data, Some(now.plus_secs(100)), now, "memory");
        assert_eq!(info.ttl_remaining, Some(100));
        let v = serde_json::to_value(&info).unwrap();
        for k in [
            "user_id",
            "permissions",
            "created_at",
            "updated_at",
            "metadata",
            "ttl_remaining",
            "has_ttl",
            "provider",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
