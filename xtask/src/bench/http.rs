//! The HTTP part of `cargo xtask bench`: wrk (Debian's package) on loopback against the permission
//! check endpoint (`GET /v1/sessions/{id}/check?permission=read` with an admin bearer token) of the
//! psm API on the memory store and on Redis, and against an empty axum handler on the same runtime,
//! with the same wrk settings, rounds interleaved so both sides see the same machine load.
//!
//! Both servers are `psm-http-bench` (crates/psm-bench/src/bin): `psm` mode builds the server as
//! `psm serve` does. A server stops when its standard input closes.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
};

use serde_json::{Value, json};

use crate::util::{Error, Result, bail, cargo, display, output, run, target_dir, which};

/// wrk's settings: the same for every server.
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 64;

/// A running `psm-http-bench`, and what it printed once listening.
struct BenchServer {
    child: Child,
    stdin: Option<ChildStdin>,
    info: Value,
}

impl BenchServer {
    fn start(binary: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("cannot start psm-http-bench: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::new("psm-http-bench has no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let info: Value = serde_json::from_str(line.trim())
            .map_err(|e| Error::new(format!("psm-http-bench printed no JSON line: {e}")))?;
        Ok(Self { child, stdin, info })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.info["addr"].as_str().unwrap_or_default()
        )
    }

    /// Closes its stdin (it stops and cleans up) and waits.
    fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("psm-http-bench exited with {status}");
        }
        Ok(())
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Seconds from wrk's latency notation (`312.00us`, `1.23ms`, `2.00s`).
fn seconds(text: &str) -> Option<f64> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| text.split_at(at))?;
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Some(n * scale)
}

/// Requests per second, p50 and p99 (seconds) and non-2xx responses, from wrk's `--latency` output.
fn parse_wrk(text: &str) -> Result<Value> {
    let mut rps = None;
    let (mut p50, mut p99, mut errors) = (None, None, 0u64);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => rps = n.parse::<f64>().ok(),
            ["50%", t] => p50 = seconds(t),
            ["99%", t] => p99 = seconds(t),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", ..] => errors += 1,
            _ => {}
        }
    }
    let rps = rps.ok_or_else(|| Error::new("wrk printed no Requests/sec line"))?;
    Ok(json!({"rps": rps, "p50_s": p50, "p99_s": p99, "errors": errors}))
}

fn wrk(secs: u32, url: &str, token: Option<&str>, commands: &mut Vec<String>) -> Result<Value> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    cmd.arg(url);
    let shown = display(&cmd).replace(token.unwrap_or("\u{0}"), "<admin token>");
    if !commands.contains(&shown) {
        commands.push(shown);
    }
    parse_wrk(&output(&mut cmd)?)
}

/// The best round (by rate) of each side.
fn best(rounds: &[Value]) -> Value {
    rounds
        .iter()
        .max_by(|a, b| {
            a["rps"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["rps"].as_f64().unwrap_or(0.0))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// Runs the part: `rounds` interleaved rounds of `secs` seconds per server, on the memory store and
/// on `redis` (a server URL without psm options).
pub(crate) fn run_all(
    redis: &str,
    secs: u32,
    rounds: u32,
    commands: &mut Vec<String>,
) -> Result<Value> {
    if which("wrk").is_none() {
        bail!("wrk is not installed: `apt-get install wrk` (Debian's package)");
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "psm-bench",
        "--bin",
        "psm-http-bench",
    ]);
    commands.push(display(&build));
    run(&mut build)?;
    let binary = target_dir().join("release/psm-http-bench");

    let empty = BenchServer::start(&binary, &["empty", "--listen", "127.0.0.1:0"])?;
    let prefix = format!("psmbench_http_{}:", std::process::id());
    let sep = if redis.contains('?') { '&' } else { '?' };
    let redis_url = format!("{redis}{sep}key_prefix={prefix}");
    let mut out = json!({
        "wrk": {"threads": THREADS, "connections": CONNECTIONS, "seconds": secs, "rounds": rounds},
    });
    let mut empty_rounds = Vec::new();
    for (name, store) in [("memory", "memory://"), ("redis", redis_url.as_str())] {
        let psm = BenchServer::start(
            &binary,
            &[
                "psm",
                "--store",
                store,
                "--listen",
                "127.0.0.1:0",
                "--sessions",
                "1000",
            ],
        )?;
        let token = psm.info["token"].as_str().unwrap_or_default().to_owned();
        let session = psm.info["session"].as_str().unwrap_or_default().to_owned();
        let check = psm.url(&format!("/v1/sessions/{session}/check?permission=read"));
        let mut psm_rounds = Vec::new();
        for _ in 0..rounds {
            empty_rounds.push(wrk(secs, &empty.url("/empty"), None, commands)?);
            psm_rounds.push(wrk(secs, &check, Some(&token), commands)?);
        }
        psm.stop()?;
        out[name] = json!({"best": best(&psm_rounds), "rounds": psm_rounds});
    }
    empty.stop()?;
    out["empty"] = json!({"best": best(&empty_rounds), "rounds": empty_rounds});
    let shown: Vec<String> = commands
        .iter()
        .map(|c| c.replace(&redis_url, "<redis url>?key_prefix=<fresh>"))
        .collect();
    *commands = shown;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 5s test @ http://127.0.0.1:1/empty\n  2 threads and 64 connections\n  Latency Distribution\n     50%  418.00us\n     75%  600.00us\n     90%    1.00ms\n     99%    7.75ms\n  478804 requests in 5.00s, 35.16MB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  95760.98\nTransfer/sec:      7.03MB\n";
        let v = parse_wrk(text).unwrap();
        assert_eq!(v["rps"], 95760.98);
        assert!((v["p50_s"].as_f64().unwrap() - 418e-6).abs() < 1e-12);
        assert!((v["p99_s"].as_f64().unwrap() - 7.75e-3).abs() < 1e-12);
        assert_eq!(v["errors"], 3);
        assert!(parse_wrk("nothing").is_err());
        assert_eq!(seconds("2.00s"), Some(2.0));
        assert_eq!(seconds("abc"), None);
    }
}
