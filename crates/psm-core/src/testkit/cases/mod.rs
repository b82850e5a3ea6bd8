//! The conformance cases, one module per theme. Every `pub async fn` here is listed in the port
//! macros of [`crate::testkit`] (a unit test checks that none is forgotten).
//!
//! A case builds its own stores from the fixture, asserts inside with messages that name the
//! method and the rule, and returns nothing.

pub mod cache;
pub mod check;
pub mod cleanup;
pub mod expiry;
pub mod isolation;
pub mod limits;
pub mod list;
pub mod store;
pub mod tokens;
pub mod ttl;
pub mod users;
pub mod validation;

mod support;
