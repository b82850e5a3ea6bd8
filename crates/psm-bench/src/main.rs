//! `psm-bench`: the load driver behind `cargo xtask bench`.
//!
//! It measures psm's memory provider through the manager and a bare `RwLock<HashMap>` baseline on the
//! same generated workload, checks that every answer is the one the workload dictates, and prints one
//! JSON object with the rates (operations per second, best of the rounds) and bytes per session.
//!
//! ```text
//! psm-bench [--sessions N] [--rounds R] [--seed S]
//! ```

// The JSON result on standard output is this program's whole interface.
#![allow(clippy::print_stdout)]

mod alloc;
mod baseline;
mod ops;
mod psm_run;
mod workload;

use std::{process::ExitCode, sync::Arc, time::Instant};

use serde_json::{Value, json};

use crate::{
    ops::{Op, OpResults},
    workload::{PERMS_PER_SESSION, SESSIONS_PER_USER, Workload},
};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Errors of a benchmark run: psm's, the runtime's, or a message.
pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The run's parameters.
#[derive(Debug, Clone, Copy)]
struct Params {
    sessions: usize,
    rounds: u32,
    seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            sessions: 100_000,
            rounds: 3,
            seed: 0x5053_4d5f_4245_4e43,
        }
    }
}

fn main() -> ExitCode {
    let result = parse_args(std::env::args().skip(1)).and_then(run);
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("psm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> BenchResult<Params> {
    let mut params = Params::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sessions" => {
                params.sessions = value
                    .parse()
                    .map_err(|_| format!("bad --sessions: {value}"))?
            }
            "--rounds" => {
                params.rounds = value
                    .parse()
                    .map_err(|_| format!("bad --rounds: {value}"))?
            }
            "--seed" => params.seed = value.parse().map_err(|_| format!("bad --seed: {value}"))?,
            other => return Err(format!("unknown argument: {other}").into()),
        }
    }
    if params.sessions < 2 || params.rounds == 0 {
        return Err("--sessions must be at least 2 and --rounds at least 1".into());
    }
    Ok(params)
}

/// Generates the workload, runs every measurement, verifies every tally and returns the JSON result.
fn run(params: Params) -> BenchResult<Value> {
    let w = Arc::new(Workload::generate(params.sessions, params.seed));
    let step = |what: &str| {
        eprintln!(
            "psm-bench: {what} ({} sessions, best of {})",
            w.len(),
            params.rounds
        )
    };
    let started = Instant::now();

    // Rounds are interleaved (psm, then the baseline, mode by mode) so that both sides of every
    // ratio are measured under the same load: on a shared VM, throughput drifts by tens of percent
    // over minutes, and measuring all of psm's rounds before all of the baseline's skews ratios.
    let mut psm_single = OpResults::default();
    let mut psm_threads2 = OpResults::default();
    let mut blocking = psm_run::Blocking::default();
    let mut map_single = OpResults::default();
    let mut map_threads2 = OpResults::default();
    for round in 1..=params.rounds {
        step(&format!(
            "round {round}: psm and the HashMap baseline, single task"
        ));
        psm_single.merge(psm_run::single(&w, 1)?);
        map_single.merge(baseline::single(&w, 1));
        step(&format!(
            "round {round}: psm and the HashMap baseline, 2 threads"
        ));
        psm_threads2.merge(psm_run::threads2(&w, 1)?);
        map_threads2.merge(baseline::threads2(&w, 1)?);
        step(&format!("round {round}: psm::blocking, plain threads"));
        let b = psm_run::blocking(&w, 1)?;
        blocking.single.merge(b.single);
        blocking.threads2.merge(b.threads2);
    }
    step("bytes per session");
    let psm_bytes = psm_run::bytes_per_session(&w)?;
    let map_bytes = baseline::bytes_per_session(&w);

    let mut problems = Vec::new();
    psm_single.verify(&w, "psm single", &mut problems);
    psm_threads2.verify(&w, "psm 2 threads", &mut problems);
    blocking
        .single
        .verify(&w, "psm::blocking single", &mut problems);
    blocking
        .threads2
        .verify(&w, "psm::blocking 2 threads", &mut problems);
    map_single.verify(&w, "hashmap single", &mut problems);
    map_threads2.verify(&w, "hashmap 2 threads", &mut problems);
    if !problems.is_empty() {
        return Err(format!("wrong answers, so no figures:\n{}", problems.join("\n")).into());
    }
    eprintln!(
        "psm-bench: every answer checked; done in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    Ok(json!({
        "workload": {
            "sessions": w.len(),
            "users": w.users.len(),
            "sessions_per_user": SESSIONS_PER_USER,
            "permissions_per_session": PERMS_PER_SESSION,
            "pool": w.pool.len(),
            "rounds": params.rounds,
            "seed": params.seed,
        },
        "psm": {
            "single": psm_single.to_json(),
            "threads2": psm_threads2.to_json(),
            "blocking": {
                "check_single": blocking.single.rate(Op::Check),
                "check_threads2": blocking.threads2.rate(Op::Check),
            },
            "bytes_per_session": psm_bytes,
        },
        "hashmap": {
            "single": map_single.to_json(),
            "threads2": map_threads2.to_json(),
            "bytes_per_session": map_bytes,
        },
        "verified": true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correctness, not speed: at N = 1,000 every mode answers what the workload dictates (half the
    /// checks true, every stored session found, listed and invalidated) and every figure is present.
    #[test]
    fn a_small_run_answers_correctly_and_reports_every_figure() {
        let report = run(Params {
            sessions: 1_000,
            rounds: 1,
            seed: 42,
        })
        .unwrap();
        assert_eq!(report["verified"], true);
        for mode in ["single", "threads2"] {
            for op in Op::ALL {
                assert!(
                    report["psm"][mode][op.key()].as_f64().unwrap() > 0.0,
                    "psm {mode} {}",
                    op.key()
                );
            }
            assert!(report["hashmap"][mode]["check"].as_f64().unwrap() > 0.0);
            assert!(report["hashmap"][mode]["list_user"].is_null());
        }
        assert!(report["psm"]["blocking"]["check_single"].as_f64().unwrap() > 0.0);
        assert!(report["psm"]["bytes_per_session"].as_f64().unwrap() > 0.0);
        assert!(report["hashmap"]["bytes_per_session"].as_f64().unwrap() > 0.0);

        let w = Workload::generate(1_000, 42);
        assert_eq!(Op::Check.expected_hits(&w), 500);
        assert_eq!(Op::ListUser.expected_hits(&w), 1_000);
    }

    #[test]
    fn rejects_bad_arguments() {
        let parse = |line: &str| parse_args(line.split_whitespace().map(str::to_owned));
        assert_eq!(parse("--sessions 500 --rounds 2").unwrap().sessions, 500);
        for bad in ["--sessions", "--sessions x", "--rounds 0", "--fast 1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
