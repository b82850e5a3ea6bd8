//! The `psm-soak` binary as `cargo xtask soak` runs it: a short run on the in-process providers
//! passes and prints its report, and a bad command line is refused with status 2.
//!
//! Being an integration test also makes `cargo test` build the binary, with the features the test
//! step builds the workspace with; the soak step of `cargo xtask ci` then runs it without a build
//! of its own.

use std::process::Command;

fn soak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_psm-soak"))
}

#[test]
fn a_short_run_on_the_in_process_providers_passes() {
    let dir = std::env::temp_dir().join(format!("psm-soak-it-{}", std::process::id()));
    let out = soak()
        .args([
            "--seconds",
            "2",
            "--providers",
            "memory,file",
            "--seed",
            "7",
        ])
        .arg("--file-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| memory | 1 |"), "{stdout}");
    assert!(stdout.contains("| file | 1 |"), "{stdout}");
    assert!(
        stdout.contains("psm-soak: every invariant held"),
        "{stdout}"
    );
    // The file store's directory is removed with the run.
    let left = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the run left files in {}", dir.display());
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn a_bad_command_line_is_refused() {
    for args in [
        &["--providers", "mongo"][..],
        &["--seconds", "x"],
        &["--fast"],
    ] {
        let out = soak().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
