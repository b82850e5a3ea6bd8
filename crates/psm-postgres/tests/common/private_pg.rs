//! A private PostgreSQL server for the fault and TLS tests: `initdb` and `pg_ctl` (as the
//! `postgres` user when the tests run as root) in a temporary directory, on a free loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use psm_postgres::{PostgresConfig, SslMode};

/// The directory of the PostgreSQL server programs: `PSM_PG_BINDIR`, else the directory of
/// `pg_ctl` on the `PATH`, else the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout,
/// where the server programs are not on the `PATH`), as the xtask finds them.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PSM_PG_BINDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("pg_ctl").is_file())
    {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path().join("bin");
            dir.join("pg_ctl").is_file().then_some((version, dir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server programs: set PSM_PG_BINDIR, put pg_ctl on the PATH, or install them under /usr/lib/postgresql/<version>/bin"
        )
    })
}

/// A private PostgreSQL in a temporary directory on a free loopback port. Dropping it stops the
/// server (immediate mode) and removes the directory.
#[derive(Debug)]
pub struct PrivatePg {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root (initdb refuses root).
pub fn as_postgres(program: &str, args: &[&str]) -> Command {
    let path = bin_dir().join(program);
    assert!(
        path.exists(),
        "{} is missing: the fault tests need the PostgreSQL server programs",
        path.display()
    );
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args).stdin(Stdio::null());
    cmd
}

pub fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivatePg {
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// Like [`start`](Self::start), appending what `extra` returns to `postgresql.conf`; `extra`
    /// gets the data directory (to place files such as certificates) before the server starts.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("psm-pg-faults-")
            .tempdir()
            .unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:").arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let port = free_port();
        let pg = Self { dir, port };
        let data = pg.data();
        run(
            as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ),
            "initdb",
        );
        // `fsync = off` only matters when the machine crashes. `synchronous_commit` stays on: an
        // immediate stop is a crash of the server, and with it off the commits of the last few
        // hundred milliseconds (the migration included) were lost, so the restarted server had
        // no `sessions` table (42P01, a `Provider` error) and the test failed with "wrong kind".
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = on\nmax_connections = 50\n",
            pg.dir.path().display()
        );
        let conf = conf + &extra(Path::new(&data));
        std::fs::OpenOptions::new()
            .append(true)
            .open(Path::new(&data).join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .unwrap();
        pg.pg_ctl_start();
        pg
    }

    pub fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn pg_ctl_start(&self) {
        let log = self.log().display().to_string();
        run(
            as_postgres(
                "pg_ctl",
                &["start", "-w", "-t", "60", "-D", &self.data(), "-l", &log],
            ),
            "pg_ctl start",
        );
    }

    pub fn stop_immediate(&self) {
        run(
            as_postgres(
                "pg_ctl",
                &["stop", "-w", "-m", "immediate", "-D", &self.data()],
            ),
            "pg_ctl stop",
        );
    }

    pub fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::from_url(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
        .unwrap();
        c.sslmode = SslMode::Disable;
        c.pool_size = 4;
        c.connect_timeout = Duration::from_secs(1);
        c.wait_timeout = Duration::from_secs(2);
        c.retry_attempts = 1;
        c.retry_delay = Duration::from_millis(50);
        c
    }
}

impl PrivatePg {
    /// The postmaster's pid (first line of `postmaster.pid`) and its children's (the backends and
    /// auxiliary processes), from `/proc`.
    pub fn pids(&self) -> Vec<u32> {
        let pidfile = Path::new(&self.data()).join("postmaster.pid");
        let master = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        let Some(master) = master else {
            return Vec::new();
        };
        let mut pids = vec![master];
        let Ok(proc_dir) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in proc_dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends `signal` (`STOP`, `CONT`) to the postmaster and all its children.
    pub fn signal_all(&self, signal: &str) {
        let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
        let mut c = Command::new("kill");
        c.arg(format!("-{signal}")).args(&pids);
        run(c, "kill");
    }

    /// Freezes every server process with `SIGSTOP` (the kernel still completes TCP handshakes on
    /// its port, but nothing ever answers) until the guard is dropped, which sends `SIGCONT`.
    pub fn freeze(&self) -> Frozen<'_> {
        self.signal_all("STOP");
        Frozen(self)
    }
}

/// A frozen server; dropping this thaws it (also when the test panics).
#[derive(Debug)]
pub struct Frozen<'a>(&'a PrivatePg);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal_all("CONT");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // A stopped server cannot shut down: continue it first (harmless when it runs).
        let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-CONT").args(&pids).output();
        }
        let _ = as_postgres(
            "pg_ctl",
            &["stop", "-w", "-m", "immediate", "-D", &self.data()],
        )
        .output();
    }
}
