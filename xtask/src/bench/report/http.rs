//! The HTTP section: wrk on the permission check endpoint beside an empty axum handler.

use serde_json::Value;

use super::{dash, line, quotient, thousands, verdict};

/// The check endpoint on the memory store must reach this share of the empty handler's rate.
const CHECK_VS_EMPTY: f64 = 0.6;

fn latency(v: &Value) -> String {
    v.as_f64().map_or_else(dash, |s| {
        if s < 1e-3 {
            format!("{:.0} µs", s * 1e6)
        } else {
            format!("{:.2} ms", s * 1e3)
        }
    })
}

pub(super) fn sections(w: &mut String, raw: &Value) {
    let http = &raw["http"];
    if !http.is_object() {
        return;
    }
    let wrk = &http["wrk"];
    line(w, "## HTTP");
    line(w, "");
    line(
        w,
        &format!(
            "wrk {} threads, {} connections, {} s a round, best of {} rounds, on loopback, the rounds of each server interleaved with the empty handler's. The psm server is built as `psm serve` builds it (`psm_cli::serve::start_on`) and logs as `psm serve` does by default (`info`; request lines are at debug, so none is written); every request carries an admin access token, so each check verifies the token strictly (signature, claims, the user's token epoch), reads the admin's session, and then answers the check. The empty handler is `axum::Router::new().route(\"/empty\", get(|| async {{}}))` on the same Tokio runtime (one worker per core). Both servers are `psm-http-bench` (crates/psm-bench/src/bin).",
            wrk["threads"], wrk["connections"], wrk["seconds"], wrk["rounds"]
        ),
    );
    line(w, "");
    line(
        w,
        "| server | requests/s | p50 | p99 | non-2xx | / empty handler |",
    );
    line(w, "|---|---:|---:|---:|---:|---:|");
    let empty = &http["empty"]["best"];
    for (label, v) in [
        ("empty axum handler", empty),
        ("psm check endpoint, memory store", &http["memory"]["best"]),
        ("psm check endpoint, Redis store", &http["redis"]["best"]),
    ] {
        let r = quotient(&v["rps"], &empty["rps"]);
        line(
            w,
            &format!(
                "| {label} | {} | {} | {} | {} | {} |",
                v["rps"].as_f64().map_or_else(dash, thousands),
                latency(&v["p50_s"]),
                latency(&v["p99_s"]),
                v["errors"].as_u64().map_or_else(dash, |e| e.to_string()),
                r.map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
            ),
        );
    }
    line(w, "");
}

pub(super) fn targets(raw: &Value) -> Vec<(String, String, &'static str)> {
    let http = &raw["http"];
    let r = quotient(
        &http["memory"]["best"]["rps"],
        &http["empty"]["best"]["rps"],
    );
    let clean = http["memory"]["best"]["errors"].as_u64() == Some(0);
    vec![(
        format!(
            "HTTP check endpoint (memory store) ≥ {:.0}% of an empty axum handler (wrk, same settings)",
            CHECK_VS_EMPTY * 100.0
        ),
        r.map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
        verdict(r.map(|r| r >= CHECK_VS_EMPTY && clean)),
    )]
}
