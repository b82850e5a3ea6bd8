//! The `psm` binary as a script sees it: exit codes, settings precedence, and `psm serve`'s
//! graceful shutdown on SIGTERM.
// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole test crate opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod serve;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

/// `psm args...` with the data directory `dir` and no PSM_* variables from the caller's
/// environment; `stdin` is written to its standard input.
pub(crate) fn psm(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_psm"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PSM_") {
            command.env_remove(key);
        }
    }
    command
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("PSM_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

/// The exit code, standard output and standard error of `output`.
pub(crate) fn parts(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
