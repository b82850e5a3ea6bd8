//! The PostgreSQL provider's part of the report: psm through the manager beside a bare
//! `tokio-postgres` prepared `SELECT` and `pgbench -S`, all on the same server in the same run, and
//! the query layer's cached fetches beside the cache's own reads.

use serde_json::Value;

use super::{dash, int, line, quotient, rate, verdict};

/// The targets for the PostgreSQL provider.
const VS_BARE: f64 = 0.80;
const CACHED_FETCH_VS_GET: f64 = 0.80;

/// The `## PostgreSQL provider` section; nothing when the run has no PostgreSQL figures.
pub(super) fn sections(w: &mut String, raw: &Value) {
    let p = &raw["psm_bench"]["postgres"];
    if !p.is_object() {
        return;
    }
    let pg = &raw["peers"]["pgbench"];
    let tasks = int(&p["concurrency"]);
    line(w, "## PostgreSQL provider");
    line(w, "");
    line(
        w,
        &format!(
            "psm's PostgreSQL provider (`psm-postgres`, its defaults: a pool of {} connections) through the manager, `PermissionStorageManager::builder().url(\"{}?schema=<fresh schema>&sslmode=disable\")`, against a bare `tokio-postgres` pool (`deadpool-postgres`, the same maximum of {} connections, fast recycling, no TLS) running `SELECT $2 = ANY(permissions) FROM sessions WHERE id = $1` on the same server ({}), on a table `(id text PRIMARY KEY, permissions text[])` in a second fresh schema, prepared once per connection (`prepare_cached`). Each bare call takes a connection from the pool and returns it, as a store does. Both sides run on the same Tokio runtimes, in the same rounds: sequential calls on a current-thread runtime (as `pgbench -c 1` is one thread), concurrent ones on a two-worker runtime (as `-j 2`), each runtime with its own manager and pool on the same data.",
            int(&p["bare_pool"]),
            p["url"].as_str().unwrap_or("—"),
            int(&p["bare_pool"]),
            p["server"].as_str().unwrap_or("version unknown"),
        ),
    );
    line(
        w,
        &format!(
            "Both hold the {} sessions of the same workload (psm's stored through `store_permissions` from {tasks} tasks, at {}/s). Each measurement is {} `check_permission` calls cycling over the access sequence (half of them for a permission the session holds): *sequential* is one task awaiting each call, *{tasks} concurrent tasks* splits them among {tasks} tasks; within each measurement psm and the bare pool alternate in tenths of the calls (psm first in every other tenth), so both see the same machine load; best of {} rounds. Every answer is checked; both schemas are dropped (`DROP SCHEMA … CASCADE`) afterwards.",
            int(&p["sessions"]),
            rate(&p["psm_store_concurrent"]),
            int(&p["ops"]),
            int(&p["rounds"]),
        ),
    );
    line(
        w,
        &format!(
            "`pgbench` ran right after psm-bench: `pgbench -i` (scale 1: 100,000 rows of `pgbench_accounts`) into a fresh schema reached through `PGOPTIONS=-c search_path=…`, then `pgbench -S -M prepared` (one prepared primary-key `SELECT` per transaction) for {} s with 1 client and with 16 clients on 2 threads, without TLS; the schema is dropped afterwards.",
            int(&pg["secs"]),
        ),
    );
    line(w, "");
    line(
        w,
        "| check_permission | psm (ops/s) | bare prepared SELECT (ops/s) | psm / bare | pgbench -S (tps) | psm / pgbench |",
    );
    line(w, "|---|---:|---:|---:|---:|---:|");
    let concurrent = format!("{tasks} concurrent tasks (`-c 16 -j 2`)");
    for (label, key, pg_key) in [
        ("sequential (1 task; `-c 1`)", "sequential", "c1"),
        (concurrent.as_str(), "concurrent", "c16"),
    ] {
        let (a, b, c) = (&p["psm"][key]["best"], &p["bare"][key]["best"], &pg[pg_key]);
        line(
            w,
            &format!(
                "| {label} | {} | {} | {} | {} | {} |",
                rate(a),
                rate(b),
                percent(a, b),
                rate(c),
                percent(a, c)
            ),
        );
    }
    line(w, "");
    line(
        w,
        &format!(
            "Every round (ops/s): psm sequential {}; bare {}; psm concurrent {}; bare {}.",
            list(&p["psm"]["sequential"]["rounds"]),
            list(&p["bare"]["sequential"]["rounds"]),
            list(&p["psm"]["concurrent"]["rounds"]),
            list(&p["bare"]["concurrent"]["rounds"]),
        ),
    );
    line(w, "");

    let q = &p["query_cache"];
    line(w, "### Query layer cache");
    line(w, "");
    line(
        w,
        &format!(
            "`PostgresStorage::database().with_cache(MemoryCache, 1 h)` (`psm::memory::MemoryCache` as the `Cache` port): the same query and parameter (`{}`, one row, {} bytes cached) fetched {} times from one task on the current-thread runtime, every call a cache hit after the first, through {} (the target's figure); through the SQL-text call `Database::fetch_json_cached` (the SQL hashed and compared on every call); and with one tag (a hit reads the entry and the tag's generation: two gets). The peer of each is {}, as many times, the two alternating in tenths. Every answer is checked, and the fetch side reads the row's `id` on every call.",
            q["sql"].as_str().unwrap_or("—"),
            int(&q["value_bytes"]),
            int(&q["ops"]),
            q["api"].as_str().map_or_else(dash, |a| format!("`{a}`")),
            q["peer"]
                .as_str()
                .unwrap_or("`Cache::get` of the same entry"),
        ),
    );
    line(w, "");
    line(w, "| | ops/s | every round | fetch / get, per round |");
    line(w, "|---|---:|---|---|");
    let ratios = &p["round_ratios"];
    for (label, fetch, get, ratio) in [
        (
            "prepared handle, hit",
            &q["cached_fetch"],
            &q["cache_get"],
            &ratios["cached_fetch"],
        ),
        (
            "SQL text, hit",
            &q["sql_text"]["cached_fetch"],
            &q["sql_text"]["cache_get"],
            &ratios["cached_fetch_sql_text"],
        ),
        (
            "one tag, hit",
            &q["tagged"]["cached_fetch"],
            &q["tagged"]["cache_get"],
            &ratios["cached_fetch_tagged"],
        ),
    ] {
        fetch_rows(w, label, fetch, get, ratio, "Cache::get");
    }
    line(w, "");
    redis_cache(w, p);
}

/// A cached fetch's row and the row of the `get` it is compared with (`peer`).
fn fetch_rows(w: &mut String, label: &str, fetch: &Value, get: &Value, ratio: &Value, peer: &str) {
    line(
        w,
        &format!(
            "| {label} | {} | {} | {} |",
            rate(&fetch["best"]),
            list(&fetch["rounds"]),
            percents(ratio),
        ),
    );
    line(
        w,
        &format!(
            "| its `{peer}` | {} | {} | |",
            rate(&get["best"]),
            list(&get["rounds"])
        ),
    );
}

/// The query cache on psm-redis's `RedisCache`, when the run measured it.
fn redis_cache(w: &mut String, p: &Value) {
    let q = &p["query_cache_redis"];
    if !q.is_object() {
        return;
    }
    line(
        w,
        &format!(
            "The same query layer caching in Redis (`with_cache(RedisCache, 1 h)`, the seed's own choice of result cache; {}, keys under a fresh prefix, {} removed afterwards): the same query fetched through {} with no tag and with one, each beside {}, as many times, alternating in tenths.",
            q["server"]["server"].as_str().unwrap_or("Redis"),
            int(&q["server"]["keys_removed"]),
            q["api"].as_str().map_or_else(dash, |a| format!("`{a}`")),
            q["peer"]
                .as_str()
                .unwrap_or("`RedisCache::get` of the same entry"),
        ),
    );
    line(w, "");
    line(
        w,
        "| Redis cache | ops/s | every round | fetch / get, per round |",
    );
    line(w, "|---|---:|---|---|");
    let ratios = &p["round_ratios"];
    for (label, fetch, get, ratio) in [
        (
            "prepared handle, hit",
            &q["cached_fetch"],
            &q["cache_get"],
            &ratios["cached_fetch_redis"],
        ),
        (
            "one tag, hit",
            &q["tagged"]["cached_fetch"],
            &q["tagged"]["cache_get"],
            &ratios["cached_fetch_redis_tagged"],
        ),
    ] {
        fetch_rows(w, label, fetch, get, ratio, "RedisCache::get");
    }
    line(w, "");
}

/// `[0.6, 0.7]` as `60%, 70%`.
fn percents(v: &Value) -> String {
    v.as_array().map_or_else(dash, |rs| {
        rs.iter()
            .filter_map(Value::as_f64)
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The PostgreSQL provider's target rows: `(target, measured, verdict)`.
pub(super) fn targets(raw: &Value) -> Vec<(String, String, &'static str)> {
    let p = &raw["psm_bench"]["postgres"];
    let tasks = p["concurrency"].as_u64().unwrap_or(16);
    let mut rows = Vec::new();
    for (key, label) in [
        ("sequential", "sequential".to_owned()),
        ("concurrent", format!("{tasks} concurrent tasks")),
    ] {
        let (a, b) = (&p["psm"][key]["best"], &p["bare"][key]["best"]);
        let r = quotient(a, b);
        rows.push((
            format!(
                "PostgreSQL check_permission ≥ {:.0}% of a bare prepared SELECT ({label})",
                VS_BARE * 100.0
            ),
            r.map_or_else(dash, |r| {
                format!("{:.0}% ({} vs {}/s)", r * 100.0, rate(a), rate(b))
            }),
            verdict(r.map(|r| r >= VS_BARE)),
        ));
    }
    for (key, cache) in [
        ("query_cache", "MemoryCache"),
        ("query_cache_redis", "RedisCache"),
    ] {
        let q = &p[key];
        let (a, b) = (&q["cached_fetch"]["best"], &q["cache_get"]["best"]);
        let r = quotient(a, b);
        rows.push((
            format!(
                "query layer cached fetch ≥ {:.0}% of the Cache port's own get ({cache})",
                CACHED_FETCH_VS_GET * 100.0
            ),
            r.map_or_else(dash, |r| {
                format!("{:.0}% ({} vs {}/s)", r * 100.0, rate(a), rate(b))
            }),
            verdict(r.map(|r| r >= CACHED_FETCH_VS_GET)),
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

    #[test]
    fn judges_the_postgres_targets() {
        let raw = json!({
            "psm_bench": {"postgres": {
                "url": "postgres://postgres@127.0.0.1:5432/test", "sessions": 20_000,
                "ops": 50_000, "concurrency": 16, "bare_pool": 16, "rounds": 3,
                "psm_store_concurrent": 9_000.0,
                "psm": {"sequential": {"best": 9_000.0, "rounds": [9_000.0]},
                        "concurrent": {"best": 20_000.0, "rounds": [20_000.0]}},
                "bare": {"sequential": {"best": 10_000.0, "rounds": [10_000.0]},
                         "concurrent": {"best": 40_000.0, "rounds": [40_000.0]}},
                "query_cache": {"ops": 200_000, "sql": "SELECT 1", "value_bytes": 126,
                                "cached_fetch": {"best": 4.0e6, "rounds": [4.0e6]},
                                "cache_get": {"best": 5.0e6, "rounds": [5.0e6]}},
                "query_cache_redis": {"server": {"server": "Redis 7.0.15 (standalone)", "keys_removed": 3},
                                      "cached_fetch": {"best": 9.0e3, "rounds": [9.0e3]},
                                      "cache_get": {"best": 1.0e4, "rounds": [1.0e4]},
                                      "tagged": {"cached_fetch": {"best": 8.0e3, "rounds": [8.0e3]},
                                                 "cache_get": {"best": 1.0e4, "rounds": [1.0e4]}}},
                "round_ratios": {"cached_fetch_redis": [0.9], "cached_fetch_redis_tagged": [0.8]},
            }},
            "peers": {"pgbench": {"c1": 12_000.0, "c16": 45_000.0, "secs": 10}},
        });
        let rows = targets(&raw);
        let got: Vec<_> = rows.iter().map(|(_, m, v)| (m.as_str(), *v)).collect();
        assert_eq!(
            got,
            [
                ("90% (9,000 vs 10,000/s)", "met"),
                ("50% (20,000 vs 40,000/s)", "not met"),
                ("80% (4,000,000 vs 5,000,000/s)", "met"),
                ("90% (9,000 vs 10,000/s)", "met"),
            ]
        );
        let mut md = String::new();
        sections(&mut md, &raw);
        assert!(
            md.contains("| sequential (1 task; `-c 1`) | 9,000 | 10,000 | 90% | 12,000 | 75% |")
        );
        assert!(md.contains(
            "| 16 concurrent tasks (`-c 16 -j 2`) | 20,000 | 40,000 | 50% | 45,000 | 44% |"
        ));
        assert!(md.contains("| its `Cache::get` | 5,000,000 | 5,000,000 | |"));
        assert!(md.contains("| one tag, hit | 8,000 | 8,000 | 80% |"));
        assert!(md.contains("Redis 7.0.15 (standalone), keys under a fresh prefix, 3 removed"));
    }

    #[test]
    fn a_run_without_postgres_figures_has_no_section_and_unmeasured_targets() {
        let mut md = String::new();
        sections(&mut md, &json!({"psm_bench": {}}));
        assert!(md.is_empty());
        let rows = targets(&json!({}));
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|(_, _, v)| *v == "not measured"));
    }
}
