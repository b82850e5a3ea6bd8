//! `psm-soak`: the soak driver behind `cargo xtask soak` (and the soak step of `cargo xtask ci`).
//!
//! ```text
//! psm-soak [--seconds N] [--providers memory,file,redis,redis-cluster,postgres]
//!          [--redis-url URL] [--redis-cluster-url URL] [--postgres-url URL]
//!          [--file-dir DIR] [--seed S] [--progress SECS]
//! ```
//!
//! The servers default to `PSM_REDIS_URL`, `PSM_REDIS_CLUSTER_URL` and `PSM_POSTGRES_URL`.
//! `--seconds` is the whole run, shared equally by the providers, which run one after another.
//! Each provider gets a fresh namespace (directory, key prefix, schema), removed at the end, and
//! a workload of concurrent writers (`store_permissions`, ttl 1 to 3 s), readers
//! (`check_permission`, `check_permissions`, `get_permissions`), updaters (`update_permissions`,
//! `extend_session_ttl`), an invalidator, logins (`create_session` under a per-user limit of 3,
//! half the users evicting, half rejecting) and refreshers (rotation through `psm::auth` on the
//! provider's token state, replays of rotated tokens, simultaneous refreshes), while a checker
//! sweeps every session, counts every login user's sessions and cleans up expired state.
//!
//! Every answer is judged against a model of the acknowledged calls (see `model.rs`); resident
//! memory and open descriptors are sampled and their halves compared (`resources.rs`). A progress
//! line is printed every `--progress` seconds, then a markdown report per provider. The exit
//! status is non-zero when any invariant was violated or a provider could not be run.

// The report on standard output is this program's whole interface.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

mod chain;
mod model;
mod provider;
mod resources;
mod rng;
#[cfg(test)]
mod sabotage;
mod stats;
mod workers;

use std::{
    fmt,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use psm::{OsRandom, RandomSource};
use tokio::task::JoinSet;

use crate::{
    model::Invariant,
    provider::{Kind, Rig, Targets},
    resources::Growth,
    stats::Stats,
    workers::Ctx,
};

/// How often memory and descriptors are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Attempts at opening a provider before its run counts as failed.
const OPEN_ATTEMPTS: u32 = 3;
/// How long the tasks get to finish their last call once asked to stop.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// An error that ends a provider's run (setup, teardown, a task that panicked).
#[derive(Debug)]
pub(crate) struct SoakError(String);

impl SoakError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for SoakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<psm::Error> for SoakError {
    fn from(e: psm::Error) -> Self {
        Self(e.to_string())
    }
}

/// The command line.
#[derive(Debug)]
struct Args {
    seconds: u64,
    providers: Vec<Kind>,
    targets: Targets,
    seed: Option<u64>,
    progress: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, SoakError> {
    let mut parsed = Args {
        seconds: 60,
        providers: Kind::ALL.to_vec(),
        targets: Targets {
            file_dir: PathBuf::from("target/soak"),
            ..Targets::default()
        },
        seed: None,
        progress: 5,
    };
    let number = |flag: &str, v: Option<String>| -> Result<u64, SoakError> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| SoakError::new(format!("{flag} needs a whole number")))
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| SoakError::new(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--seconds" => parsed.seconds = number(&flag, Some(value()?))?,
            "--seed" => parsed.seed = Some(number(&flag, Some(value()?))?),
            "--progress" => parsed.progress = number(&flag, Some(value()?))?.max(1),
            "--providers" => {
                parsed.providers = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|name| {
                        Kind::parse(name).ok_or_else(|| {
                            SoakError::new(format!(
                                "unknown provider {name} (memory, file, redis, redis-cluster, postgres)"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--redis-url" => parsed.targets.redis_url = Some(value()?),
            "--redis-cluster-url" => parsed.targets.redis_cluster_url = Some(value()?),
            "--postgres-url" => parsed.targets.postgres_url = Some(value()?),
            "--file-dir" => parsed.targets.file_dir = PathBuf::from(value()?),
            other => return Err(SoakError::new(format!("unknown argument {other}"))),
        }
    }
    // The variables `cargo xtask services env` exports, for servers not given as flags.
    for (slot, var) in [
        (&mut parsed.targets.redis_url, "PSM_REDIS_URL"),
        (
            &mut parsed.targets.redis_cluster_url,
            "PSM_REDIS_CLUSTER_URL",
        ),
        (&mut parsed.targets.postgres_url, "PSM_POSTGRES_URL"),
    ] {
        if slot.is_none() {
            *slot = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
        }
    }
    if parsed.providers.is_empty() {
        return Err(SoakError::new("--providers names none"));
    }
    if parsed.seconds < parsed.providers.len() as u64 {
        return Err(SoakError::new(
            "--seconds must give each provider at least a second",
        ));
    }
    Ok(parsed)
}

/// What one provider's run produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) stats: Stats,
    pub(crate) seconds: f64,
    pub(crate) growth: Growth,
}

/// Runs the workload on `rig` for `duration`, printing progress every `progress`. The rig comes
/// back whatever happened, so its namespace is always removed; the outcome is an error when the
/// workload's tasks could not be stopped cleanly.
pub(crate) async fn soak(
    name: &str,
    rig: Rig,
    duration: Duration,
    seed: u64,
    progress: Duration,
) -> Result<(Result<Outcome, SoakError>, Rig), SoakError> {
    let ctx = Arc::new(Ctx::new(rig, seed)?);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    ctx.spawn(&mut tasks);
    let mut samples = Vec::new();
    let mut last_progress = Instant::now();
    let mut last_calls = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(SAMPLE_EVERY).await;
        samples.extend(resources::sample());
        if last_progress.elapsed() >= progress {
            let t = ctx.stats.totals();
            let rate = (t.calls - last_calls) as f64 / last_progress.elapsed().as_secs_f64();
            let (rss, fds) = samples
                .last()
                .map_or((0.0, 0), |s| (s.rss_bytes as f64 / (1 << 20) as f64, s.fds));
            println!(
                "[{name}] {:>4.0} s / {} s: {} calls ({rate:.0}/s), {} errors, {} violations, rss {rss:.1} MiB, {fds} fds",
                started.elapsed().as_secs_f64(),
                duration.as_secs(),
                t.calls,
                t.errors,
                t.violations
            );
            last_progress = Instant::now();
            last_calls = t.calls;
        }
    }
    ctx.stop();
    let seconds = started.elapsed().as_secs_f64();
    let stopped = tokio::time::timeout(STOP_BOUND, async {
        let mut panicked = 0;
        while let Some(joined) = tasks.join_next().await {
            if joined.is_err() {
                panicked += 1;
            }
        }
        panicked
    })
    .await;
    let problem = match stopped {
        Ok(0) => None,
        Ok(n) => Some(SoakError::new(format!("{n} workload tasks panicked"))),
        Err(_) => {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            Some(SoakError::new(format!(
                "the workload tasks did not stop within {} s",
                STOP_BOUND.as_secs()
            )))
        }
    };
    if problem.is_none() {
        // A last look at every session, with nothing running beside it.
        ctx.sweep().await;
    }
    let growth = resources::judge(&samples);
    for invariant in &growth.violations {
        let detail = match invariant {
            Invariant::MemoryGrowth => growth
                .rss
                .map(|(a, b)| format!("median rss {a} bytes in the first half, {b} in the second")),
            _ => growth
                .fds
                .map(|(a, b)| format!("median fds {a} in the first half, {b} in the second")),
        };
        ctx.stats.violation(*invariant, detail.unwrap_or_default());
    }
    // Every task was joined, so this is the last handle.
    let ctx =
        Arc::try_unwrap(ctx).map_err(|_| SoakError::new("a workload task outlived the run"))?;
    let (stats, rig) = ctx.into_parts();
    let outcome = match problem {
        None => Ok(Outcome {
            stats,
            seconds,
            growth,
        }),
        Some(e) => Err(e),
    };
    Ok((outcome, rig))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("psm-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = match args.seed {
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 8];
            if let Err(e) = OsRandom.fill(&mut bytes) {
                eprintln!("psm-soak: no random seed: {e}");
                return ExitCode::FAILURE;
            }
            u64::from_le_bytes(bytes)
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("psm-soak: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let each = Duration::from_secs(args.seconds / args.providers.len() as u64);
    let names: Vec<_> = args.providers.iter().map(|k| k.name()).collect();
    println!(
        "psm-soak: {} s per provider ({}), seed {seed}",
        each.as_secs(),
        names.join(", ")
    );
    let mut summary = Vec::new();
    let mut failed = false;
    for kind in &args.providers {
        let result = runtime.block_on(run_provider(*kind, &args, each, seed));
        match result {
            Ok((report, calls, errors, violations)) => {
                println!("\n{report}");
                failed |= violations > 0;
                summary.push(format!(
                    "| {} | {} | {calls} | {errors} | {violations} |",
                    kind.name(),
                    each.as_secs()
                ));
            }
            Err(e) => {
                eprintln!("psm-soak: {}: {e}", kind.name());
                failed = true;
                summary.push(format!(
                    "| {} | {} | - | - | run failed: {e} |",
                    kind.name(),
                    each.as_secs()
                ));
            }
        }
    }
    println!("\n### summary\n");
    println!("| provider | seconds | calls | errors | invariant violations |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for line in &summary {
        println!("{line}");
    }
    if failed {
        println!("\npsm-soak: FAILED (see above)");
        ExitCode::FAILURE
    } else {
        println!("\npsm-soak: every invariant held");
        ExitCode::SUCCESS
    }
}

/// One provider: open, soak, report, tear down (also after a failed soak).
async fn run_provider(
    kind: Kind,
    args: &Args,
    each: Duration,
    seed: u64,
) -> Result<(String, u64, u64, u64), SoakError> {
    // Opening is retried: a server that refuses a connection for a moment (a cluster settling
    // after it was formed) says nothing about psm's invariants.
    let mut attempt = 1;
    let rig = loop {
        match Rig::open(kind, &args.targets).await {
            Ok(rig) => break rig,
            Err(e) if attempt < OPEN_ATTEMPTS => {
                eprintln!("psm-soak: {}: opening failed ({e}); retrying", kind.name());
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let progress = Duration::from_secs(args.progress);
    let (outcome, rig) = soak(kind.name(), rig, each, seed, progress).await?;
    let torn = rig.teardown().await;
    let outcome = outcome?;
    let t = outcome.stats.totals();
    let report = outcome
        .stats
        .report(kind.name(), outcome.seconds, &outcome.growth);
    torn.map_err(|e| SoakError::new(format!("{report}\nteardown failed: {e}")))?;
    Ok((report, t.calls, t.errors, t.violations))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, SoakError> {
        parse_args(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_command_line() {
        let a = parse("--seconds 10 --providers memory,file --seed 3").unwrap();
        assert_eq!(a.seconds, 10);
        assert_eq!(a.providers, [Kind::Memory, Kind::File]);
        assert_eq!(a.seed, Some(3));
        for bad in [
            "--seconds",
            "--seconds x",
            "--providers mongo",
            "--providers memory --seconds 0",
            "--fast",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
