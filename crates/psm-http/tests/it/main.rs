//! psm-http over real sockets: the guard (extractor and layer), bad input, problem documents,
//! health, metrics and the OpenAPI document. The full register-to-logout flow on every provider is
//! in the workspace's `tests/` package.
// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole test crate opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod bad_input;
mod fuzz;
mod guard;
mod support;
