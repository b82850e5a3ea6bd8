//! `cargo xtask fuzz [--cases N]`: the fuzz properties, every test under a `fuzz::` path, with a
//! large case count.
//!
//! cargo-fuzz needs a nightly compiler and the toolchain is pinned to a stable release, so the
//! fuzzing is proptest's: the `fuzz` modules of psm-core, psm-memory, psm-file, psm-redis and
//! psm-postgres (unit tests) and of psm-jwt and psm-http (their `it` test binaries) read their case
//! count from `PSM_FUZZ_CASES`. A plain `cargo test` runs them with a few hundred cases; here cheap
//! parsers get `N` cases and costlier properties (a store opened over damaged files, a request
//! through the router) `N` divided by their cost. A failure is shrunk to a minimal input, which
//! proptest also saves under the crate's `proptest-regressions/` and replays first next time.

use std::time::Instant;

use crate::{
    ci::parse_test_result,
    util::{Result, bail, cargo, run_tee},
};

/// Cases per cheap property for `cargo xtask fuzz`.
pub(crate) const DEFAULT_CASES: u32 = 100_000;

/// Cases per cheap property for the short run in `cargo xtask ci`.
pub(crate) const CI_CASES: u32 = 4_000;

/// Entry point of `cargo xtask fuzz`.
pub(crate) fn main(cases: u32) -> Result<()> {
    let start = Instant::now();
    let passed = run(cases)?;
    println!(
        "fuzz: {passed} properties passed with PSM_FUZZ_CASES={cases} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs every fuzz property with `cases`; returns how many passed.
///
/// The targets and features are those of `cargo xtask ci`'s test step, so inside CI nothing is
/// rebuilt; only the library and `it` targets are named, since other test binaries (such as
/// psm-file's `crash`, which has its own harness) would not honour the `fuzz::` filter.
pub(crate) fn run(cases: u32) -> Result<u64> {
    let mut cmd = cargo();
    cmd.env("PSM_FUZZ_CASES", cases.to_string()).args([
        "test",
        // Every failing property is reported, not only those of the first failing binary.
        "--no-fail-fast",
        "--workspace",
        "--all-features",
        "--lib",
        "--test",
        "it",
        "--",
        "fuzz::",
    ]);
    let (mut passed, mut failed) = (0, 0);
    run_tee(&mut cmd, |line| {
        if let Some((p, f)) = parse_test_result(line) {
            passed += p;
            failed += f;
        }
    })?;
    if failed > 0 {
        bail!("{failed} fuzz properties failed");
    }
    if passed == 0 {
        bail!(
            "no fuzz property ran: they are tests under a `fuzz::` path in library or `it` targets"
        );
    }
    Ok(passed)
}
