//! The facade's integration tests: one binary (STYLE rule 21), one module per concern.
#![cfg(feature = "memory")]
// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole test crate opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod auth_servers;
mod blocking;
mod file;
mod lifecycle;
mod ops;
mod postgres;
mod query_cache;
mod redis;
mod registry;
mod support;
mod ttl;
mod url;
mod validation;
