//! psm-jwt's integration tests: one binary (STYLE rule 21), one module per concern.

// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole test crate opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fuzz;
mod tokens;
