//! What the numbers were measured on: cores, CPU, memory, disk, OS, toolchain, commit and date.

use std::{fs, path::Path, process::Command, thread};

use serde_json::{Value, json};

use crate::util::quiet_output;

/// Collects the machine description; anything unreadable is reported as "unknown".
pub(crate) fn collect(python: Option<&Value>, load_at_start: &str, disk: &str) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name").unwrap_or_else(unknown);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal")
        .and_then(|kb| kb.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(unknown, |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let distro = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(unknown);
    let kernel = quiet_output(Command::new("uname").args(["-sr"])).unwrap_or_else(unknown);
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    json!({
        "cores": cores,
        "cpu": cpu,
        "memory": memory,
        "disk": disk,
        "os": format!("{distro} ({kernel})"),
        "rustc": quiet_output(Command::new("rustc").arg("-V")).unwrap_or_else(unknown),
        "python": python.and_then(|p| p.get("python")).cloned().unwrap_or(Value::Null),
        "load": load_at_start,
        "commit": commit(),
        "date": quiet_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_else(unknown),
    })
}

/// The file system and device holding `dir`, as `ext4 on /dev/vda, mounted at /`: the durable figures are the
/// disk's, and a tmpfs would make every fsync free.
pub(crate) fn disk(dir: &Path) -> String {
    quiet_output(Command::new("df").args(["-T", "-P"]).arg(dir))
        .and_then(|out| parse_df(&out))
        .unwrap_or_else(unknown)
}

/// The second line of `df -T -P`: device, type, sizes, mount point.
fn parse_df(out: &str) -> Option<String> {
    let words: Vec<&str> = out.lines().nth(1)?.split_whitespace().collect();
    let (device, fstype, mount) = (words.first()?, words.get(1)?, words.last()?);
    Some(format!("{fstype} on {device}, mounted at {mount}"))
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure, so the report
/// shows how busy it was when the run began.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(unknown)
}

/// `key : value` lines of /proc files.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

fn commit() -> String {
    let Some(head) = quiet_output(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
    else {
        return unknown();
    };
    let dirty =
        quiet_output(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]))
            .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_df() {
        let out = "Filesystem     Type 1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda       ext4   264212084 15656472  79629416      17% /\n";
        assert_eq!(
            parse_df(out).as_deref(),
            Some("ext4 on /dev/vda, mounted at /")
        );
        assert_eq!(parse_df("Filesystem Type\n"), None);
    }
}
