//! The logical records of format version 1: what a frame's payload holds.
//!
//! Payloads are [`postcard`] encodings of [`Entry`]. Every record carries the whole new state of
//! one thing (a session, a user, a token family, an epoch) or its removal, so replaying records
//! in order over any older state (a snapshot taken while writes went on, say) ends in the state
//! the last record of each thing describes. The variant order is part of the format: append new
//! variants only together with a new format version, never reorder or remove one: a reader of an
//! older version would take an unknown variant for damage.

use psm_core::{
    Email, Error, FamilyId, Metadata, PasswordHash, Permission, PermissionList, Result, SessionId,
    Timestamp, TokenFamily, TokenId, User, UserId, Username,
};
use psm_tables::{FamilyRecord, SessionRecord};
use serde::{Deserialize, Serialize};

/// One journal or snapshot record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Entry<'a> {
    /// A session's whole state.
    #[serde(borrow)]
    Session(SessionEntry<'a>),
    /// A session was removed.
    SessionRemoved(&'a str),
    /// Every session was removed (`clear_all_sessions`).
    SessionsCleared,
    /// A user's whole record.
    #[serde(borrow)]
    User(UserEntry<'a>),
    /// A user was deleted.
    UserRemoved(&'a str),
    /// A token family's whole state.
    #[serde(borrow)]
    Family(FamilyEntry<'a>),
    /// A token family was removed.
    FamilyRemoved(&'a str),
    /// A user's token epoch.
    Epoch {
        /// The user id.
        user: &'a str,
        /// The epoch.
        epoch: u64,
    },
    /// The last record of a complete snapshot, with the number of records before it.
    SnapshotEnd {
        /// Records written before this one.
        records: u64,
    },
    /// The first record of a snapshot: how many sessions follow (a hint for sizing the tables).
    SnapshotStart {
        /// Sessions in the snapshot.
        sessions: u64,
    },
    /// The last record of every journal batch: the batch's record count. Records after the last
    /// commit of the newest segment belong to a batch whose fsync never completed (never
    /// acknowledged) and are not applied.
    Commit {
        /// Records in the batch before this one.
        records: u64,
    },
}

/// A decoded and validated record, owned, ready to apply to the tables.
#[derive(Debug)]
pub(crate) enum Change {
    Session(SessionRecord),
    SessionRemoved(SessionId),
    SessionsCleared,
    User(User),
    UserRemoved(UserId),
    Family(FamilyRecord),
    FamilyRemoved(FamilyId),
    Epoch(UserId, u64),
    /// A snapshot's session count.
    Expect(u64),
    /// A snapshot's end and its record count.
    End(u64),
    /// A journal batch's end and its record count.
    Commit(u64),
}

impl Entry<'_> {
    /// Validates every field into an owned change (a record that passed its checksum but holds an
    /// invalid value is refused here).
    pub(crate) fn into_change(self) -> Result<Change> {
        Ok(match self {
            Self::Session(e) => Change::Session(e.to_record()?),
            Self::SessionRemoved(id) => Change::SessionRemoved(SessionId::parse(id)?),
            Self::SessionsCleared => Change::SessionsCleared,
            Self::User(e) => Change::User(e.to_user()?),
            Self::UserRemoved(id) => Change::UserRemoved(UserId::parse(id)?),
            Self::Family(e) => Change::Family(e.to_record()?),
            Self::FamilyRemoved(id) => Change::FamilyRemoved(FamilyId::parse(id)?),
            Self::Epoch { user, epoch } => Change::Epoch(UserId::parse(user)?, epoch),
            Self::SnapshotStart { sessions } => Change::Expect(sessions),
            Self::SnapshotEnd { records } => Change::End(records),
            Self::Commit { records } => Change::Commit(records),
        })
    }
}

/// A session as stored. Timestamps are microseconds since the Unix epoch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionEntry<'a> {
    id: &'a str,
    user: &'a str,
    #[serde(borrow)]
    permissions: Vec<&'a str>,
    /// The metadata as JSON text; empty when the metadata is empty.
    metadata: &'a str,
    created: i64,
    updated: i64,
    expires: Option<i64>,
}

/// A user account as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UserEntry<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    password_hash: &'a str,
    #[serde(borrow)]
    permissions: Vec<&'a str>,
    created: i64,
    updated: i64,
}

/// A token family as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FamilyEntry<'a> {
    id: &'a str,
    user: &'a str,
    session: Option<&'a str>,
    current: &'a str,
    created: i64,
    expires: i64,
    revoked: bool,
    rotations: u32,
    #[serde(borrow)]
    consumed: Vec<&'a str>,
}

/// Appends the postcard encoding of `entry` to `out`.
pub(crate) fn encode(entry: &Entry<'_>, out: &mut Vec<u8>) {
    // Serializing borrowed strings and integers into a Vec cannot fail; an error would mean a bug
    // in postcard, and writing nothing makes the frame decode as damage instead of a panic.
    if let Ok(bytes) = postcard::to_extend(entry, std::mem::take(out)) {
        *out = bytes;
    }
}

/// Decodes a payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Entry<'_>> {
    postcard::from_bytes(payload).map_err(|e| {
        Error::new(
            psm_core::ErrorKind::Serialization,
            format!("bad record: {e}"),
        )
    })
}

impl<'a> Entry<'a> {
    /// The record of a stored session (`metadata_json` is its metadata as JSON, or empty).
    pub(crate) fn session(r: &'a SessionRecord, metadata_json: &'a str) -> Self {
        Self::Session(SessionEntry {
            id: r.id.as_str(),
            user: r.user_id.as_str(),
            permissions: r.permissions.iter_str().collect(),
            metadata: metadata_json,
            created: r.created_at.as_unix_micros(),
            updated: r.updated_at.as_unix_micros(),
            expires: r.expires_at.map(Timestamp::as_unix_micros),
        })
    }

    /// The record of a user.
    pub(crate) fn user(u: &'a User) -> Self {
        Self::User(UserEntry {
            id: u.id.as_str(),
            username: u.username.as_str(),
            email: u.email.as_str(),
            password_hash: u.password_hash.as_str(),
            permissions: u.permissions.iter().map(|p| p.as_str()).collect(),
            created: u.created_at.as_unix_micros(),
            updated: u.updated_at.as_unix_micros(),
        })
    }

    /// The record of a token family.
    pub(crate) fn family(r: &'a FamilyRecord) -> Self {
        let f = &r.family;
        Self::Family(FamilyEntry {
            id: f.id.as_str(),
            user: f.user_id.as_str(),
            session: f.session_id.as_ref().map(|s| s.as_str()),
            current: f.current_token.as_str(),
            created: f.created_at.as_unix_micros(),
            expires: f.expires_at.as_unix_micros(),
            revoked: f.revoked,
            rotations: f.rotations,
            consumed: r.consumed.iter().map(|t| t.as_str()).collect(),
        })
    }
}

/// The metadata's JSON text, empty for empty metadata.
pub(crate) fn metadata_json(m: &Metadata) -> String {
    if m.is_empty() {
        String::new()
    } else {
        m.to_json()
    }
}

impl SessionEntry<'_> {
    /// The validated session (every field is checked again: a record that passed its checksum
    /// but holds an invalid value is still refused).
    pub(crate) fn to_record(&self) -> Result<SessionRecord> {
        Ok(SessionRecord {
            id: SessionId::parse(self.id)?,
            user_id: UserId::parse(self.user)?,
            permissions: PermissionList::parse(&self.permissions)?,
            metadata: if self.metadata.is_empty() {
                Metadata::empty()
            } else {
                Metadata::from_json(self.metadata)?
            },
            created_at: Timestamp::from_unix_micros(self.created),
            updated_at: Timestamp::from_unix_micros(self.updated),
            expires_at: self.expires.map(Timestamp::from_unix_micros),
        })
    }
}

impl UserEntry<'_> {
    /// The validated user.
    pub(crate) fn to_user(&self) -> Result<User> {
        Ok(User {
            id: UserId::parse(self.id)?,
            username: Username::parse(self.username)?,
            email: Email::parse(self.email)?,
            password_hash: PasswordHash::new(self.password_hash)?,
            permissions: self
                .permissions
                .iter()
                .map(|p| Permission::parse(p))
                .collect::<Result<_>>()?,
            created_at: Timestamp::from_unix_micros(self.created),
            updated_at: Timestamp::from_unix_micros(self.updated),
        })
    }
}

impl FamilyEntry<'_> {
    /// The validated family.
    pub(crate) fn to_record(&self) -> Result<FamilyRecord> {
        Ok(FamilyRecord {
            family: TokenFamily {
                id: FamilyId::parse(self.id)?,
                user_id: UserId::parse(self.user)?,
                session_id: self.session.map(SessionId::parse).transpose()?,
                current_token: TokenId::parse(self.current)?,
                created_at: Timestamp::from_unix_micros(self.created),
                expires_at: Timestamp::from_unix_micros(self.expires),
                revoked: self.revoked,
                rotations: self.rotations,
            },
            consumed: self
                .consumed
                .iter()
                .map(|t| TokenId::parse(t))
                .collect::<Result<_>>()?,
        })
    }
}
