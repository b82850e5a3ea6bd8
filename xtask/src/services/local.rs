//! Private Redis and PostgreSQL servers started from installed binaries, on free loopback ports.

use std::{
    ffi::OsStr,
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use super::{Kind, probe};
use crate::util::{
    Error, Result, bail, free_port, is_root, pid_alive, succeeds, wait_until, which,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A server this xtask started: where it answers, its PID and its data directory.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) url: String,
    pub(crate) pid: u32,
    pub(crate) data_dir: PathBuf,
}

/// Finds a PostgreSQL program on the `PATH` or in the newest `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn postgres_binary(name: &str) -> Option<PathBuf> {
    if let Some(path) = which(name) {
        return Some(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let candidate = entry.path().join("bin").join(name);
            candidate.is_file().then_some((version, candidate))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path)
}

/// Whether this machine can start a private server of `kind`; the error says why not.
pub(crate) fn can_start(kind: Kind) -> Result<(), String> {
    match kind {
        Kind::Redis => match which("redis-server") {
            Some(_) => Ok(()),
            None => Err("redis-server is not installed".to_owned()),
        },
        Kind::Postgres => {
            if postgres_binary("initdb").is_none() || postgres_binary("pg_ctl").is_none() {
                return Err(
                    "initdb and pg_ctl are not installed (PATH, /usr/lib/postgresql/*/bin)".into(),
                );
            }
            if is_root() && !succeeds(Command::new("id").args(["-u", "postgres"])) {
                return Err(
                    "initdb refuses to run as root and there is no `postgres` user to run it as"
                        .into(),
                );
            }
            Ok(())
        }
    }
}

/// Starts a private `redis-server` that keeps nothing on disk, daemonized so it outlives `services up`.
pub(crate) fn start_redis(xtask_dir: &Path) -> Result<Started> {
    let port = free_port()?;
    let data_dir = xtask_dir.join(format!("redis-{port}"));
    fs::create_dir_all(&data_dir)?;
    let pid_file = data_dir.join("redis-server.pid");
    let log_file = xtask_dir.join("redis.log");
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(["--daemonize", "yes"])
    .arg("--dir")
    .arg(&data_dir)
    .arg("--pidfile")
    .arg(&pid_file)
    .arg("--logfile")
    .arg(&log_file);
    crate::util::run(cmd.stdin(Stdio::null()).stdout(Stdio::null()))?;
    let url = format!("redis://127.0.0.1:{port}");
    let ready = wait_until(READY_TIMEOUT, || {
        pid_file.is_file() && probe::answers(Kind::Redis, &url).is_ok()
    });
    let pid = read_pid(&pid_file);
    match (ready, pid) {
        (true, Some(pid)) => Ok(Started { url, pid, data_dir }),
        (_, pid) => {
            if let Some(pid) = pid {
                stop_pid(Kind::Redis, pid);
            }
            bail!(
                "redis-server did not answer on port {port} in time; see {}",
                log_file.display()
            )
        }
    }
}

/// Runs `initdb` and `pg_ctl start` (as the `postgres` user when we are root), then creates database `test`.
pub(crate) fn start_postgres(xtask_dir: &Path) -> Result<Started> {
    let (Some(initdb), Some(pg_ctl)) = (postgres_binary("initdb"), postgres_binary("pg_ctl"))
    else {
        bail!("initdb and pg_ctl are not installed");
    };
    let port = free_port()?;
    let data_dir = postgres_data_dir(xtask_dir, port)?;
    let log = xtask_dir.join("postgres.log");
    let log_file =
        || -> Result<File> { Ok(OpenOptions::new().create(true).append(true).open(&log)?) };
    let dir = data_dir.as_os_str();
    let mut init = as_postgres(
        &initdb,
        &[
            OsStr::new("-D"),
            dir,
            OsStr::new("-U"),
            OsStr::new("postgres"),
            OsStr::new("--auth=trust"),
            OsStr::new("--no-sync"),
            OsStr::new("-E"),
            OsStr::new("UTF8"),
            OsStr::new("--locale=C"),
        ],
    );
    let started = (|| -> Result<Started> {
        crate::util::run(
            init.stdin(Stdio::null())
                .stdout(log_file()?)
                .stderr(log_file()?),
        )
        .map_err(|e| Error::new(format!("{e}; see {}", log.display())))?;
        configure(&data_dir, port)?;
        let server_log = data_dir.join("server.log");
        let mut start = as_postgres(
            &pg_ctl,
            &[
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-D"),
                dir,
                OsStr::new("-l"),
                server_log.as_os_str(),
            ],
        );
        crate::util::run(
            start
                .stdin(Stdio::null())
                .stdout(log_file()?)
                .stderr(log_file()?),
        )
        .map_err(|e| {
            Error::new(format!(
                "{e}; see {} and {}",
                log.display(),
                server_log.display()
            ))
        })?;
        let pid = read_pid(&data_dir.join("postmaster.pid"))
            .ok_or_else(|| Error::new("postgres started but wrote no postmaster.pid"))?;
        let url = format!("postgres://postgres@127.0.0.1:{port}/test");
        let started = Started {
            url,
            pid,
            data_dir: data_dir.clone(),
        };
        if let Err(e) = create_test_database(port) {
            stop(Kind::Postgres, started.pid, &started.data_dir);
            return Err(e);
        }
        Ok(started)
    })();
    if started.is_err() {
        // A failed initdb or start leaves a half-made cluster; nothing else uses this directory.
        let _ = fs::remove_dir_all(&data_dir);
    }
    let started = started?;
    if !wait_until(READY_TIMEOUT, || {
        probe::answers(Kind::Postgres, &started.url).is_ok()
    }) {
        stop(Kind::Postgres, started.pid, &started.data_dir);
        bail!(
            "postgres did not accept connections on port {port} in time; see {}",
            log.display()
        );
    }
    Ok(started)
}

/// Stops a server this xtask started (SIGINT is PostgreSQL's fast shutdown, SIGTERM Redis's) and
/// removes its data directory.
pub(crate) fn stop(kind: Kind, pid: u32, data_dir: &Path) {
    stop_pid(kind, pid);
    if !data_dir.as_os_str().is_empty()
        && data_dir.exists()
        && let Err(e) = fs::remove_dir_all(data_dir)
    {
        eprintln!("warning: cannot remove {}: {e}", data_dir.display());
    }
}

/// Stops one server process by PID: its program's polite signal, then SIGKILL after 30 s.
pub(crate) fn stop_pid(kind: Kind, pid: u32) {
    if !pid_alive(pid) {
        return;
    }
    if !is_our_program(kind, pid) {
        eprintln!(
            "warning: PID {pid} is no longer {}; leaving it alone",
            kind.program()
        );
        return;
    }
    let signal = match kind {
        Kind::Redis => "-TERM",
        Kind::Postgres => "-INT",
    };
    eprintln!("$ kill {signal} {pid}");
    let _ = succeeds(Command::new("kill").args([signal, &pid.to_string()]));
    if !wait_until(Duration::from_secs(30), || !pid_alive(pid)) {
        eprintln!(
            "warning: {} (PID {pid}) did not stop in 30 s; sending SIGKILL",
            kind.program()
        );
        let _ = succeeds(Command::new("kill").args(["-KILL", &pid.to_string()]));
        let _ = wait_until(Duration::from_secs(5), || !pid_alive(pid));
    }
}

/// Guards against PID reuse: only a process running the expected program is signalled.
fn is_our_program(kind: Kind, pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim().starts_with(kind.program()),
        // Without procfs there is no cheap check; the PID file is all we have.
        Err(_) => true,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A data directory the server's user can write: under `target/xtask/` when that user can reach it,
/// else (a clone under root's home, say) a fresh one under the system temporary directory.
fn postgres_data_dir(xtask_dir: &Path, port: u16) -> Result<PathBuf> {
    let preferred = xtask_dir.join(format!("postgres-{port}"));
    let fallback = std::env::temp_dir().join(format!("psm-xtask-postgres-{port}"));
    for dir in [preferred, fallback] {
        fs::create_dir_all(&dir)?;
        if !is_root() {
            return Ok(dir);
        }
        let owned = succeeds(Command::new("chown").arg("postgres:").arg(&dir));
        if owned
            && succeeds(&mut as_postgres(
                Path::new("test"),
                &[OsStr::new("-w"), dir.as_os_str()],
            ))
        {
            return Ok(dir);
        }
        eprintln!(
            "note: the postgres user cannot write {}; trying elsewhere",
            dir.display()
        );
        fs::remove_dir_all(&dir)?;
    }
    bail!("found no directory the postgres user can write")
}

/// Settings for a throwaway test server: loopback TCP only, no Unix socket, no durability.
fn configure(data_dir: &Path, port: u16) -> Result<()> {
    let mut conf = OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))?;
    writeln!(
        conf,
        "\n# Added by cargo xtask services: a private test server.\n\
         listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200"
    )?;
    Ok(())
}

fn create_test_database(port: u16) -> Result<()> {
    let port = port.to_string();
    let base = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
    if let Some(createdb) = postgres_binary("createdb") {
        return crate::util::run(Command::new(createdb).args(base).arg("test"));
    }
    if let Some(psql) = postgres_binary("psql") {
        return crate::util::run(Command::new(psql).args(base).args([
            "-d",
            "postgres",
            "-c",
            "create database test",
        ]));
    }
    bail!("neither createdb nor psql is installed to create database `test`")
}

/// A command that runs `program` as the `postgres` user when we are root, else as ourselves.
///
/// `runuser` takes the arguments as they are; `su` needs one shell string, so each argument is quoted.
fn as_postgres(program: &Path, args: &[&OsStr]) -> Command {
    if !is_root() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        return cmd;
    }
    if let Some(runuser) = which("runuser") {
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", "postgres", "--"]).arg(program).args(args);
        return cmd;
    }
    let mut line = shell_quote(program.as_os_str());
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut cmd = Command::new("su");
    cmd.args(["postgres", "-s", "/bin/sh", "-c", &line]);
    cmd
}

fn shell_quote(arg: &OsStr) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_arguments_for_su() {
        assert_eq!(shell_quote(OsStr::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
    }
}
