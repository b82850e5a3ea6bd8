//! The Redis provider's part of the report: psm through the manager beside a bare `fred` pool,
//! `redis-benchmark` and the Python original's Redis provider, all on the same server in the same
//! run, and hot checks with client-side caching.

use serde_json::Value;

use super::{dash, int, line, quotient, rate, ratio, thousands, verdict};

/// The targets for the Redis provider.
const VS_BARE: f64 = 0.85;
const VS_PYTHON_SEQUENTIAL: f64 = 3.0;
const VS_PYTHON_CONCURRENT: f64 = 10.0;
const HOT_CHECKS_PER_SECOND: f64 = 1_000_000.0;

/// The `## Redis provider` section; nothing when the run has no Redis figures.
pub(super) fn sections(w: &mut String, raw: &Value) {
    let r = &raw["psm_bench"]["redis"];
    if !r.is_object() {
        return;
    }
    let rb = &raw["peers"]["redis_benchmark"];
    let py = &raw["python_redis"];
    let tasks = int(&r["concurrency"]);
    line(w, "## Redis provider");
    line(w, "");
    line(
        w,
        &format!(
            "psm's Redis provider (`psm-redis`, its defaults) through the manager, `PermissionStorageManager::builder().url(\"{}?key_prefix=<fresh prefix>\")`, against a bare `fred` pool of {} clients (psm-redis's default pool size) sending exactly psm's command, `HMGET <session hash> <permission> \" e\"`, to the very hashes psm wrote (each holding its session's {} permissions and expiry, ttl one hour), on the same server ({}) and the same Tokio runtimes, in the same rounds: sequential calls on a current-thread runtime (as `redis-benchmark -c 1` is one thread), concurrent ones on a two-worker runtime, each runtime with its own manager and pool on the same data.",
            r["url"].as_str().unwrap_or("—"),
            int(&r["bare_pool"]),
            int(&raw["psm_bench"]["remote_workload"]["permissions_per_session"]),
            r["server"].as_str().unwrap_or("version unknown"),
        ),
    );
    line(
        w,
        &format!(
            "Both sides hold the {} sessions of the same workload (psm's stored through `store_permissions` from {tasks} tasks, at {}/s); psm answers a check with one `HMGET` of the session's hash (see `psm-redis`'s key layout).",
            int(&r["sessions"]),
            rate(&r["psm_store_concurrent"]),
        ),
    );
    line(
        w,
        &format!(
            "Each measurement is {} `check_permission` calls cycling over the access sequence (half of them for a permission the session holds): *sequential* is one task awaiting each call; *{tasks} concurrent tasks* splits the calls among {tasks} tasks, each awaiting its own. Within each measurement psm and the bare pool alternate in tenths of the calls (psm first in every other tenth), so both see the same machine load; best of {} rounds. Every answer is checked; everything is written under a fresh key prefix removed with `SCAN` + `UNLINK` afterwards.",
            int(&r["ops"]),
            int(&r["rounds"]),
        ),
    );
    line(
        w,
        &format!(
            "`redis-benchmark` runs `SISMEMBER` on one set of {} members it prepared with `SADD` (a hit every time, no pipelining), with 1 and with 64 connections ({} and {} requests), right after psm-bench; the set is deleted afterwards. The Python column is the original's `RedisProvider` on the same server: see below.",
            int(&rb["set_size"]),
            int(&rb["requests_c1"]),
            int(&rb["requests_c64"]),
        ),
    );
    line(w, "");
    line(
        w,
        "| check_permission | psm (ops/s) | bare fred HMGET (ops/s) | psm / bare | redis-benchmark (req/s) | psm / redis-benchmark | Python original (ops/s) | psm / Python |",
    );
    line(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let concurrent = format!("{tasks} concurrent tasks (`-c 64`)");
    for (label, key, rb_key) in [
        ("sequential (1 task; `-c 1`)", "sequential", "c1"),
        (concurrent.as_str(), "concurrent", "c64"),
    ] {
        let (a, b) = (&r["psm"][key]["best"], &r["bare"][key]["best"]);
        let (c, d) = (&rb[rb_key], &py[key]);
        line(
            w,
            &format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} |",
                rate(a),
                rate(b),
                percent(a, b),
                rate(c),
                percent(a, c),
                rate(d),
                ratio(a, d)
            ),
        );
    }
    line(w, "");
    line(
        w,
        &format!(
            "Every round (ops/s): psm sequential {}; bare {}; psm concurrent {}; bare {}.",
            list(&r["psm"]["sequential"]["rounds"]),
            list(&r["bare"]["sequential"]["rounds"]),
            list(&r["psm"]["concurrent"]["rounds"]),
            list(&r["bare"]["concurrent"]["rounds"]),
        ),
    );
    line(w, "");

    let c = &r["cached"];
    line(w, "### Client-side caching");
    line(w, "");
    line(
        w,
        &format!(
            "A second manager on the same store with `?client_cache=true` (RESP3 tracking: psm serves checks of sessions it has read from a local cache that the server invalidates) checks the same {} sessions (the first positions of the access sequence, half true) again and again after a warm-up: {} checks per measurement, from one task on the current-thread runtime and from two tasks on the two-worker runtime, in every round.",
            int(&r["hot_sessions"]),
            int(&r["hot_ops"]),
        ),
    );
    line(w, "");
    line(
        w,
        "| hot check_permission | psm with client-side cache (ops/s) | every round |",
    );
    line(w, "|---|---:|---|");
    for (label, key) in [
        ("single task", "hot_single"),
        ("2 tasks, 2 threads", "hot_threads2"),
    ] {
        line(
            w,
            &format!(
                "| {label} | {} | {} |",
                rate(&c[key]["best"]),
                list(&c[key]["rounds"])
            ),
        );
    }
    line(w, "");

    line(w, "### Against the Python original's Redis provider");
    line(w, "");
    if !py.is_object() {
        line(w, "Not run (a `--quick` run, or `--no-python`).");
        line(w, "");
        return;
    }
    line(
        w,
        &format!(
            "`{}` with redis-py {}, `PermissionStorageManager(\"redis\", {{\"url\": …, \"key_prefix\": <fresh prefix>, \"max_connections\": {}}})` (its pool raises \"Too many connections\" past `max_connections`, whose default of 50 is below the {} workers), on the same server: {} sessions stored, then {} `check_permission` calls per measurement cycling over the access sequence, from one task and from {} worker coroutines gathered on one asyncio loop; best of {} rounds, every answer checked, {} errors. Every round (ops/s): sequential {}; concurrent {}. See `xtask/bench/python_redis.py`.",
            py["package"].as_str().unwrap_or("—"),
            py["redis_py"].as_str().unwrap_or("—"),
            int(&py["max_connections"]),
            int(&py["workers"]),
            int(&py["sessions"]),
            int(&py["checks"]),
            int(&py["workers"]),
            int(&py["rounds"]),
            int(&py["errors"]),
            list(&py["sequential_rounds"]),
            list(&py["concurrent_rounds"]),
        ),
    );
    line(w, "");
}

/// The Redis provider's target rows: `(target, measured, verdict)`.
pub(super) fn targets(raw: &Value) -> Vec<(String, String, &'static str)> {
    let r = &raw["psm_bench"]["redis"];
    let py = &raw["python_redis"];
    let tasks = r["concurrency"].as_u64().unwrap_or(64);
    let mut rows = Vec::new();
    for (key, label) in [
        ("sequential", "sequential".to_owned()),
        ("concurrent", format!("{tasks} concurrent tasks")),
    ] {
        let (a, b) = (&r["psm"][key]["best"], &r["bare"][key]["best"]);
        let q = quotient(a, b);
        rows.push((
            format!(
                "Redis check_permission ≥ {:.0}% of a bare fred client sending the same HMGET ({label})",
                VS_BARE * 100.0
            ),
            q.map_or_else(dash, |q| {
                format!("{:.0}% ({} vs {}/s)", q * 100.0, rate(a), rate(b))
            }),
            verdict(q.map(|q| q >= VS_BARE)),
        ));
    }
    // The Python figures only exist when its run had no error and every answer right.
    let clean = py["errors"].as_u64() == Some(0);
    for (key, label, factor) in [
        ("sequential", "sequential".to_owned(), VS_PYTHON_SEQUENTIAL),
        (
            "concurrent",
            format!("{tasks} concurrent tasks, no errors"),
            VS_PYTHON_CONCURRENT,
        ),
    ] {
        let q = quotient(&r["psm"][key]["best"], &py[key]).filter(|_| clean);
        rows.push((
            format!("Redis check_permission ≥ {factor:.0}× the Python original's Redis provider ({label})"),
            q.map_or_else(dash, |q| format!("{q:.1}×")),
            verdict(q.map(|q| q >= factor)),
        ));
    }
    for (key, label) in [("hot_single", "single task"), ("hot_threads2", "2 threads")] {
        let h = r["cached"][key]["best"].as_f64();
        rows.push((
            format!(
                "Redis hot checks with client-side caching ≥ {}/s ({label})",
                thousands(HOT_CHECKS_PER_SECOND)
            ),
            h.map_or_else(dash, |h| format!("{}/s", thousands(h))),
            verdict(h.map(|h| h >= HOT_CHECKS_PER_SECOND)),
        ));
    }
    rows
}

/// `a / b` as a percentage, `—` when either is missing.
fn percent(a: &Value, b: &Value) -> String {
    quotient(a, b).map_or_else(dash, |q| format!("{:.0}%", q * 100.0))
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

    fn raw(python: Value) -> Value {
        json!({
            "psm_bench": {
                "remote_workload": {"permissions_per_session": 5},
                "redis": {
                    "url": "redis://127.0.0.1:6379", "sessions": 20_000, "ops": 100_000,
                    "hot_ops": 1_000_000, "hot_sessions": 8, "concurrency": 64, "bare_pool": 4,
                    "rounds": 3, "psm_store_concurrent": 30_000.0,
                    "psm": {"sequential": {"best": 18_000.0, "rounds": [17_000.0, 18_000.0]},
                            "concurrent": {"best": 90_000.0, "rounds": [90_000.0]}},
                    "bare": {"sequential": {"best": 20_000.0, "rounds": [20_000.0]},
                             "concurrent": {"best": 150_000.0, "rounds": [150_000.0]}},
                    "cached": {"hot_single": {"best": 2.5e6, "rounds": [2.5e6]},
                               "hot_threads2": {"best": 0.9e6, "rounds": [0.9e6]}},
                },
            },
            "peers": {"redis_benchmark": {"c1": 40_000.0, "c64": 180_000.0, "set_size": 5,
                                          "requests_c1": 100_000, "requests_c64": 300_000}},
            "python_redis": python,
        })
    }

    #[test]
    fn judges_the_redis_targets() {
        let python = json!({"sequential": 5_000.0, "concurrent": 10_000.0, "errors": 0,
                            "package": "permission-storage-manager 1.0.2", "redis_py": "8.1.0",
                            "max_connections": 80, "workers": 64, "sessions": 20_000,
                            "checks": 20_000, "rounds": 3,
                            "sequential_rounds": [5_000.0], "concurrent_rounds": [10_000.0]});
        let rows = targets(&raw(python.clone()));
        let got: Vec<_> = rows.iter().map(|(_, m, v)| (m.as_str(), *v)).collect();
        assert_eq!(
            got,
            [
                ("90% (18,000 vs 20,000/s)", "met"),
                ("60% (90,000 vs 150,000/s)", "not met"),
                ("3.6×", "met"),
                ("9.0×", "not met"),
                ("2,500,000/s", "met"),
                ("900,000/s", "not met"),
            ]
        );
        let mut md = String::new();
        sections(&mut md, &raw(python));
        assert!(md.contains(
            "| sequential (1 task; `-c 1`) | 18,000 | 20,000 | 90% | 40,000 | 45% | 5,000 | 3.60× |"
        ));
        assert!(md.contains("| 64 concurrent tasks (`-c 64`) | 90,000 | 150,000 | 60% | 180,000 | 50% | 10,000 | 9.00× |"));
        assert!(md.contains("| single task | 2,500,000 | 2,500,000 |"));

        // No Python run, or one with errors: those targets are not measured.
        let quick = targets(&raw(Value::Null));
        assert_eq!((quick[2].2, quick[3].2), ("not measured", "not measured"));
        let failed = targets(&raw(
            json!({"sequential": 5.0, "concurrent": 5.0, "errors": 3}),
        ));
        assert_eq!(failed[3].2, "not measured");
        let mut md = String::new();
        sections(&mut md, &raw(Value::Null));
        assert!(md.ends_with("Not run (a `--quick` run, or `--no-python`).\n\n"));
    }

    #[test]
    fn a_run_without_redis_figures_has_no_section_and_unmeasured_targets() {
        let mut md = String::new();
        sections(&mut md, &json!({"psm_bench": {}}));
        assert!(md.is_empty());
        let rows = targets(&json!({}));
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|(_, _, v)| *v == "not measured"));
    }
}
