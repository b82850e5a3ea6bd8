//! The ports: the traits adapters implement and the facade drives.

pub(crate) mod cache;
pub(crate) mod permission_store;
pub(crate) mod token_state;
pub(crate) mod user_store;
