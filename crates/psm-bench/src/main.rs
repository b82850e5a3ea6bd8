//! `psm-bench`: the load driver behind `cargo xtask bench`.
//!
//! It measures psm's memory provider through the manager and a bare `RwLock<HashMap>` baseline on the
//! same generated workload; psm's file provider through the manager on that workload (reads against
//! the memory provider, durable writes from one task against a bare "append + fdatasync" loop, and
//! from many concurrent tasks); and the time to open a large file store. It checks that every answer
//! is the one the workload dictates (for the file stores, also after reopening them), and prints one
//! JSON object with the rates (operations per second, best of the rounds) and bytes per session.
//!
//! ```text
//! psm-bench [--sessions N] [--rounds R] [--seed S] [--file-dir DIR] [--writers W]
//!           [--durable-ops N] [--open-sessions N] [--opens N]
//!           [--redis-url URL] [--postgres-url URL] [--remote-sessions N]
//!           [--redis-ops N] [--redis-hot-ops N] [--pg-ops N] [--pg-cache-ops N]
//!           [--parts local,redis,postgres]
//! ```
//!
//! `--file-dir` (default `target/bench-file`) must be on the disk being measured: a tmpfs makes
//! every fsync free.
//!
//! With `--redis-url` (a server, `redis://host:port[/db]`), psm's Redis provider is measured against a
//! bare `fred` pool on that server, and with client-side caching on hot sessions; with `--postgres-url` (`postgres://user@host:port/db`), psm's
//! PostgreSQL provider against a bare `tokio-postgres` prepared `SELECT`, and the query layer's
//! cache against the cache itself. Both use a workload of `--remote-sessions` sessions and check
//! it `--redis-ops` / `--pg-ops` times per measurement, and remove everything they created. `--parts`
//! picks what runs (default: the local providers, plus each server given a URL).

// The JSON result on standard output is this program's whole interface.
#![allow(clippy::print_stdout)]
// Unlike every other crate root, no `#![forbid(unsafe_code)]`: `alloc.rs`'s counting allocator
// needs unsafe, allowed on that one impl only (the workspace lints deny it everywhere else).

mod alloc;
mod baseline;
mod file_run;
mod open;
mod ops;
mod pg_run;
mod psm_run;
mod redis_run;
mod remote;
mod workload;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use serde_json::{Map, Value, json};

use crate::{
    ops::{Op, OpResults},
    workload::{PERMS_PER_SESSION, SESSIONS_PER_USER, Workload},
};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Errors of a benchmark run: psm's, the runtime's, or a message.
pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The run's parameters.
#[derive(Debug, Clone)]
struct Params {
    sessions: usize,
    rounds: u32,
    seed: u64,
    /// Where the file stores and the raw fsync baseline's file are created (each in a fresh
    /// directory, removed afterwards).
    file_dir: PathBuf,
    /// Concurrent tasks writing durably to the file store.
    writers: usize,
    /// Durable `store_permissions` from one task (and raw appends + fsync), per round.
    durable_ops: usize,
    /// Sessions of the store whose opening is timed.
    open_sessions: usize,
    /// How many times that store is opened (the best is reported).
    opens: u32,
    /// Measure the memory and file providers (`--parts local`).
    local: bool,
    /// The Redis server to measure psm's Redis provider on, if any.
    redis_url: Option<String>,
    /// The PostgreSQL database to measure psm's PostgreSQL provider on, if any.
    postgres_url: Option<String>,
    /// Sessions of the Redis and PostgreSQL workload.
    remote_sessions: usize,
    /// Checks per Redis measurement.
    redis_ops: usize,
    /// Hot checks per measurement of the Redis client-side cache.
    redis_hot_ops: usize,
    /// Checks per PostgreSQL measurement.
    pg_ops: usize,
    /// Reads per measurement of the query layer's cache.
    pg_cache_ops: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            sessions: 100_000,
            rounds: 3,
            seed: 0x5053_4d5f_4245_4e43,
            file_dir: PathBuf::from("target/bench-file"),
            writers: 64,
            durable_ops: 2_000,
            open_sessions: 1_000_000,
            opens: 3,
            local: true,
            redis_url: None,
            postgres_url: None,
            remote_sessions: 20_000,
            redis_ops: 100_000,
            redis_hot_ops: 1_000_000,
            pg_ops: 50_000,
            pg_cache_ops: 200_000,
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
    let mut parts: Option<String> = None;
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
            "--file-dir" => params.file_dir = PathBuf::from(value),
            "--writers" => params.writers = number(&flag, &value)?,
            "--durable-ops" => params.durable_ops = number(&flag, &value)?,
            "--open-sessions" => params.open_sessions = number(&flag, &value)?,
            "--opens" => {
                params.opens = value.parse().map_err(|_| format!("bad --opens: {value}"))?
            }
            "--redis-url" => params.redis_url = Some(value),
            "--postgres-url" => params.postgres_url = Some(value),
            "--remote-sessions" => params.remote_sessions = number(&flag, &value)?,
            "--redis-ops" => params.redis_ops = number(&flag, &value)?,
            "--redis-hot-ops" => params.redis_hot_ops = number(&flag, &value)?,
            "--pg-ops" => params.pg_ops = number(&flag, &value)?,
            "--pg-cache-ops" => params.pg_cache_ops = number(&flag, &value)?,
            "--parts" => parts = Some(value),
            other => return Err(format!("unknown argument: {other}").into()),
        }
    }
    if let Some(parts) = parts {
        let mut wanted = [false; 3];
        for part in parts.split(',') {
            match part.trim() {
                "local" => wanted[0] = true,
                "redis" => wanted[1] = true,
                "postgres" => wanted[2] = true,
                other => return Err(format!("unknown part in --parts: {other}").into()),
            }
        }
        if wanted[1] && params.redis_url.is_none() {
            return Err("--parts redis needs --redis-url".into());
        }
        if wanted[2] && params.postgres_url.is_none() {
            return Err("--parts postgres needs --postgres-url".into());
        }
        params.local = wanted[0];
        if !wanted[1] {
            params.redis_url = None;
        }
        if !wanted[2] {
            params.postgres_url = None;
        }
    }
    if params.remote_sessions < redis_run::HOT_SESSIONS
        || params.redis_ops == 0
        || params.redis_hot_ops == 0
        || params.pg_ops == 0
        || params.pg_cache_ops == 0
    {
        return Err(format!(
            "--remote-sessions must be at least {} and the --redis-*/--pg-* counts at least 1",
            redis_run::HOT_SESSIONS
        )
        .into());
    }
    if params.sessions < 2 || params.rounds == 0 {
        return Err("--sessions must be at least 2 and --rounds at least 1".into());
    }
    if params.writers == 0 || params.durable_ops == 0 || params.open_sessions == 0 {
        return Err("--writers, --durable-ops and --open-sessions must be at least 1".into());
    }
    if params.open_sessions >= 1 << 24 {
        return Err("--open-sessions must be below 16,777,216".into());
    }
    if params.opens == 0 {
        return Err("--opens must be at least 1".into());
    }
    Ok(params)
}

fn number(flag: &str, value: &str) -> BenchResult<usize> {
    Ok(value.parse().map_err(|_| format!("bad {flag}: {value}"))?)
}

/// Runs every part asked for, verifies every tally and returns the JSON result.
fn run(params: Params) -> BenchResult<Value> {
    let started = Instant::now();
    let mut out = if params.local {
        run_local(&params)?
    } else {
        Map::new()
    };
    if params.redis_url.is_some() || params.postgres_url.is_some() {
        let w = Arc::new(Workload::generate(params.remote_sessions, params.seed));
        let mut problems = Vec::new();
        if let Some(url) = &params.redis_url {
            let p = redis_run::RedisParams {
                url: url.clone(),
                ops: params.redis_ops,
                hot_ops: params.redis_hot_ops,
                rounds: params.rounds,
            };
            out.insert("redis".into(), redis_run::run(&w, &p, &mut problems)?);
        }
        if let Some(url) = &params.postgres_url {
            let p = pg_run::PgParams {
                url: url.clone(),
                ops: params.pg_ops,
                cache_ops: params.pg_cache_ops,
                rounds: params.rounds,
                redis_url: params.redis_url.clone(),
            };
            out.insert("postgres".into(), pg_run::run(&w, &p, &mut problems)?);
        }
        if !problems.is_empty() {
            return Err(format!("wrong answers, so no figures:\n{}", problems.join("\n")).into());
        }
        out.insert(
            "remote_workload".into(),
            json!({
                "sessions": w.len(),
                "users": w.users.len(),
                "permissions_per_session": PERMS_PER_SESSION,
                "pool": w.pool.len(),
                "rounds": params.rounds,
                "seed": params.seed,
            }),
        );
    }
    out.insert("verified".into(), Value::Bool(true));
    eprintln!(
        "psm-bench: every answer checked; done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Value::Object(out))
}

/// The memory and file providers: generates the workload, runs every measurement, verifies every
/// tally and returns the JSON figures.
fn run_local(params: &Params) -> BenchResult<Map<String, Value>> {
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
    // The file provider's rounds run in the same loop, right after the memory provider's.
    let mut psm_single = OpResults::default();
    let mut psm_threads2 = OpResults::default();
    let mut blocking = psm_run::Blocking::default();
    let mut map_single = OpResults::default();
    let mut map_threads2 = OpResults::default();
    let mut file_reads = file_run::Reads::default();
    let mut durable = file_run::Durable::default();
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
        step(&format!(
            "round {round}: file store filled by {} durable writers, then read",
            params.writers
        ));
        file_run::reads(&w, &params.file_dir, params.writers, &mut file_reads)?;
        step(&format!(
            "round {round}: {} durable stores from one task, alternating with raw append + fdatasync",
            params.durable_ops
        ));
        file_run::durable_single(&w, &params.file_dir, params.durable_ops, &mut durable)?;
    }
    step("bytes per session");
    let psm_bytes = psm_run::bytes_per_session(&w)?;
    let map_bytes = baseline::bytes_per_session(&w);

    let mut problems = Vec::new();
    eprintln!(
        "psm-bench: a file store of {} sessions: build, then open {} times",
        params.open_sessions, params.opens
    );
    let open = open::large_store(
        &params.file_dir,
        params.open_sessions,
        params.opens,
        params.seed,
        &mut problems,
    )?;

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
    file_reads
        .concurrent_store
        .verify(&w, "file concurrent writers", &mut problems);
    file_reads.single.verify(&w, "file single", &mut problems);
    file_reads
        .memory_single
        .verify(&w, "memory beside file, single", &mut problems);
    file_reads
        .memory_threads2
        .verify(&w, "memory beside file, 2 threads", &mut problems);
    file_reads
        .threads2
        .verify(&w, "file 2 threads", &mut problems);
    problems.append(&mut file_reads.problems);
    problems.append(&mut durable.problems);
    if !problems.is_empty() {
        return Err(format!("wrong answers, so no figures:\n{}", problems.join("\n")).into());
    }
    eprintln!(
        "psm-bench: local providers checked; done in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let Value::Object(figures) = json!({
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
        "file": {
            "dir": params.file_dir.display().to_string(),
            "writers": params.writers,
            "store_concurrent": file_reads.concurrent_store.rate(Op::Store),
            "single": file_reads.single.to_json(),
            "threads2": file_reads.threads2.to_json(),
            "memory_single": file_reads.memory_single.to_json(),
            "memory_threads2": file_reads.memory_threads2.to_json(),
            "reopen_secs": best_low(&file_reads.reopen_secs),
            "durable_single": {
                "ops": params.durable_ops.min(w.len()),
                "psm": best_high(&durable.psm),
                "raw": best_high(&durable.raw),
                "psm_rounds": durable.psm,
                "raw_rounds": durable.raw,
                "raw_record_bytes": file_run::RAW_RECORD_BYTES,
                "psm_record_bytes": durable.psm_record_bytes,
            },
            "open": open,
        },
    }) else {
        return Err("the local figures are not a JSON object".into());
    };
    Ok(figures)
}

/// The highest of the rounds' rates, `null` when there is none.
fn best_high(rates: &[f64]) -> Value {
    rates
        .iter()
        .copied()
        .reduce(f64::max)
        .map_or(Value::Null, Value::from)
}

/// The lowest of the rounds' times, `null` when there is none.
fn best_low(secs: &[f64]) -> Value {
    secs.iter()
        .copied()
        .reduce(f64::min)
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correctness, not speed: at N = 1,000 every mode answers what the workload dictates (half the
    /// checks true, every stored session found, listed and invalidated; the file stores hold every
    /// session after reopening) and every figure is present.
    /// The byte counts come from a process-wide counting allocator, so no two tests of this binary
    /// may allocate at the same time.
    static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_small_run_answers_correctly_and_reports_every_figure() {
        let _serial = MEASURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = tempfile::tempdir().unwrap();
        let report = run(Params {
            sessions: 1_000,
            rounds: 1,
            seed: 42,
            file_dir: tmp.path().join("bench-file"),
            writers: 8,
            durable_ops: 50,
            open_sessions: 3_000,
            opens: 2,
            ..Params::default()
        })
        .unwrap();
        assert_eq!(report["verified"], true);
        assert!(report["redis"].is_null() && report["postgres"].is_null());
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

        let file = &report["file"];
        assert!(file["store_concurrent"].as_f64().unwrap() > 0.0);
        for mode in ["single", "threads2"] {
            for op in file_run::READ_OPS {
                assert!(
                    file[mode][op.key()].as_f64().unwrap() > 0.0,
                    "file {mode} {}",
                    op.key()
                );
            }
            assert!(file[mode]["store"].is_null());
        }
        assert!(file["reopen_secs"].as_f64().unwrap() > 0.0);
        let durable = &file["durable_single"];
        assert_eq!(durable["ops"], 50);
        assert!(durable["psm"].as_f64().unwrap() > 0.0);
        assert!(durable["raw"].as_f64().unwrap() > 0.0);
        assert!(durable["psm_record_bytes"].as_f64().unwrap() > 0.0);
        assert_eq!(file["open"]["sessions"], 3_000);
        assert_eq!(file["open"]["open_secs"].as_array().unwrap().len(), 2);
        assert!(file["open"]["best_open_secs"].as_f64().unwrap() > 0.0);
        // Every store was created in a fresh directory and removed afterwards.
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("bench-file"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let w = Workload::generate(1_000, 42);
        assert_eq!(Op::Check.expected_hits(&w), 500);
        assert_eq!(Op::ListUser.expected_hits(&w), 1_000);
    }

    #[test]
    fn rejects_bad_arguments() {
        let _serial = MEASURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let parse = |line: &str| parse_args(line.split_whitespace().map(str::to_owned));
        assert_eq!(parse("--sessions 500 --rounds 2").unwrap().sessions, 500);
        let p = parse("--file-dir /x/y --writers 8 --durable-ops 9 --open-sessions 10 --opens 2")
            .unwrap();
        assert_eq!(p.file_dir, PathBuf::from("/x/y"));
        assert_eq!(
            (p.writers, p.durable_ops, p.open_sessions, p.opens),
            (8, 9, 10, 2)
        );
        for bad in [
            "--sessions",
            "--sessions x",
            "--rounds 0",
            "--fast 1",
            "--writers 0",
            "--opens 0",
            "--open-sessions 20000000",
            "--parts redis",
            "--parts local,mongo",
            "--redis-ops 0",
            "--remote-sessions 3",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }

        let p = parse("--redis-url redis://h:1 --postgres-url postgres://h/db --pg-ops 7").unwrap();
        assert!(p.local);
        assert_eq!(p.redis_url.as_deref(), Some("redis://h:1"));
        assert_eq!(p.pg_ops, 7);
        let p = parse("--redis-url redis://h:1 --postgres-url postgres://h/db --parts postgres")
            .unwrap();
        assert!(!p.local && p.redis_url.is_none() && p.postgres_url.is_some());
    }

    /// The server URL a test uses: the variable CI sets, else the conventional local server.
    fn server(var: &str, conventional: &str) -> String {
        std::env::var(var)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| conventional.to_owned())
    }

    /// Correctness, not speed: against real servers (`PSM_REDIS_URL`, `PSM_POSTGRES_URL`, else the
    /// conventional local ones; the run fails loudly when they do not answer), every Redis and
    /// PostgreSQL figure is present, every answer was checked, and nothing the run created is left.
    #[test]
    fn the_server_parts_answer_correctly_and_leave_nothing_behind() {
        let _serial = MEASURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let postgres = server(
            "PSM_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        let report = run(Params {
            rounds: 1,
            seed: 7,
            local: false,
            redis_url: Some(server("PSM_REDIS_URL", "redis://127.0.0.1:6379")),
            postgres_url: Some(postgres.clone()),
            remote_sessions: 300,
            redis_ops: 1_000,
            redis_hot_ops: 2_000,
            pg_ops: 700,
            pg_cache_ops: 500,
            ..Params::default()
        })
        .unwrap();
        assert_eq!(report["verified"], true);
        assert!(report["psm"].is_null() && report["file"].is_null());
        assert_eq!(report["remote_workload"]["sessions"], 300);
        let r = &report["redis"];
        for side in ["psm", "bare"] {
            for mode in ["sequential", "concurrent"] {
                assert!(
                    r[side][mode]["best"].as_f64().unwrap() > 0.0,
                    "redis {side} {mode}"
                );
            }
        }
        for mode in ["hot_single", "hot_threads2"] {
            assert!(r["cached"][mode]["best"].as_f64().unwrap() > 0.0);
        }
        // psm's 300 session hashes and at least one index per user (30 users); the bare pool
        // reads those same hashes and writes nothing of its own.
        assert!(r["cleanup"]["keys_removed"].as_u64().unwrap() >= 330);
        assert!(r["server"].as_str().unwrap().starts_with("Redis "));

        let p = &report["postgres"];
        for side in ["psm", "bare"] {
            for mode in ["sequential", "concurrent"] {
                assert!(
                    p[side][mode]["best"].as_f64().unwrap() > 0.0,
                    "postgres {side} {mode}"
                );
            }
        }
        for figure in ["cached_fetch", "cache_get"] {
            assert!(p["query_cache"][figure]["best"].as_f64().unwrap() > 0.0);
            let redis = &p["query_cache_redis"];
            assert!(redis[figure]["best"].as_f64().unwrap() > 0.0);
            assert!(redis["tagged"][figure]["best"].as_f64().unwrap() > 0.0);
        }
        // The Redis cache's entries (two values and a tag generation) were removed.
        let redis_cache = &p["query_cache_redis"]["server"];
        assert!(
            redis_cache["keys_removed"].as_u64().unwrap() >= 2,
            "{redis_cache}"
        );
        let dropped: Vec<String> = p["cleanup"]["schemas_dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(dropped.len(), 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let left: i64 = rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&postgres, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)",
                    &[&dropped],
                )
                .await
                .unwrap()
                .get(0)
        });
        assert_eq!(left, 0);
    }
}
