//! The servers of the Redis and PostgreSQL benchmarks, and the limits measured on them in the same
//! run by the servers' own tools: `redis-benchmark` (`SISMEMBER` on a prepared set, 1 and 64
//! connections) and `pgbench` (select-only, prepared, 1 and 16 clients, on tables it creates in a
//! fresh schema that is dropped afterwards).

use std::{
    env, fs,
    net::{TcpStream, ToSocketAddrs},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    services::Kind,
    util::{Error, Result, bail, display, output, run, which},
};

/// The conventional local servers (as in `cargo xtask services`), used when the variables are unset.
const REDIS_URL: &str = "redis://127.0.0.1:6379";
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The set `redis-benchmark` asks about: five permissions like a session's, and one it holds.
const MEMBERS: [&str; 5] = [
    "res3:read",
    "res11:write",
    "res17:admin",
    "res29:delete",
    "res42:read",
];
const ASKED: &str = "res17:admin";

/// The Redis and PostgreSQL servers of the run.
#[derive(Debug)]
pub(crate) struct Servers {
    pub(crate) redis: String,
    pub(crate) postgres: String,
}

/// `PSM_REDIS_URL` and `PSM_POSTGRES_URL` when set, else the conventional local servers; each must
/// accept a TCP connection. Nothing is started: `cargo xtask services up` starts servers (and a
/// Redis Cluster the benchmarks do not need), and `eval "$(cargo xtask services env)"` points these
/// variables at them.
pub(crate) fn servers() -> Result<Servers> {
    let find = |kind: Kind, conventional: &str, default_port: u16| -> Result<String> {
        let var = kind.env_var();
        let (url, from) = match env::var(var) {
            Ok(url) if !url.trim().is_empty() => (url, var.to_owned()),
            _ => (
                conventional.to_owned(),
                format!("{var} is unset, so {conventional}"),
            ),
        };
        let (host, port) = host_port(&url, default_port)
            .ok_or_else(|| Error::new(format!("{from}: cannot read host and port")))?;
        let reachable = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
        if !reachable {
            bail!(
                "the {} benchmarks need a server: {from} does not answer on {host}:{port}; set {var} to one that does (`eval \"$(cargo xtask services env)\"` finds or starts one)",
                kind.name()
            );
        }
        Ok(url)
    };
    Ok(Servers {
        redis: find(Kind::Redis, REDIS_URL, 6379)?,
        postgres: find(Kind::Postgres, POSTGRES_URL, 5432)?,
    })
}

/// The tools run here, found before the long run starts so a missing one fails at once.
#[derive(Debug)]
pub(crate) struct Tools {
    redis_benchmark: PathBuf,
    pgbench: PathBuf,
    psql: PathBuf,
}

impl Tools {
    pub(crate) fn find() -> Result<Self> {
        let redis_benchmark = which("redis-benchmark").ok_or_else(|| {
            Error::new("redis-benchmark is not installed (it comes with the Redis server or redis-tools package)")
        })?;
        let postgres = |name: &str| {
            postgres_binary(name).ok_or_else(|| {
                Error::new(format!(
                    "{name} is not installed (PATH, /usr/lib/postgresql/*/bin; it comes with the PostgreSQL client package)"
                ))
            })
        };
        Ok(Self {
            redis_benchmark,
            pgbench: postgres("pgbench")?,
            psql: postgres("psql")?,
        })
    }
}

/// How much `redis-benchmark` and `pgbench` run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// `redis-benchmark -n` with one connection, and with 64.
    pub(crate) redis_requests: (u32, u32),
    /// `pgbench -T`, seconds.
    pub(crate) pgbench_secs: u32,
}

/// `redis-benchmark -c 1` and `-c 64` running `SISMEMBER` on a set it prepared with `SADD` (and
/// deletes with `DEL` at the end, also after a failure).
pub(crate) fn redis_benchmark(
    tools: &Tools,
    url: &str,
    sizes: Sizes,
    commands: &mut Vec<String>,
) -> Result<Value> {
    let target = RedisTarget::parse(url)?;
    let key = format!("psmbench:redis-benchmark:{}", std::process::id());
    let base = |clients: u32, requests: u32| {
        let mut cmd = Command::new(&tools.redis_benchmark);
        target.apply(&mut cmd);
        cmd.args([
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
            "-q",
        ]);
        cmd
    };
    let mut prepare = base(1, 1);
    prepare.args(["SADD", &key]).args(MEMBERS);
    commands.push(target.show(&prepare));
    output(&mut prepare)?;
    let mut measured = || -> Result<Value> {
        let mut rates = Vec::new();
        for (clients, requests) in [(1, sizes.redis_requests.0), (64, sizes.redis_requests.1)] {
            let mut cmd = base(clients, requests);
            cmd.args(["SISMEMBER", &key, ASKED]);
            commands.push(target.show(&cmd));
            let text = output(&mut cmd)?;
            let rate = requests_per_second(&text).ok_or_else(|| {
                Error::new(format!(
                    "redis-benchmark printed no requests-per-second figure: {}",
                    text.trim()
                ))
            })?;
            println!("redis-benchmark -c {clients}: {rate:.0} requests per second");
            rates.push(rate);
        }
        Ok(json!({
            "c1": rates[0],
            "c64": rates[1],
            "requests_c1": sizes.redis_requests.0,
            "requests_c64": sizes.redis_requests.1,
            "command": format!("SISMEMBER <key> {ASKED}"),
            "set_size": MEMBERS.len(),
        }))
    };
    let result = measured();
    let mut remove = base(1, 1);
    remove.args(["DEL", &key]);
    commands.push(target.show(&remove));
    let removed = output(&mut remove);
    let value = result?;
    removed?;
    Ok(value)
}

/// The last `<rate> requests per second` of `redis-benchmark -q` (which redraws its progress line
/// with carriage returns before printing the result).
fn requests_per_second(text: &str) -> Option<f64> {
    text.split(['\r', '\n'])
        .filter_map(|line| {
            let before = line.split(" requests per second").next()?;
            if before.len() == line.len() {
                return None;
            }
            before.rsplit(' ').next()?.parse().ok()
        })
        .next_back()
}

/// `pgbench -i` into a fresh schema, then `pgbench -S -M prepared` with 1 client and with 16 (2
/// threads), then the schema is dropped (also after a failure).
pub(crate) fn pgbench(
    tools: &Tools,
    url: &str,
    sizes: Sizes,
    commands: &mut Vec<String>,
) -> Result<Value> {
    let schema = format!("psm_bench_pgbench_{}", std::process::id());
    // Notices ("table … does not exist, skipping", "drop cascades to …") are noise here.
    const QUIET: &str = "-c client_min_messages=warning";
    let psql = |sql: &str| {
        let mut cmd = Command::new(&tools.psql);
        cmd.env("PGOPTIONS", QUIET);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]);
        cmd
    };
    let shown = |cmd: &Command| redact_command(&display(cmd), url);
    let mut create = psql(&format!("CREATE SCHEMA {schema}"));
    commands.push(shown(&create));
    run(&mut create)?;
    let pgbench = |args: &[&str]| {
        let mut cmd = Command::new(&tools.pgbench);
        // pgbench creates and reads its tables through the search path; TLS is off as for psm and
        // the bare pool, unless the URL asks for it.
        cmd.env("PGOPTIONS", format!("-c search_path={schema} {QUIET}"));
        if !url.contains("sslmode=") {
            cmd.env("PGSSLMODE", "disable");
        }
        cmd.args(args).arg(url);
        cmd
    };
    let secs = sizes.pgbench_secs.to_string();
    let mut measured = || -> Result<Value> {
        let mut init = pgbench(&["-i", "-q"]);
        commands.push(shown(&init));
        run(&mut init)?;
        let mut tps = Vec::new();
        for (clients, threads) in [("1", "1"), ("16", "2")] {
            let mut cmd = pgbench(&[
                "-S", "-M", "prepared", "-n", "-c", clients, "-j", threads, "-T", &secs,
            ]);
            commands.push(shown(&cmd));
            let text = output(&mut cmd)?;
            let rate = tps_line(&text).ok_or_else(|| {
                Error::new(format!("pgbench printed no tps figure: {}", text.trim()))
            })?;
            println!("pgbench -S -c {clients}: {rate:.0} transactions per second");
            tps.push(rate);
        }
        Ok(json!({
            "c1": tps[0],
            "c16": tps[1],
            "secs": sizes.pgbench_secs,
            "scale": 1,
        }))
    };
    let result = measured();
    let mut drop = psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    commands.push(shown(&drop));
    let dropped = run(&mut drop);
    let value = result?;
    dropped?;
    Ok(value)
}

/// The `tps = <rate> (without initial connection time)` figure of `pgbench`.
fn tps_line(text: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tps = "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
}

/// A `redis://` URL as `redis-benchmark` options.
#[derive(Debug, PartialEq)]
struct RedisTarget {
    host: String,
    port: u16,
    db: Option<u32>,
    user: Option<String>,
    password: Option<String>,
}

impl RedisTarget {
    fn parse(url: &str) -> Result<Self> {
        if !url.starts_with("redis://") {
            bail!("the Redis benchmarks need a plain redis:// URL (no TLS, no cluster)");
        }
        let (host, port) = host_port(url, 6379)
            .ok_or_else(|| Error::new("cannot read host and port of the Redis URL"))?;
        let rest = &url["redis://".len()..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (user, password) = match authority.rsplit_once('@') {
            Some((info, _)) => match info.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
                None => (None, Some(info.to_owned())),
            },
            None => (None, None),
        };
        let db = tail
            .strip_prefix('/')
            .map(|p| p.split('?').next().unwrap_or(""))
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse()
                    .map_err(|_| Error::new("the Redis URL's database is not a number"))
            })
            .transpose()?;
        Ok(Self {
            host,
            port,
            db,
            user,
            password,
        })
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.args(["-h", &self.host, "-p", &self.port.to_string()]);
        if let Some(db) = self.db {
            cmd.args(["--dbnum", &db.to_string()]);
        }
        if let Some(password) = &self.password {
            cmd.args(["-a", password]);
            if let Some(user) = &self.user {
                cmd.args(["--user", user]);
            }
        }
    }

    /// The command as the report lists it, without the password.
    fn show(&self, cmd: &Command) -> String {
        let text = display(cmd);
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(&format!("-a {p}"), "-a ***"),
            _ => text,
        }
    }
}

/// A command line with the password of `url` (if any) replaced.
pub(crate) fn redact_command(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(info, _)| info.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(&format!(":{p}@"), ":***@"),
        None => text.to_owned(),
    }
}

/// The host and port of a `scheme://[user[:password]@]host[:port][/path][?query]` URL.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if host_port.is_empty() => None,
        None => Some((host_port.to_owned(), default_port)),
    }
}

/// A PostgreSQL client program: on the `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn postgres_binary(name: &str) -> Option<PathBuf> {
    if let Some(path) = which(name) {
        return Some(path);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path().join("bin").join(name);
            path.is_file().then_some((version, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tools_figures() {
        let rb = "SISMEMBER k m: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                  SISMEMBER k m: 45045.05 requests per second, p50=0.015 msec                    \n";
        assert_eq!(requests_per_second(rb), Some(45045.05));
        assert_eq!(requests_per_second("nothing here\n"), None);
        let pg = "pgbench (15.20)\ntransaction type: <builtin: select only>\nlatency average = 0.081 ms\n\
                  initial connection time = 2.441 ms\ntps = 12345.678901 (without initial connection time)\n";
        assert_eq!(tps_line(pg), Some(12345.678901));
        assert_eq!(tps_line("tps = x\n"), None);
    }

    #[test]
    fn reads_redis_urls() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6380/2").unwrap(),
            RedisTarget {
                host: "127.0.0.1".into(),
                port: 6380,
                db: Some(2),
                user: None,
                password: None
            }
        );
        let t = RedisTarget::parse("redis://bob:s3cret@cache.local").unwrap();
        assert_eq!(
            (t.port, t.user.as_deref(), t.password.as_deref()),
            (6379, Some("bob"), Some("s3cret"))
        );
        let mut cmd = Command::new("redis-benchmark");
        t.apply(&mut cmd);
        assert!(!t.show(&cmd).contains("s3cret"));
        assert!(RedisTarget::parse("rediss://h:1").is_err());
        assert!(RedisTarget::parse("redis://h:1/x").is_err());
        assert_eq!(
            redact_command("psql -d postgres://u:pw@h/db -c x", "postgres://u:pw@h/db"),
            "psql -d postgres://u:***@h/db -c x"
        );
        assert_eq!(
            host_port("postgres://[::1]/db", 5432),
            Some(("::1".into(), 5432))
        );
    }
}
