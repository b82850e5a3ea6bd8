//! End-to-end: the `psm` server started as `psm serve` starts it, driven over real sockets, on the
//! embedded default and on Redis plus PostgreSQL; export from one provider and import into another
//! through the CLI's own code path.
// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole test crate opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flow;
mod support;
mod transfer;
