//! Small helpers shared by the subcommands: errors, running processes, paths and ports.

use std::{
    env, fmt,
    io::{self, BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The one error type of the xtask: a message meant for the person at the terminal.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self(e.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::util::Error::new(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// The workspace root: the parent of this crate's manifest directory.
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the process too; that value wins over the one compiled in,
/// so a binary cached in a shared `CARGO_TARGET_DIR` still finds the clone it was started from.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map_or_else(|| manifest.clone(), Path::to_path_buf)
}

/// `target/xtask/` under the workspace root, where PID files, logs and private data live.
///
/// It is always under the clone's own `target/` (not `CARGO_TARGET_DIR`), so `services down` finds what
/// `services up` recorded whatever the cargo cache location is.
pub(crate) fn xtask_dir() -> Result<PathBuf> {
    let dir = workspace_root().join("target").join("xtask");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A `Command` for cargo, taken from `$CARGO` (set when run through `cargo xtask`) or the `PATH`.
pub(crate) fn cargo() -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
}

/// Renders a command the way a person would type it, for headers and error messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            out.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    // `$CARGO` is a long toolchain path; people type `cargo`. Paths under the root read relative.
    let program = cmd.get_program();
    if env::var_os("CARGO").is_some_and(|cargo| cargo == program) {
        out.push_str("cargo");
    } else {
        out.push_str(&relative(&program.to_string_lossy()));
    }
    for arg in cmd.get_args() {
        let arg = relative(&arg.to_string_lossy());
        if arg.contains('\'') && !arg.contains('"') {
            out.push_str(&format!(" \"{arg}\""));
        } else if arg.is_empty() || arg.contains(char::is_whitespace) {
            out.push_str(&format!(" '{arg}'"));
        } else {
            out.push(' ');
            out.push_str(&arg);
        }
    }
    out
}

/// `path` relative to the workspace root when it lies under it.
fn relative(path: &str) -> String {
    let root = workspace_root();
    let root = root.to_string_lossy();
    match path
        .strip_prefix(&*root)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(rest) => rest.to_owned(),
        None => path.to_owned(),
    }
}

/// The target directory cargo builds into (CI points it outside the clone).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a command with inherited output and fails if it does not exit successfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .map_err(|e| Error::new(format!("cannot run `{}`: {e}", display(cmd))))?;
    check_status(cmd, status)
}

/// Runs a command and returns its standard output; standard error goes to the terminal.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {}", display(cmd));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::new(format!("cannot run `{}`: {e}", display(cmd))))?;
    check_status(cmd, out.status)?;
    String::from_utf8(out.stdout)
        .map_err(|_| Error::new(format!("`{}` printed invalid UTF-8", display(cmd))))
}

/// Runs a command quietly and reports only whether it succeeded (for probes).
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command quietly and returns its trimmed standard output when it succeeds (for probes).
pub(crate) fn quiet_output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs a command, echoing its standard output line by line while handing each line to `on_line`.
///
/// Used for `cargo test`, whose result lines the summary counts, without hiding the live output.
pub(crate) fn run_tee(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("cannot run `{}`: {e}", display(cmd))))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            on_line(&line);
        }
    }
    let status = child.wait()?;
    check_status(cmd, status)
}

fn check_status(cmd: &Command, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{}` failed ({status})", display(cmd))
    }
}

/// Finds an executable on the `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port that was free a moment ago (the OS picks it).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `ready` until it returns true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the current user is root (initdb refuses to run as root).
pub(crate) fn is_root() -> bool {
    quiet_output(Command::new("id").arg("-u")).is_some_and(|uid| uid == "0")
}

/// Whether a process with this PID exists (`kill -0`).
pub(crate) fn pid_alive(pid: u32) -> bool {
    succeeds(Command::new("kill").arg("-0").arg(pid.to_string()))
}

/// Prints a step header such as `==> [3/9] clippy`.
pub(crate) fn header(index: usize, total: usize, name: &str) {
    println!();
    println!("==> [{index}/{total}] {name}");
}

/// The lines of one `[section]` of a Cargo manifest, without the header (a tiny TOML reader that is
/// enough for the manifests of this workspace: tables are not nested inline).
pub(crate) fn manifest_section<'a>(manifest: &'a str, section: &str) -> Vec<&'a str> {
    let header = format!("[{section}]");
    let mut lines = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[\"") && trimmed.ends_with(']') {
            inside = trimmed == header;
            continue;
        }
        if inside {
            lines.push(line);
        }
    }
    lines
}

/// The feature names declared in a manifest's `[features]` table, `default` excluded.
pub(crate) fn manifest_features(manifest: &str) -> Vec<String> {
    manifest_section(manifest, "features")
        .into_iter()
        .filter_map(|line| {
            // Keys start a line; continuation lines of multi-line arrays start with `"` or `]`.
            let first = line.chars().next()?;
            if !(first.is_ascii_alphanumeric() || first == '_') {
                return None;
            }
            let (key, _) = line.split_once('=')?;
            let key = key.trim().trim_matches('"');
            (key != "default").then(|| key.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_features_from_a_manifest() {
        let manifest = "[package]\nname = \"psm\"\n\n[features]\n# Comment.\ndefault = [\"memory\",\n  \"file\"]\n\
                        memory = [\"dep:psm-memory\"]\nfull = [\n  \"memory\",\n]\n\n[dependencies]\nx = \"1\"\n";
        assert_eq!(manifest_features(manifest), ["memory", "full"]);
        assert!(
            manifest_section(manifest, "dependencies")
                .iter()
                .any(|l| l.starts_with("x ="))
        );
        assert!(manifest_features("[package]\nname = \"a\"\n").is_empty());
    }
}
