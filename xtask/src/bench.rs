//! `cargo xtask bench`: the load driver (`psm-bench`: the memory and file providers with their
//! baselines), the Python original on the same workload (memory and file providers), and the
//! criterion micro-benchmarks, in one run; writes `docs/benchmarks.md` and `docs/benchmarks.json`.

mod criterion;
mod machine;
mod report;

use std::{fs, path::Path, process::Command};

use serde_json::{Value, json};

use crate::{
    flags::BenchFlags,
    util::{Error, Result, bail, cargo, display, header, output, run, workspace_root},
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

/// Entry point of `cargo xtask bench`.
pub(crate) fn main(flags: BenchFlags) -> Result<()> {
    let sessions = if flags.quick {
        QUICK_SESSIONS
    } else {
        SESSIONS
    };
    let with_python = !flags.quick && !flags.no_python;
    let with_criterion = !flags.quick && !flags.no_criterion;
    let total = 2 + usize::from(with_python) + usize::from(with_criterion);
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
        "psm-bench (memory provider, HashMap baseline, file provider, raw fsync baseline)",
    );
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "psm-bench", "--"])
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
        ]);
    commands.push(display(&cmd));
    let psm = parse_json("psm-bench", &output(&mut cmd)?)?;

    let python = if with_python {
        step += 1;
        header(
            step,
            total,
            "Python original (permission-storage-manager 1.0.2, memory and file providers)",
        );
        let python = ensure_venv(&mut commands)?;
        let mut cmd = Command::new(&python);
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
        Some(parse_json("python baseline", &output(&mut cmd)?)?)
    } else {
        None
    };

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
        "python": python,
        "criterion": micro,
    });
    let (dir, note) = if flags.quick {
        (
            "target/xtask",
            Some(
                "a `--quick` smoke run (10,000 sessions, a file store of 100,000 sessions opened, no Python, no criterion)",
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

/// Creates `target/bench-venv` and installs the pinned package once; returns the venv's python.
fn ensure_venv(commands: &mut Vec<String>) -> Result<std::path::PathBuf> {
    let venv = workspace_root().join(VENV);
    let python = venv.join("bin/python");
    if !python.is_file() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        commands.push(display(&cmd));
        run(&mut cmd)
            .map_err(|e| Error::new(format!("{e} (is python3 with the venv module installed?)")))?;
    }
    let wanted = PYTHON_PACKAGE.split_once("==").map_or("", |(_, v)| v);
    let installed = crate::util::quiet_output(Command::new(&python).args([
        "-c",
        "import importlib.metadata as m; print(m.version('permission-storage-manager'))",
    ]));
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        PYTHON_PACKAGE,
    ]);
    commands.push(display(&cmd));
    if installed.as_deref() != Some(wanted) {
        run(&mut cmd).map_err(|e| Error::new(format!("{e} (is PyPI reachable?)")))?;
    } else {
        println!("{PYTHON_PACKAGE} is already installed in {VENV}");
    }
    if !Path::new(PYTHON_SCRIPT).is_file() {
        bail!("{PYTHON_SCRIPT} is missing");
    }
    Ok(python)
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
