//! The file provider's part of the report: reads against the memory provider, durable writes
//! against the raw disk, opening a large store, and the Python original's file provider.

use serde_json::Value;

use super::{dash, int, line, quotient, rate, ratio, thousands, verdict};

/// The targets for the file provider.
const READS_VS_MEMORY: f64 = 0.70;
const ONE_WRITER_VS_RAW: f64 = 0.80;
const CONCURRENT_STORES_PER_SECOND: f64 = 20_000.0;
const OPEN_SESSIONS: u64 = 1_000_000;
const OPEN_SECONDS: f64 = 3.0;
const STORES_VS_PYTHON: f64 = 50.0;
const CHECKS_VS_PYTHON: f64 = 100.0;

/// The read operations measured on the file store, in table order: (JSON key, label).
const READS: [(&str, &str); 4] = [
    ("check", "check_permission"),
    ("check5", "check_permissions (5)"),
    ("get", "get_permissions"),
    ("list_user", "list_sessions(user)"),
];

/// The memory provider's reads (single task, 2 threads) to compare the file store's with: the
/// ones measured beside them in the same round when the run has them, else the memory section's.
fn memory_beside(raw: &Value) -> (&Value, &Value) {
    let f = &raw["psm_bench"]["file"];
    if f["memory_single"].is_object() && f["memory_threads2"].is_object() {
        (&f["memory_single"], &f["memory_threads2"])
    } else {
        let mem = &raw["psm_bench"]["psm"];
        (&mem["single"], &mem["threads2"])
    }
}

/// The `## File provider` section; nothing when the run has no file figures.
pub(super) fn sections(w: &mut String, raw: &Value) {
    let f = &raw["psm_bench"]["file"];
    if !f.is_object() {
        return;
    }
    let mem = memory_beside(raw);
    let py = &raw["python"]["file"];
    let sessions = int(&raw["psm_bench"]["workload"]["sessions"]);
    let writers = int(&f["writers"]);
    let disk = raw["machine"]["disk"].as_str().unwrap_or("the same disk");
    line(w, "## File provider");
    line(w, "");
    line(
        w,
        &format!(
            "psm's durable embedded provider (`psm-file`, default settings: backups on, journal compaction from 16 MiB) through the manager, `PermissionStorageManager::from_store(FileStorage::open(FileConfig::new(dir))?.sessions())`, with every store in a fresh directory under `{}` ({disk}). Every write is acknowledged only after its journal record is fdatasynced; concurrent writes share fdatasyncs (group commit).",
            f["dir"].as_str().unwrap_or("—")
        ),
    );
    line(
        w,
        &format!(
            "Each round, right after the memory provider's, fills a fresh store with the {sessions} sessions of the workload from {writers} concurrent Tokio tasks (each awaiting its own `store_permissions` calls, on a two-worker runtime), fills a memory provider the same way on the same runtimes, times each read on the memory provider and then on the file store (so both sides of every file / memory ratio run under the same load; these memory figures are the ones in the table below), then closes the store, reopens it and checks every session's answer."
        ),
    );
    line(w, "");

    line(w, "### Reads, served from memory");
    line(w, "");
    line(
        w,
        "| operation | file, single task (ops/s) | memory, single task (ops/s) | file / memory | file, 2 threads (ops/s) | memory, 2 threads (ops/s) | file / memory |",
    );
    line(w, "|---|---:|---:|---:|---:|---:|---:|");
    for (key, label) in READS {
        let (a, b) = (&f["single"][key], &mem.0[key]);
        let (c, d) = (&f["threads2"][key], &mem.1[key]);
        line(
            w,
            &format!(
                "| {label} | {} | {} | {} | {} | {} | {} |",
                rate(a),
                rate(b),
                percent(a, b),
                rate(c),
                rate(d),
                percent(c, d)
            ),
        );
    }
    line(w, "");
    line(
        w,
        &format!(
            "Reopening the filled store of {sessions} sessions took {} (best of the rounds).",
            secs(&f["reopen_secs"])
        ),
    );
    line(w, "");

    let d = &f["durable_single"];
    line(w, "### Durable writes");
    line(w, "");
    line(
        w,
        &format!(
            "The raw baseline appends {}-byte records to a new file in a sibling directory, each followed by `File::sync_data` (fdatasync): the disk's rate for one durable write at a time. Within each round the one-writer runs of psm and of the raw loop alternate in tenths (psm first in every other tenth), so both see the same machine load. psm's journal took {} bytes per `store_permissions`.",
            int(&d["raw_record_bytes"]),
            one_decimal(&d["psm_record_bytes"]),
        ),
    );
    line(w, "");
    line(
        w,
        "| durable store_permissions | psm (ops/s) | raw append + fdatasync (ops/s) | psm / raw |",
    );
    line(w, "|---|---:|---:|---:|");
    line(
        w,
        &format!(
            "| one task awaiting each call ({} per round) | {} | {} | {} |",
            int(&d["ops"]),
            rate(&d["psm"]),
            rate(&d["raw"]),
            percent(&d["psm"], &d["raw"])
        ),
    );
    line(
        w,
        &format!(
            "| {writers} concurrent tasks ({sessions} per round) | {} | {} | {} |",
            rate(&f["store_concurrent"]),
            rate(&d["raw"]),
            ratio(&f["store_concurrent"], &d["raw"])
        ),
    );
    line(w, "");
    line(
        w,
        &format!(
            "Every round, one writer: psm {}; raw {} (ops/s); psm / raw {}.",
            list(&d["psm_rounds"]),
            list(&d["raw_rounds"]),
            round_ratios(&d["psm_rounds"], &d["raw_rounds"])
        ),
    );
    line(w, "");

    let o = &f["open"];
    line(w, "### Opening a large store");
    line(w, "");
    line(
        w,
        &format!(
            "A store of {} sessions is built once through the manager by {} concurrent writers (ttl one day), closed, then opened with `FileStorage::open` {} times, which reads the snapshot and journal and rebuilds the in-memory index. After each open the session count is compared and 1,000 sessions are spot-checked. The page cache is warm (the files were just written), as on a service restart.",
            int(&o["sessions"]),
            int(&o["build_writers"]),
            o["open_secs"].as_array().map_or(0, Vec::len),
        ),
    );
    line(w, "");
    line(
        w,
        "| sessions | open (best) | every open | data files | built in | build rate (stores/s) |",
    );
    line(w, "|---:|---:|---|---:|---:|---:|");
    line(
        w,
        &format!(
            "| {} | {} | {} | {} | {} | {} |",
            int(&o["sessions"]),
            secs(&o["best_open_secs"]),
            o["open_secs"].as_array().map_or_else(dash, |v| v
                .iter()
                .map(secs)
                .collect::<Vec<_>>()
                .join(", ")),
            mib(&o["disk_bytes"]),
            secs(&o["build_secs"]),
            rate(&o["build_rate"]),
        ),
    );
    line(w, "");

    line(w, "### Against the Python original's file provider");
    line(w, "");
    if !py.is_object() {
        line(w, "Not run (a `--quick` run, or `--no-python`).");
        line(w, "");
        return;
    }
    line(
        w,
        &format!(
            "The original's `FileProvider` (one JSON file per session and per user index, each written to a temporary file, fsynced and renamed), its defaults with `storage_dir` under `{}`: {} sessions stored per round by {} concurrent writers (`asyncio.gather` over batches), then {} single-task `check_permission` calls cycling over them; best of the rounds. psm's figures are the ones above ({sessions} stores and checks per round).",
            py["storage_dir"].as_str().unwrap_or("—"),
            int(&py["stores"]),
            int(&py["writers"]),
            int(&py["checks"]),
        ),
    );
    line(w, "");
    line(
        w,
        "| operation | psm file (ops/s) | Python file (ops/s) | psm / Python |",
    );
    line(w, "|---|---:|---:|---:|");
    line(
        w,
        &format!(
            "| durable store_permissions, {writers} concurrent writers | {} | {} | {} |",
            rate(&f["store_concurrent"]),
            rate(&py["store_concurrent"]),
            ratio(&f["store_concurrent"], &py["store_concurrent"])
        ),
    );
    line(
        w,
        &format!(
            "| check_permission, single task | {} | {} | {} |",
            rate(&f["single"]["check"]),
            rate(&py["check"]),
            ratio(&f["single"]["check"], &py["check"])
        ),
    );
    line(w, "");
}

/// The file provider's target rows: `(target, measured, verdict)`.
pub(super) fn targets(raw: &Value) -> Vec<(String, String, &'static str)> {
    let f = &raw["psm_bench"]["file"];
    let mem = memory_beside(raw);
    let py = &raw["python"]["file"];
    let mut rows = Vec::new();
    for (key, op) in [("check", "check_permission"), ("get", "get_permissions")] {
        for (mode, label) in [("single", "single task"), ("threads2", "2 threads")] {
            let paired = if mode == "single" { mem.0 } else { mem.1 };
            let r = quotient(&f[mode][key], &paired[key]);
            rows.push((
                format!(
                    "file {op} ≥ {:.0}% of the memory provider ({label})",
                    READS_VS_MEMORY * 100.0
                ),
                r.map_or_else(dash, pct),
                verdict(r.map(|r| r >= READS_VS_MEMORY)),
            ));
        }
    }
    let d = &f["durable_single"];
    let r = quotient(&d["psm"], &d["raw"]);
    rows.push((
        format!(
            "durable store_permissions, one writer ≥ {:.0}% of raw append + fdatasync",
            ONE_WRITER_VS_RAW * 100.0
        ),
        r.map_or_else(dash, |r| {
            format!("{} ({} vs {}/s)", pct(r), rate(&d["psm"]), rate(&d["raw"]))
        }),
        verdict(r.map(|r| r >= ONE_WRITER_VS_RAW)),
    ));
    let c = f["store_concurrent"].as_f64();
    rows.push((
        format!(
            "durable store_permissions, {} concurrent writers ≥ {}/s",
            int(&f["writers"]),
            thousands(CONCURRENT_STORES_PER_SECOND)
        ),
        c.map_or_else(dash, |c| format!("{}/s", thousands(c))),
        verdict(c.map(|c| c >= CONCURRENT_STORES_PER_SECOND)),
    ));
    let o = &f["open"];
    let best = o["best_open_secs"].as_f64();
    let full = o["sessions"].as_u64() == Some(OPEN_SESSIONS);
    rows.push((
        format!(
            "open a store of {} sessions in < {OPEN_SECONDS} s",
            thousands(OPEN_SESSIONS as f64)
        ),
        match (best, full) {
            (Some(b), true) => format!("{b:.2} s"),
            (Some(b), false) => format!("{b:.2} s for {} sessions only", int(&o["sessions"])),
            (None, _) => dash(),
        },
        // A smaller store (the quick run) says nothing about the target.
        verdict(best.filter(|_| full).map(|b| b < OPEN_SECONDS)),
    ));
    let r = quotient(&f["store_concurrent"], &py["store_concurrent"]);
    rows.push((
        format!(
            "durable stores ≥ {STORES_VS_PYTHON}× the Python original's file provider ({} writers)",
            int(&f["writers"])
        ),
        r.map_or_else(dash, |r| format!("{r:.0}×")),
        verdict(r.map(|r| r >= STORES_VS_PYTHON)),
    ));
    let r = quotient(&f["single"]["check"], &py["check"]);
    rows.push((
        format!(
            "check_permission ≥ {CHECKS_VS_PYTHON}× the Python original's file provider (single task)"
        ),
        r.map_or_else(dash, |r| format!("{r:.0}×")),
        verdict(r.map(|r| r >= CHECKS_VS_PYTHON)),
    ));
    rows
}

/// `a / b` as a percentage, `—` when either is missing.
fn percent(a: &Value, b: &Value) -> String {
    quotient(a, b).map_or_else(dash, pct)
}

fn pct(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

fn secs(v: &Value) -> String {
    v.as_f64().map_or_else(dash, |s| format!("{s:.2} s"))
}

fn one_decimal(v: &Value) -> String {
    v.as_f64().map_or_else(dash, |x| format!("{x:.1}"))
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or_else(dash, |b| format!("{:.0} MiB", b / 1024.0 / 1024.0))
}

/// Each round's `a / b` as percentages: `70%, 85%`.
fn round_ratios(a: &Value, b: &Value) -> String {
    match (a.as_array(), b.as_array()) {
        (Some(a), Some(b)) if !a.is_empty() => a
            .iter()
            .zip(b)
            .map(|(a, b)| percent(a, b))
            .collect::<Vec<_>>()
            .join(", "),
        _ => dash(),
    }
}

/// `[1.0, 2.0]` → `1, 2` (rates, rounded).
fn list(v: &Value) -> String {
    v.as_array().map_or_else(dash, |items| {
        items.iter().map(rate).collect::<Vec<_>>().join(", ")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(open_sessions: u64, python: Value) -> Value {
        json!({
            "machine": {"disk": "ext4 on /dev/vda, mounted at /"},
            "psm_bench": {
                "workload": {"sessions": 100_000},
                "psm": {"single": {"check": 4.0e6, "get": 2.0e6},
                        "threads2": {"check": 8.0e6, "get": 4.0e6}},
                "file": {
                    "dir": "target/bench-file", "writers": 64,
                    "store_concurrent": 1.0e5,
                    "single": {"check": 3.0e6, "get": 1.0e6},
                    "threads2": {"check": 6.0e6, "get": 3.0e6},
                    "reopen_secs": 0.2,
                    "durable_single": {"ops": 2000, "psm": 900.0, "raw": 1000.0,
                                       "psm_rounds": [900.0], "raw_rounds": [1000.0],
                                       "raw_record_bytes": 144, "psm_record_bytes": 141.0},
                    "open": {"sessions": open_sessions, "build_writers": 256, "build_secs": 10.0,
                             "build_rate": 1.0e5, "open_secs": [2.5, 2.0],
                             "best_open_secs": 2.0, "disk_bytes": 2.0e8},
                },
            },
            "python": python,
        })
    }

    #[test]
    fn judges_the_file_targets() {
        let python = json!({"file": {"store_concurrent": 1000.0, "check": 10_000.0,
                                     "stores": 2000, "writers": 64, "checks": 20_000,
                                     "storage_dir": "target/bench-file"}});
        let rows = targets(&raw(1_000_000, python.clone()));
        let verdicts: Vec<_> = rows.iter().map(|(_, _, met)| *met).collect();
        // check 75% and 75%, get 50% and 75%, one writer 90%, 100,000/s, 2.0 s, 100×, 300×.
        assert_eq!(
            verdicts,
            [
                "met", "met", "not met", "met", "met", "met", "met", "met", "met"
            ]
        );
        assert_eq!(rows[4].1, "90% (900 vs 1,000/s)");

        // A quick run: a smaller store and no Python say nothing about those targets.
        let quick_raw = raw(100_000, Value::Null);
        let quick = targets(&quick_raw);
        assert_eq!(quick[6].2, "not measured");
        assert!(quick[6].1.contains("100,000 sessions only"));
        assert_eq!(quick[7].2, "not measured");
        assert_eq!(quick[8].2, "not measured");
        let mut md = String::new();
        sections(&mut md, &quick_raw);
        assert!(md.ends_with("Not run (a `--quick` run, or `--no-python`).\n\n"));

        let mut md = String::new();
        sections(&mut md, &raw(1_000_000, python));
        assert!(md.contains("| check_permission | 3,000,000 | 4,000,000 | 75% |"));
        assert!(md.contains(
            "| durable store_permissions, 64 concurrent writers | 100,000 | 1,000 | 100× |"
        ));
        assert!(md.contains("| 1,000,000 | 2.00 s | 2.50 s, 2.00 s | 191 MiB |"));
        assert!(md.contains("psm 900; raw 1,000 (ops/s); psm / raw 90%."));
    }

    #[test]
    fn ratios_use_the_memory_reads_measured_beside_the_file_store() {
        let mut r = raw(1_000_000, Value::Null);
        r["psm_bench"]["file"]["memory_single"] = json!({"check": 3.0e6, "get": 2.0e6});
        r["psm_bench"]["file"]["memory_threads2"] = json!({"check": 12.0e6, "get": 3.0e6});
        let rows = targets(&r);
        // check 100% and 50%, get 50% and 100%.
        let firsts: Vec<_> = rows[..4].iter().map(|(_, m, v)| (m.as_str(), *v)).collect();
        assert_eq!(
            firsts,
            [
                ("100%", "met"),
                ("50%", "not met"),
                ("50%", "not met"),
                ("100%", "met")
            ]
        );
    }

    #[test]
    fn a_run_without_file_figures_has_no_file_section() {
        let mut md = String::new();
        sections(&mut md, &json!({"psm_bench": {}}));
        assert!(md.is_empty());
    }
}
