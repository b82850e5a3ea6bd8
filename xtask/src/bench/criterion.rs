//! Runs every criterion bench target of the workspace with short settings and keeps its summary lines.

use std::{fs, path::PathBuf};

use serde_json::{Value, json};

use crate::util::{Result, cargo, display, run_tee, workspace_root};

/// The most lines kept of a target that prints its own report instead of criterion's.
const MAX_OUTPUT_LINES: usize = 40;

/// Short settings: enough for a summary line per benchmark within the run's time budget.
const ARGS: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "2"];

/// Runs `cargo bench -p <crate> --bench <name>` for each `crates/*/benches/*.rs`.
///
/// Each target is run on its own because `cargo bench --workspace` would also hand the criterion
/// flags to the libtest harness of every library, which rejects them. A target that fails is reported
/// in the results rather than ending the whole run, so one broken micro-benchmark does not hide the rest.
pub(crate) fn run_all(commands: &mut Vec<String>) -> Result<Vec<Value>> {
    let mut results = Vec::new();
    for (package, bench) in bench_targets() {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", &package, "--bench", &bench, "--"])
            .args(ARGS);
        commands.push(display(&cmd));
        let mut parser = Parser::default();
        let outcome = run_tee(&mut cmd, |line| parser.line(line));
        let printed = !parser.found.is_empty();
        for (name, time, thrpt) in parser.found {
            results.push(json!({ "package": package, "bench": bench, "name": name, "time": time, "thrpt": thrpt }));
        }
        match outcome {
            Err(e) => {
                eprintln!("warning: {e}");
                results.push(json!({ "package": package, "bench": bench, "error": e.to_string() }));
            }
            Ok(()) if !printed && !parser.other.is_empty() => {
                let mut output = parser.other;
                output.truncate(MAX_OUTPUT_LINES);
                results.push(json!({ "package": package, "bench": bench, "output": output }));
            }
            Ok(()) => {}
        }
    }
    Ok(results)
}

/// `(package, bench target)` for every `crates/<package>/benches/<target>.rs`, sorted.
fn bench_targets() -> Vec<(String, String)> {
    let mut targets = Vec::new();
    let crates = fs::read_dir(workspace_root().join("crates"))
        .into_iter()
        .flatten()
        .flatten();
    for krate in crates {
        let benches: PathBuf = krate.path().join("benches");
        for file in fs::read_dir(&benches).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "rs")
                && let (Some(package), Some(stem)) = (krate.file_name().to_str(), path.file_stem())
            {
                targets.push((package.to_owned(), stem.to_string_lossy().into_owned()));
            }
        }
    }
    targets.sort();
    targets
}

/// Picks `name  time: [low mid high]` and `thrpt: [...]` out of criterion's report.
#[derive(Debug, Default)]
struct Parser {
    last_name: String,
    found: Vec<(String, String, Option<String>)>,
    /// Every other non-blank line, for targets with a report of their own.
    other: Vec<String>,
}

impl Parser {
    fn line(&mut self, line: &str) {
        if let Some((before, after)) = line.split_once("time:") {
            let name = before.trim();
            let name = if name.is_empty() {
                self.last_name.clone()
            } else {
                name.to_owned()
            };
            if let Some(mid) = middle_estimate(after) {
                self.found.push((name, mid, None));
            }
        } else if let Some((_, after)) = line.split_once("thrpt:") {
            if let (Some(last), Some(mid)) = (self.found.last_mut(), middle_estimate(after)) {
                last.2 = Some(mid);
            }
        } else if !line.trim().is_empty() {
            self.other.push(line.trim_end().to_owned());
            if !line.starts_with(char::is_whitespace) && !line.starts_with("Benchmarking") {
                self.last_name = line.trim().to_owned();
            }
        }
    }
}

/// `[1.0 ns 2.0 ns 3.0 ns]` → `2.0 ns`.
fn middle_estimate(bracketed: &str) -> Option<String> {
    let inner = bracketed.trim().strip_prefix('[')?.split(']').next()?;
    let words: Vec<_> = inner.split_whitespace().collect();
    (words.len() == 6).then(|| format!("{} {}", words[2], words[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_summaries() {
        let mut p = Parser::default();
        for line in [
            "check/hit               time:   [20.1 ns 20.4 ns 20.9 ns]",
            "                        thrpt:  [47.8 Melem/s 49.0 Melem/s 49.7 Melem/s]",
            "Found 3 outliers among 100 measurements (3.00%)",
            "a/very/long/benchmark/name/that/wraps",
            "                        time:   [1.0000 µs 1.1000 µs 1.2000 µs]",
        ] {
            p.line(line);
        }
        assert_eq!(
            p.found,
            [
                (
                    "check/hit".to_owned(),
                    "20.4 ns".to_owned(),
                    Some("49.0 Melem/s".to_owned())
                ),
                (
                    "a/very/long/benchmark/name/that/wraps".to_owned(),
                    "1.1000 µs".to_owned(),
                    None
                ),
            ]
        );
    }
}
