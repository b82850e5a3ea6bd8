//! `cargo xtask services up|down|env`: find or start the Redis and PostgreSQL servers the tests use.
//!
//! Discovery order, per service, first that works:
//! 1. `PSM_REDIS_URL` / `PSM_POSTGRES_URL` when set (they must answer, else this fails loudly);
//! 2. the conventional local server (`127.0.0.1:6379`; `127.0.0.1:5432`, user `postgres`, db `test`);
//! 3. a private server this xtask started earlier and recorded under `target/xtask/`, if it still answers;
//! 4. a private server started now from installed binaries, on a free loopback port;
//! 5. a Docker container, if a Docker engine answers;
//! 6. otherwise an error listing what was tried.
//!
//! `PSM_XTASK_FORCE_START=1` skips steps 1 and 2, to exercise the start path on a machine that has
//! servers. Only what steps 4 and 5 started is ever stopped, by the PID or container id recorded.
//!
//! Beside them, a three-master Redis Cluster for the Redis suite's cluster run: `PSM_REDIS_CLUSTER_URL`
//! when set (it must answer), else always a private one started from the installed binaries
//! (`cluster.rs`), stopped by PID with the rest.

mod cluster;
mod docker;
mod local;
mod probe;

use std::{env, fs, path::PathBuf};

use crate::{
    flags::ServicesAction,
    util::{Error, Result, bail, xtask_dir},
};

/// The two kinds of server the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Redis,
    Postgres,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Redis, Kind::Postgres];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        }
    }

    /// The variable the tests read (STYLE rule 20).
    pub(crate) fn env_var(self) -> &'static str {
        match self {
            Kind::Redis => "PSM_REDIS_URL",
            Kind::Postgres => "PSM_POSTGRES_URL",
        }
    }

    fn conventional_url(self) -> &'static str {
        match self {
            Kind::Redis => "redis://127.0.0.1:6379",
            Kind::Postgres => "postgres://postgres@127.0.0.1:5432/test",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Kind::Redis => 6379,
            Kind::Postgres => 5432,
        }
    }

    /// The process name of the server, checked before a recorded PID is signalled.
    fn program(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Postgres => "postgres",
        }
    }
}

/// Where a server came from, which decides whether this run may stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Env,
    Conventional,
    Reused,
    Started,
    Docker,
}

/// One server the tests can use.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) kind: Kind,
    pub(crate) url: String,
    pub(crate) origin: Origin,
}

impl Service {
    fn describe(&self) -> String {
        match self.origin {
            Origin::Env => format!(
                "{}: using {} (it answers)",
                self.kind.name(),
                self.kind.env_var()
            ),
            Origin::Conventional => format!(
                "{}: using the local server at {}",
                self.kind.name(),
                self.url
            ),
            Origin::Reused => format!(
                "{}: reusing the private server at {} started earlier",
                self.kind.name(),
                self.url
            ),
            Origin::Started => format!(
                "{}: started a private server at {}",
                self.kind.name(),
                self.url
            ),
            Origin::Docker => format!("{}: started a container at {}", self.kind.name(), self.url),
        }
    }
}

/// The servers settled on for one run.
#[derive(Debug, Default)]
pub(crate) struct Services {
    list: Vec<Service>,
    /// The Redis Cluster seed URL, and the cluster itself when this run started it.
    cluster: Option<(String, Option<cluster::Cluster>)>,
}

impl Services {
    /// `(variable, url)` pairs for the environment of the following steps.
    pub(crate) fn env_vars(&self) -> Vec<(&'static str, String)> {
        self.list
            .iter()
            .map(|s| (s.kind.env_var(), s.url.clone()))
            .chain(
                self.cluster
                    .iter()
                    .map(|(url, _)| (cluster::ENV_VAR, url.clone())),
            )
            .collect()
    }

    /// Whether this run started anything it will have to stop.
    pub(crate) fn started_any(&self) -> bool {
        self.list
            .iter()
            .any(|s| matches!(s.origin, Origin::Started | Origin::Docker))
            || self.cluster.as_ref().is_some_and(|(_, c)| c.is_some())
    }

    /// Stops what this run started (steps 4 and 5); servers found or reused are left alone.
    pub(crate) fn stop_started(&self) {
        for service in &self.list {
            if matches!(service.origin, Origin::Started | Origin::Docker) {
                eprintln!(
                    "stopping the {} server this run started",
                    service.kind.name()
                );
                stop_recorded(service.kind);
            }
        }
        if let Some((_, Some(cluster))) = &self.cluster {
            eprintln!("stopping the Redis Cluster this run started");
            cluster.stop();
            if let Ok(dir) = xtask_dir() {
                cluster::remove_record(&dir);
            }
        }
    }
}

/// Entry point of `cargo xtask services`.
pub(crate) fn main(action: ServicesAction) -> Result<()> {
    match action {
        // Both leave what they found or started running and print `export` lines for `eval`; the
        // human-readable account goes to standard error so `eval "$(cargo xtask services env)"` works.
        ServicesAction::Up | ServicesAction::Env => {
            let services = discover()?;
            for (var, url) in services.env_vars() {
                println!("export {var}={}", shell_quote(&url));
            }
            if action == ServicesAction::Up && services.started_any() {
                eprintln!("`cargo xtask services down` stops what was started");
            }
            Ok(())
        }
        ServicesAction::Down => {
            let mut stopped = 0;
            for kind in Kind::ALL {
                if Record::load(kind)?.is_some() {
                    stop_recorded(kind);
                    stopped += 1;
                }
            }
            if cluster::has_record(&xtask_dir()?) {
                cluster::stop_recorded(&xtask_dir()?);
                stopped += 1;
            }
            if stopped == 0 {
                eprintln!("nothing to stop: this xtask has no running server recorded");
            }
            Ok(())
        }
    }
}

/// Runs discovery for both servers; if the second fails, the first is stopped when this call started it.
pub(crate) fn discover() -> Result<Services> {
    let mut services = Services::default();
    for kind in Kind::ALL {
        match discover_one(kind) {
            Ok(service) => {
                eprintln!("{}", service.describe());
                services.list.push(service);
            }
            Err(e) => {
                services.stop_started();
                return Err(e);
            }
        }
    }
    match discover_cluster() {
        Ok(found) => services.cluster = Some(found),
        Err(e) => {
            services.stop_started();
            return Err(e);
        }
    }
    Ok(services)
}

/// `PSM_REDIS_CLUSTER_URL` when set (it must answer), else a private cluster started now.
fn discover_cluster() -> Result<(String, Option<cluster::Cluster>)> {
    let forced = env::var("PSM_XTASK_FORCE_START").is_ok_and(|v| v == "1");
    if !forced
        && let Ok(url) = env::var(cluster::ENV_VAR)
        && !url.trim().is_empty()
    {
        return match probe::answers(Kind::Redis, &url) {
            Ok(()) => {
                eprintln!("redis cluster: using {} (it answers)", cluster::ENV_VAR);
                Ok((url, None))
            }
            Err(e) => bail!(
                "{} is set but its seed node does not answer: {e}",
                cluster::ENV_VAR
            ),
        };
    }
    let started = cluster::start(&xtask_dir()?)?;
    eprintln!(
        "redis cluster: started three private masters, seed {}",
        started.url
    );
    Ok((started.url.clone(), Some(started)))
}

fn discover_one(kind: Kind) -> Result<Service> {
    let name = kind.name();
    let mut tried = Vec::new();
    let forced = env::var("PSM_XTASK_FORCE_START").is_ok_and(|v| v == "1");
    if forced {
        tried.push(format!(
            "{} and {}: skipped (PSM_XTASK_FORCE_START=1)",
            kind.env_var(),
            kind.conventional_url()
        ));
    } else {
        match env::var(kind.env_var()) {
            Ok(url) if !url.trim().is_empty() => {
                // The URL may hold a password, so only the variable's name is printed.
                return match probe::answers(kind, &url) {
                    Ok(()) => Ok(Service {
                        kind,
                        url,
                        origin: Origin::Env,
                    }),
                    Err(e) => bail!(
                        "{} is set but its {name} server does not answer: {e}",
                        kind.env_var()
                    ),
                };
            }
            _ => tried.push(format!("{}: not set", kind.env_var())),
        }
        let url = kind.conventional_url();
        match probe::answers(kind, url) {
            Ok(()) => {
                return Ok(Service {
                    kind,
                    url: url.to_owned(),
                    origin: Origin::Conventional,
                });
            }
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    if let Some(record) = Record::load(kind)? {
        if record.alive() && probe::answers(kind, &record.url).is_ok() {
            return Ok(Service {
                kind,
                url: record.url,
                origin: Origin::Reused,
            });
        }
        eprintln!(
            "note: the {name} server recorded under target/xtask/ is gone; cleaning up its record"
        );
        stop_recorded(kind);
    }
    match local::can_start(kind) {
        Ok(()) => {
            let started = match kind {
                Kind::Redis => local::start_redis(&xtask_dir()?),
                Kind::Postgres => local::start_postgres(&xtask_dir()?),
            };
            match started {
                Ok(started) => {
                    let record = Record {
                        url: started.url.clone(),
                        pid: Some(started.pid),
                        data_dir: Some(started.data_dir),
                        container: None,
                    };
                    record.save(kind)?;
                    return Ok(Service {
                        kind,
                        url: started.url,
                        origin: Origin::Started,
                    });
                }
                Err(e) => tried.push(format!("private {name} server: {e}")),
            }
        }
        Err(why) => tried.push(format!("private {name} server: {why}")),
    }
    if docker::available() {
        match docker::start(kind) {
            Ok((url, id)) => {
                let record = Record {
                    url: url.clone(),
                    pid: None,
                    data_dir: None,
                    container: Some(id),
                };
                record.save(kind)?;
                return Ok(Service {
                    kind,
                    url,
                    origin: Origin::Docker,
                });
            }
            Err(e) => tried.push(format!("docker: {e}")),
        }
    } else {
        tried.push("docker: no engine answers `docker info`".to_owned());
    }
    let mut message = format!("no {name} server available for the tests; tried:");
    for attempt in tried {
        message.push_str("\n  - ");
        message.push_str(&attempt);
    }
    message.push_str(&format!(
        "\nset {} to a server that answers",
        kind.env_var()
    ));
    Err(Error::new(message))
}

/// Stops what the record of `kind` points to and removes the record.
fn stop_recorded(kind: Kind) {
    let record = match Record::load(kind) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            eprintln!("warning: {e}");
            return;
        }
    };
    if let Some(pid) = record.pid {
        local::stop(
            kind,
            pid,
            record
                .data_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("")),
        );
    }
    if let Some(id) = &record.container {
        docker::stop(id);
    }
    Record::remove(kind);
}

/// What `target/xtask/<name>.{url,pid,datadir,container}` say about a server this xtask started.
#[derive(Debug)]
struct Record {
    url: String,
    pid: Option<u32>,
    data_dir: Option<PathBuf>,
    container: Option<String>,
}

impl Record {
    const FIELDS: [&'static str; 4] = ["url", "pid", "datadir", "container"];

    fn path(kind: Kind, field: &str) -> Result<PathBuf> {
        Ok(xtask_dir()?.join(format!("{}.{field}", kind.name())))
    }

    fn load(kind: Kind) -> Result<Option<Record>> {
        let read = |field: &str| -> Result<Option<String>> {
            Ok(fs::read_to_string(Self::path(kind, field)?)
                .ok()
                .map(|s| s.trim().to_owned()))
        };
        let Some(url) = read("url")? else {
            return Ok(None);
        };
        let pid = match read("pid")? {
            Some(pid) => Some(
                pid.parse()
                    .map_err(|_| Error::new(format!("bad PID file for {}", kind.name())))?,
            ),
            None => None,
        };
        Ok(Some(Record {
            url,
            pid,
            data_dir: read("datadir")?.map(PathBuf::from),
            container: read("container")?,
        }))
    }

    fn save(&self, kind: Kind) -> Result<()> {
        let values = [
            Some(self.url.clone()),
            self.pid.map(|p| p.to_string()),
            self.data_dir.as_ref().map(|d| d.display().to_string()),
            self.container.clone(),
        ];
        for (field, value) in Self::FIELDS.into_iter().zip(values) {
            if let Some(value) = value {
                fs::write(Self::path(kind, field)?, format!("{value}\n"))?;
            }
        }
        Ok(())
    }

    fn remove(kind: Kind) {
        for field in Self::FIELDS {
            if let Ok(path) = Self::path(kind, field) {
                let _ = fs::remove_file(path);
            }
        }
    }

    fn alive(&self) -> bool {
        match (self.pid, &self.container) {
            (Some(pid), _) => crate::util::pid_alive(pid),
            (None, Some(_)) => true,
            (None, None) => false,
        }
    }
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
