//! A throwaway three-master Redis Cluster on loopback ports, for the Redis conformance suite's
//! cluster run (DESIGN §7).
//!
//! Always private: three `redis-server --cluster-enabled yes` processes on free ports (each also
//! needs its bus port, port + 10000, free), joined with `redis-cli --cluster create`, waited on
//! until every node reports `cluster_state:ok`. Their PIDs are recorded under `target/xtask/` so a
//! run that was killed leaves nothing a later run cannot find and stop.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use super::{Kind, local};
use crate::util::{Error, Result, bail, free_port, quiet_output, run, wait_until, which};

/// The variable the Redis cluster tests read.
pub(crate) const ENV_VAR: &str = "PSM_REDIS_CLUSTER_URL";

/// Masters in the cluster; three is the smallest Redis accepts.
const NODES: usize = 3;

/// How long the nodes get to start and the cluster to agree on its slots.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running cluster this xtask started.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The seed node, as the tests take it: `redis://127.0.0.1:<port>?cluster=true`.
    pub(crate) url: String,
    pids: Vec<u32>,
    dir: PathBuf,
}

impl Cluster {
    /// Stops every node by its PID and removes the cluster's directory and record.
    pub(crate) fn stop(&self) {
        stop_nodes(&self.pids, &self.dir);
    }
}

/// Starts the nodes and forms the cluster; on any failure, whatever was started is stopped.
pub(crate) fn start(xtask_dir: &Path) -> Result<Cluster> {
    if which("redis-server").is_none() || which("redis-cli").is_none() {
        bail!("redis-server and redis-cli are needed for the cluster run and are not on the PATH");
    }
    stop_recorded(xtask_dir);
    let ports = free_ports()?;
    let dir = xtask_dir.join(format!("redis-cluster-{}", ports[0]));
    fs::create_dir_all(&dir)?;
    let mut pids = Vec::new();
    let result = start_nodes(&dir, &ports, &mut pids).and_then(|()| {
        record(xtask_dir, &pids, &dir)?;
        form(&ports)
    });
    match result {
        Ok(()) => Ok(Cluster {
            url: format!("redis://127.0.0.1:{}?cluster=true", ports[0]),
            pids,
            dir,
        }),
        Err(e) => {
            stop_nodes(&pids, &dir);
            remove_record(xtask_dir);
            Err(e)
        }
    }
}

/// Stops a cluster a killed run left behind, if its record is still there.
pub(crate) fn stop_recorded(xtask_dir: &Path) {
    let Ok(text) = fs::read_to_string(record_path(xtask_dir)) else {
        return;
    };
    let mut lines = text.lines();
    let dir = lines.next().map(PathBuf::from).unwrap_or_default();
    let pids: Vec<u32> = lines.filter_map(|l| l.trim().parse().ok()).collect();
    eprintln!(
        "stopping a Redis Cluster an earlier run left behind ({} nodes)",
        pids.len()
    );
    stop_nodes(&pids, &dir);
    remove_record(xtask_dir);
}

/// Whether a started cluster is recorded (and may still be running).
pub(crate) fn has_record(xtask_dir: &Path) -> bool {
    record_path(xtask_dir).is_file()
}

/// Removes the record once the cluster it names is stopped.
pub(crate) fn remove_record(xtask_dir: &Path) {
    let _ = fs::remove_file(record_path(xtask_dir));
}

fn record_path(xtask_dir: &Path) -> PathBuf {
    xtask_dir.join("redis-cluster.record")
}

/// First line the directory, then one PID per line.
fn record(xtask_dir: &Path, pids: &[u32], dir: &Path) -> Result<()> {
    let mut text = format!("{}\n", dir.display());
    for pid in pids {
        text.push_str(&format!("{pid}\n"));
    }
    fs::write(record_path(xtask_dir), text)?;
    Ok(())
}

/// Three distinct free ports whose bus ports (port + 10000) are free too.
fn free_ports() -> Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::new();
    for _ in 0..200 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if ports.contains(&port) || TcpListener::bind(("127.0.0.1", bus)).is_err() {
            continue;
        }
        ports.push(port);
        if ports.len() == NODES {
            return Ok(ports);
        }
    }
    Err(Error::new(
        "cannot find three free loopback ports with free cluster bus ports",
    ))
}

fn start_nodes(dir: &Path, ports: &[u16], pids: &mut Vec<u32>) -> Result<()> {
    for port in ports {
        let pid_file = dir.join(format!("{port}.pid"));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "5000"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--dir")
            .arg(dir)
            .arg("--pidfile")
            .arg(&pid_file)
            .arg("--logfile")
            .arg(dir.join(format!("{port}.log")));
        run(cmd.stdin(Stdio::null()).stdout(Stdio::null()))?;
        let url = format!("redis://127.0.0.1:{port}");
        let ready = wait_until(READY_TIMEOUT, || {
            pid_file.is_file() && super::probe::answers(Kind::Redis, &url).is_ok()
        });
        if let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            pids.push(pid);
        }
        if !ready {
            bail!(
                "cluster node on port {port} did not answer in time; see {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Assigns the slots over the masters and waits until every node agrees the cluster is up.
fn form(ports: &[u16]) -> Result<()> {
    let mut cmd = Command::new("redis-cli");
    cmd.arg("--cluster").arg("create");
    for port in ports {
        cmd.arg(format!("127.0.0.1:{port}"));
    }
    cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
    run(cmd.stdin(Stdio::null()).stdout(Stdio::null()))?;
    let all_ok = wait_until(READY_TIMEOUT, || {
        ports.iter().all(|port| {
            quiet_output(Command::new("redis-cli").args([
                "-p",
                &port.to_string(),
                "cluster",
                "info",
            ]))
            .is_some_and(|info| info.contains("cluster_state:ok"))
        })
    });
    if !all_ok {
        bail!("the Redis Cluster did not reach cluster_state:ok in time");
    }
    eprintln!(
        "Redis Cluster of {NODES} masters up on ports {}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn stop_nodes(pids: &[u32], dir: &Path) {
    for pid in pids {
        local::stop_pid(Kind::Redis, *pid);
    }
    if !dir.as_os_str().is_empty()
        && dir.exists()
        && let Err(e) = fs::remove_dir_all(dir)
    {
        eprintln!("warning: cannot remove {}: {e}", dir.display());
    }
}
