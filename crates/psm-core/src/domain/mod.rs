//! Validated domain types and records. An invalid value cannot exist past these constructors.

pub(crate) mod cache;
pub(crate) mod metadata;
pub(crate) mod permission;
pub(crate) mod records;
pub(crate) mod session_id;
pub(crate) mod timestamp;
pub(crate) mod token;
pub(crate) mod ttl;
pub(crate) mod user;
pub(crate) mod user_id;

#[cfg(test)]
mod proptests;
