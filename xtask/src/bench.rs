//! `cargo xtask bench`: the load driver (`psm-bench`: the memory and file providers with their
//! baselines, the Redis and PostgreSQL providers beside bare clients on the same servers), the
//! servers' own tools on those servers (`redis-benchmark`, `pgbench`), the Python original on the
//! same workload (memory, file and Redis providers), and the criterion micro-benchmarks, in one run;
//! writes `docs/benchmarks.md` and `docs/benchmarks.json`.
//!
//! The servers are `PSM_REDIS_URL` and `PSM_POSTGRES_URL` when set, else the conventional local
//! ones (see [`peers::servers`]); nothing is started here.

mod criterion;
mod http;
mod machine;
mod peers;
mod report;

use std::{fs, path::Path, process::Command};

use serde_json::{Value, json};

use crate::{
    flags::BenchFlags,
    util::{Error, Result, bail, cargo, display, header, output, workspace_root},
};

/// The full workload (the numbers); `--quick` uses the smaller one.
const SESSIONS: u64 = 100_000;
const QUICK_SESSIONS: u64 = 10_000;
/// Each measurement is the best of this many rounds.
const ROUNDS: u32 = 3;
/// One seed for the Rust and Python data generators, so every run measures the same shape.
const SEED: u64 = 0x5053_4d5f_4245_4e43;
/// The Python original, pinned.
const PYTHON_PACKAGE: &str = "permission-storage-manager==1.0.2";
const PYTHON_SCRIPT: &str = "xtask/bench/python_baseline.py";
const VENV: &str = "target/bench-venv";
/// Where every file store, the raw fsync baseline's file and the Python original's `storage_dir`
/// live, each in a fresh directory: under `target/`, on the workspace's disk (`/tmp` may be a tmpfs,
/// where an fsync costs nothing).
const FILE_DIR: &str = "target/bench-file";
/// Concurrent durable writers, for psm and for the Python original.
const WRITERS: u32 = 64;
/// Durable stores from one task (and raw appends + fdatasync), per round.
const DURABLE_OPS: u32 = 2_000;
/// The store whose opening is timed (the number), and how often it is opened.
const OPEN_SESSIONS: u64 = 1_000_000;
const QUICK_OPEN_SESSIONS: u64 = 100_000;
const OPENS: u32 = 3;
const QUICK_OPENS: u32 = 2;
/// The Python original's file provider writes one JSON file per session with an fsync, so it gets
/// fewer operations; its figures are rates.
const PYTHON_FILE_STORES: u32 = 2_000;
const PYTHON_FILE_CHECKS: u32 = 20_000;
/// The Redis and PostgreSQL part of psm-bench: sessions, and calls per measurement (the quick run's
/// second). A check costs a round trip, so the rounds stay short: the whole part takes about two
/// minutes on two cores.
const REMOTE_SESSIONS: (u32, u32) = (20_000, 2_000);
const REDIS_OPS: (u32, u32) = (100_000, 10_000);
const REDIS_HOT_OPS: (u32, u32) = (1_000_000, 100_000);
const PG_OPS: (u32, u32) = (50_000, 5_000);
const PG_CACHE_OPS: (u32, u32) = (200_000, 20_000);
/// The servers' own tools: `redis-benchmark -n` with 1 and with 64 connections, `pgbench -T`.
const PEERS: (peers::Sizes, peers::Sizes) = (
    peers::Sizes {
        redis_requests: (100_000, 300_000),
        pgbench_secs: 10,
    },
    peers::Sizes {
        redis_requests: (10_000, 30_000),
        pgbench_secs: 2,
    },
);
/// The Python original's Redis provider: checks per measurement (it manages a few thousand per
/// second) and concurrent workers (as psm's concurrent tasks).
const PYTHON_REDIS_SCRIPT: &str = "xtask/bench/python_redis.py";
const PYTHON_REDIS_CHECKS: u32 = 20_000;
const PYTHON_REDIS_WORKERS: u32 = 64;

/// wrk on the HTTP API: seconds per round and rounds (the quick run's second).
const HTTP_SECS: (u32, u32) = (10, 3);
const HTTP_ROUNDS: (u32, u32) = (3, 1);

/// Entry point of `cargo xtask bench`.
pub(crate) fn main(flags: BenchFlags) -> Result<()> {
    if flags.report_only {
        let (md_path, json_path) = (
            Path::new("docs/benchmarks.md"),
            Path::new("docs/benchmarks.json"),
        );
        let text = fs::read_to_string(json_path)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", json_path.display())))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::new(format!("{} is not JSON: {e}", json_path.display())))?;
        fs::write(md_path, report::render(&raw, None, "benchmarks.json"))?;
        println!("{}", report::summary(&raw));
        println!("wrote {} from {}", md_path.display(), json_path.display());
        return Ok(());
    }
    if flags.http_only {
        let servers = peers::servers()?;
        let mut commands = Vec::new();
        let http = http::run_all(&servers.redis, HTTP_SECS.0, HTTP_ROUNDS.0, &mut commands)?;
        println!("{:#}", json!({"http": http, "commands": commands}));
        return Ok(());
    }
    let sessions = if flags.quick {
        QUICK_SESSIONS
    } else {
        SESSIONS
    };
    let with_python = !flags.quick && !flags.no_python;
    let with_criterion = !flags.quick && !flags.no_criterion;
    let total = 4 + usize::from(with_python) + usize::from(with_criterion);
    let pick = |(full, quick): (u32, u32)| if flags.quick { quick } else { full };
    let peer_sizes = if flags.quick { PEERS.1 } else { PEERS.0 };
    // Servers and tools are found first, so a missing one fails before the long run.
    let servers = peers::servers()?;
    let tools = peers::Tools::find()?;
    let mut step = 0;
    let mut commands = Vec::new();
    let load_at_start = machine::load_average();
    fs::create_dir_all(FILE_DIR)?;
    let disk = machine::disk(Path::new(FILE_DIR));
    if disk.starts_with("tmpfs") {
        eprintln!("warning: {FILE_DIR} is on a tmpfs, so the durable figures measure no disk");
    }
    let (open_sessions, opens) = if flags.quick {
        (QUICK_OPEN_SESSIONS, QUICK_OPENS)
    } else {
        (OPEN_SESSIONS, OPENS)
    };

    step += 1;
    header(
        step,
        total,
        "psm-bench (memory provider, HashMap baseline, file provider, raw fsync baseline, Redis and PostgreSQL providers beside bare clients)",
    );
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "psm-bench",
        "--bin",
        "psm-bench",
        "--",
    ])
    .args([
        "--sessions",
        &sessions.to_string(),
        "--rounds",
        &ROUNDS.to_string(),
        "--seed",
        &SEED.to_string(),
        "--file-dir",
        FILE_DIR,
        "--writers",
        &WRITERS.to_string(),
        "--durable-ops",
        &DURABLE_OPS.to_string(),
        "--open-sessions",
        &open_sessions.to_string(),
        "--opens",
        &opens.to_string(),
        "--redis-url",
        &servers.redis,
        "--postgres-url",
        &servers.postgres,
        "--remote-sessions",
        &pick(REMOTE_SESSIONS).to_string(),
        "--redis-ops",
        &pick(REDIS_OPS).to_string(),
        "--redis-hot-ops",
        &pick(REDIS_HOT_OPS).to_string(),
        "--pg-ops",
        &pick(PG_OPS).to_string(),
        "--pg-cache-ops",
        &pick(PG_CACHE_OPS).to_string(),
    ]);
    commands.push(redact(&display(&cmd), &servers));
    let psm = parse_json("psm-bench", &output(&mut cmd)?)?;

    step += 1;
    header(
        step,
        total,
        "the servers' own limits (redis-benchmark, pgbench) on the same servers",
    );
    let peers = json!({
        "redis_benchmark": peers::redis_benchmark(&tools, &servers.redis, peer_sizes, &mut commands)?,
        "pgbench": peers::pgbench(&tools, &servers.postgres, peer_sizes, &mut commands)?,
    });

    step += 1;
    header(
        step,
        total,
        "HTTP: wrk on the check endpoint (memory and Redis stores) beside an empty axum handler",
    );
    let http = http::run_all(
        &servers.redis,
        if flags.quick {
            HTTP_SECS.1
        } else {
            HTTP_SECS.0
        },
        if flags.quick {
            HTTP_ROUNDS.1
        } else {
            HTTP_ROUNDS.0
        },
        &mut commands,
    )?;

    let python = if with_python {
        step += 1;
        header(
            step,
            total,
            "Python original (permission-storage-manager 1.0.2, memory, file and Redis providers)",
        );
        let venv_python = ensure_venv(&mut commands)?;
        let mut cmd = Command::new(&venv_python);
        cmd.arg(PYTHON_SCRIPT).args([
            "--sessions",
            &sessions.to_string(),
            "--rounds",
            &ROUNDS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--file-dir",
            FILE_DIR,
            "--file-stores",
            &PYTHON_FILE_STORES.to_string(),
            "--file-writers",
            &WRITERS.to_string(),
            "--file-checks",
            &PYTHON_FILE_CHECKS.to_string(),
        ]);
        commands.push(display(&cmd));
        let python = parse_json("python baseline", &output(&mut cmd)?)?;
        if !Path::new(PYTHON_REDIS_SCRIPT).is_file() {
            bail!("{PYTHON_REDIS_SCRIPT} is missing");
        }
        let mut cmd = Command::new(&venv_python);
        cmd.arg(PYTHON_REDIS_SCRIPT).args([
            "--url",
            &servers.redis,
            "--sessions",
            &pick(REMOTE_SESSIONS).to_string(),
            "--checks",
            &PYTHON_REDIS_CHECKS.to_string(),
            "--workers",
            &PYTHON_REDIS_WORKERS.to_string(),
            "--rounds",
            &ROUNDS.to_string(),
            "--seed",
            &SEED.to_string(),
        ]);
        commands.push(redact(&display(&cmd), &servers));
        let python_redis = parse_json("python redis baseline", &output(&mut cmd)?)?;
        Some((python, python_redis))
    } else {
        None
    };
    let (python, python_redis) = python.unzip();

    let micro = if with_criterion {
        step += 1;
        header(step, total, "criterion micro-benchmarks");
        criterion::run_all(&mut commands)?
    } else {
        Vec::new()
    };

    step += 1;
    header(step, total, "report");
    let machine = machine::collect(python.as_ref(), &load_at_start, &disk);
    let raw = json!({
        "machine": machine,
        "commands": commands,
        "psm_bench": psm,
        "peers": peers,
        "http": http,
        "python": python,
        "python_redis": python_redis,
        "criterion": micro,
    });
    let (dir, note) = if flags.quick {
        (
            "target/xtask",
            Some(
                "a `--quick` smoke run (10,000 sessions, a file store of 100,000 sessions opened, 2,000 sessions on Redis and PostgreSQL with a tenth of the checks, short redis-benchmark and pgbench runs, no Python, no criterion)",
            ),
        )
    } else {
        ("docs", None)
    };
    let dir = workspace_root().join(dir);
    fs::create_dir_all(&dir)?;
    let md_path = dir.join(if flags.quick {
        "benchmarks-quick.md"
    } else {
        "benchmarks.md"
    });
    let json_path = dir.join(if flags.quick {
        "benchmarks-quick.json"
    } else {
        "benchmarks.json"
    });
    let json_name = json_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let markdown = report::render(&raw, note, &json_name);
    fs::write(&md_path, &markdown)?;
    let pretty = serde_json::to_string_pretty(&raw).map_err(|e| Error::new(e.to_string()))?;
    fs::write(&json_path, pretty + "\n")?;
    println!("{}", report::summary(&raw));
    println!("wrote {} and {}", rel(&md_path), rel(&json_path));
    Ok(())
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    // The JSON object is the last line; anything before it is progress the tool chose to print.
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| Error::new(format!("{what} printed no JSON result: {e}")))
}

/// Creates `target/bench-venv` with the pinned Python original; returns the venv's python.
fn ensure_venv(commands: &mut Vec<String>) -> Result<std::path::PathBuf> {
    let python =
        crate::python::ensure_venv(&workspace_root().join(VENV), PYTHON_PACKAGE, commands)?;
    if !Path::new(PYTHON_SCRIPT).is_file() {
        bail!("{PYTHON_SCRIPT} is missing");
    }
    Ok(python)
}

/// A command line without the servers' passwords (the report lists every command).
fn redact(text: &str, servers: &peers::Servers) -> String {
    let text = peers::redact_command(text, &servers.redis);
    peers::redact_command(&text, &servers.postgres)
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
