//! `cargo xtask ci`: the single gate. Each step prints a header and times itself; the first failure
//! stops the run, the servers this run started are stopped whatever happened, and a summary table ends it.

use std::{
    env, fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    services::{self, Services},
    util::{
        Error, Result, bail, cargo, header, manifest_features, output, run, run_tee, which,
        workspace_root,
    },
};

/// Crates that do no I/O and start no runtime: `psm-core` (STYLE rule 5) and the in-memory tables
/// the embedded adapters share.
const PURE: [&str; 2] = ["psm-core", "psm-tables"];

/// Crates that must never appear in a pure crate's normal dependency tree (STYLE rule 5).
const IMPURE: [&str; 6] = [
    "tokio",
    "fred",
    "tokio-postgres",
    "deadpool",
    "jsonwebtoken",
    "axum",
];

/// The steps in order; `stop-services` always runs, also after a failure.
const STEPS: [(&str, StepFn); 11] = [
    ("fmt", fmt),
    ("clippy", clippy),
    ("purity", purity),
    ("doc", doc),
    ("services", start_services),
    ("test", test),
    ("soak", soak),
    ("fuzz", fuzz),
    ("api", api),
    ("machete", machete),
    ("stop-services", stop_services),
];

type StepFn = fn(&mut Ctx) -> Result<()>;

/// State carried from one step to the next.
#[derive(Debug, Default)]
struct Ctx {
    /// `PSM_REDIS_URL` / `PSM_POSTGRES_URL` for the steps after `services`.
    env: Vec<(&'static str, String)>,
    services: Option<Services>,
    passed: u64,
    failed: u64,
    saw_test_results: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Failed,
    Skipped,
    NotRun,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
            Status::NotRun => "not run",
        }
    }
}

/// Entry point of `cargo xtask ci`.
pub(crate) fn main(skip: &[String]) -> Result<()> {
    for name in skip {
        if !STEPS.iter().any(|(step, _)| step == name) {
            let names: Vec<_> = STEPS.iter().map(|(step, _)| *step).collect();
            bail!("unknown step `{name}`; steps are {}", names.join(", "));
        }
    }
    let mut ctx = Ctx::default();
    let mut results = Vec::new();
    let mut failure = None;
    let total_start = Instant::now();
    for (index, (name, step)) in STEPS.iter().enumerate() {
        let cleanup = *name == "stop-services";
        let status = if skip.iter().any(|s| s == name) {
            Status::Skipped
        } else if failure.is_some() && !cleanup {
            Status::NotRun
        } else {
            header(index + 1, STEPS.len(), name);
            let start = Instant::now();
            let result = step(&mut ctx);
            let elapsed = start.elapsed();
            let status = match result {
                Ok(()) => Status::Ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    failure.get_or_insert(*name);
                    Status::Failed
                }
            };
            results.push((*name, status, Some(elapsed)));
            continue;
        };
        results.push((*name, status, None));
    }
    // A skipped `stop-services` must still not leave servers behind.
    stop_services(&mut ctx)?;
    print_summary(&results, total_start.elapsed(), &ctx);
    match failure {
        Some(step) => Err(Error::new(format!("ci failed at step `{step}`"))),
        None => Ok(()),
    }
}

fn print_summary(results: &[(&str, Status, Option<Duration>)], total: Duration, ctx: &Ctx) {
    println!();
    println!("==> summary");
    println!("{:<15} {:<8} {:>9}", "step", "status", "seconds");
    for (name, status, elapsed) in results {
        let seconds = elapsed.map_or_else(|| "-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
        println!("{name:<15} {:<8} {seconds:>9}", status.label());
    }
    println!("{:<15} {:<8} {:>9.1}", "total", "", total.as_secs_f64());
    if ctx.saw_test_results {
        // The plain closing line CI reads: the counts summed over every `cargo test` binary.
        println!("tests: {} passed, {} failed", ctx.passed, ctx.failed);
    }
}

fn fmt(_: &mut Ctx) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
}

fn clippy(_: &mut Ctx) -> Result<()> {
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `psm-core` and `psm-tables` stay pure, and the facade builds with no feature and with each
/// feature alone.
fn purity(_: &mut Ctx) -> Result<()> {
    for krate in PURE {
        let tree = output(cargo().args(["tree", "-p", krate, "-e", "normal", "--prefix", "none"]))?;
        let offenders = impure_crates(&tree);
        if !offenders.is_empty() {
            for line in &offenders {
                eprintln!("  {line}");
            }
            bail!(
                "{krate}'s normal dependencies include {} (see STYLE rule 5)",
                offenders.join(", ")
            );
        }
        println!(
            "{krate}: none of {} in its dependency tree",
            IMPURE.join(", ")
        );
    }
    let manifest = fs::read_to_string(workspace_root().join("crates/psm/Cargo.toml"))
        .map_err(|e| Error::new(format!("cannot read crates/psm/Cargo.toml: {e}")))?;
    run(cargo().args(["check", "-p", "psm", "--no-default-features"]))?;
    for feature in manifest_features(&manifest) {
        run(cargo().args([
            "check",
            "-p",
            "psm",
            "--no-default-features",
            "--features",
            &feature,
        ]))?;
    }
    Ok(())
}

/// The `cargo tree --prefix none` lines naming a banned crate (exact name at line start).
fn impure_crates(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|name| IMPURE.contains(&name))
        })
        .map(|line| line.trim().trim_end_matches(" (*)").to_owned())
        .collect();
    found.sort();
    found.dedup();
    found
}

fn doc(_: &mut Ctx) -> Result<()> {
    run(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--workspace",
        "--all-features",
        "--no-deps",
    ]))
}

fn start_services(ctx: &mut Ctx) -> Result<()> {
    let services = services::discover()?;
    ctx.env = services.env_vars();
    for (var, _) in &ctx.env {
        println!("{var} is set for the following steps");
    }
    ctx.services = Some(services);
    Ok(())
}

fn test(ctx: &mut Ctx) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-features"])
        .envs(ctx.env.iter().map(|(k, v)| (k, v)));
    let (mut passed, mut failed, mut saw) = (0, 0, false);
    let result = run_tee(&mut cmd, |line| {
        if let Some((p, f)) = parse_test_result(line) {
            passed += p;
            failed += f;
            saw = true;
        }
    });
    ctx.passed += passed;
    ctx.failed += failed;
    ctx.saw_test_results |= saw;
    result
}

/// Reads `test result: ok. 12 passed; 0 failed; 0 ignored; ...` into (passed, failed).
pub(crate) fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "passed" => passed = n.parse().ok(),
            "failed" => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// A short soak of every provider on the servers of the `services` step (see `soak.rs`); the
/// test step built the driver, so this only runs it.
fn soak(ctx: &mut Ctx) -> Result<()> {
    crate::soak::run_soak(
        &ctx.env,
        crate::soak::CI_SECONDS,
        crate::soak::ALL_PROVIDERS,
    )
}

/// schemathesis against a running `psm serve` (see `api.rs`).
fn api(ctx: &mut Ctx) -> Result<()> {
    crate::api::conformance(&ctx.env)
}

/// The fuzz properties again with more cases than `test` gave them (see `fuzz.rs`); the test step
/// built everything, so this only runs. Its counts stay out of the summary's test line, which
/// already has these tests from the test step.
fn fuzz(_: &mut Ctx) -> Result<()> {
    crate::fuzz::run(crate::fuzz::CI_CASES).map(drop)
}

/// `cargo machete`, installed first if missing, for `cargo xtask audit`.
pub(crate) fn run_machete() -> Result<()> {
    machete(&mut Ctx::default())
}

fn machete(_: &mut Ctx) -> Result<()> {
    let binary = match find_cargo_tool("cargo-machete") {
        Some(binary) => binary,
        None => {
            println!(
                "cargo-machete is not installed; installing it with `cargo install cargo-machete --locked`"
            );
            run(cargo().args(["install", "cargo-machete", "--locked"])).map_err(|e| {
                Error::new(format!(
                    "cannot install cargo-machete (is crates.io reachable?): {e}"
                ))
            })?;
            find_cargo_tool("cargo-machete")
                .ok_or_else(|| Error::new("cargo-machete was installed but cannot be found"))?
        }
    };
    // The binary is run directly on the workspace root: through `cargo machete` it was handed the
    // subcommand's name as a path to analyse when started from this xtask.
    run(Command::new(binary).arg("--skip-target-dir"))
}

/// The cargo tool `name` (`cargo-machete`, `cargo-deny`) on the `PATH`, or where `cargo install`
/// puts it.
pub(crate) fn find_cargo_tool(name: &str) -> Option<PathBuf> {
    which(name).or_else(|| {
        let cargo_home = env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
        let binary = cargo_home.join("bin").join(name);
        binary.is_file().then_some(binary)
    })
}

fn stop_services(ctx: &mut Ctx) -> Result<()> {
    if let Some(services) = ctx.services.take() {
        services.stop_started();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_banned_crates_by_exact_name() {
        let tree = "psm-core v0.1.0 (/w/crates/psm-core)\nserde v1.0.0\ntokio v1.40.0\ntokio-util v0.7.0\n\
                    tokio v1.40.0 (*)\naxum-core v0.4.0\n";
        assert_eq!(impure_crates(tree), ["tokio v1.40.0"]);
        assert!(impure_crates("psm-core v0.1.0\nserde v1\n").is_empty());
    }

    #[test]
    fn reads_cargo_test_result_lines() {
        let ok = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(parse_test_result(ok), Some((12, 0)));
        let bad = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s";
        assert_eq!(parse_test_result(bad), Some((3, 2)));
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
