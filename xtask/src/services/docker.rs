//! Servers in Docker containers from the official images, for machines without local binaries.

use std::{process::Command, time::Duration};

use super::{Kind, probe};
use crate::util::{Result, bail, free_port, output, succeeds, wait_until};

/// Whether a Docker engine answers (the client alone is not enough).
pub(crate) fn available() -> bool {
    succeeds(Command::new("docker").arg("info"))
}

/// Starts a container for `kind` on a free loopback port; returns its URL and container id.
pub(crate) fn start(kind: Kind) -> Result<(String, String)> {
    let port = free_port()?;
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--rm", "-p"]);
    let url = match kind {
        Kind::Redis => {
            cmd.arg(format!("127.0.0.1:{port}:6379")).arg("redis:7");
            format!("redis://127.0.0.1:{port}")
        }
        Kind::Postgres => {
            cmd.arg(format!("127.0.0.1:{port}:5432"))
                .args([
                    "-e",
                    "POSTGRES_HOST_AUTH_METHOD=trust",
                    "-e",
                    "POSTGRES_DB=test",
                ])
                .arg("postgres:16");
            format!("postgres://postgres@127.0.0.1:{port}/test")
        }
    };
    let id = output(&mut cmd)?.trim().to_owned();
    if id.is_empty() {
        bail!("docker run printed no container id");
    }
    if !wait_until(Duration::from_secs(90), || {
        probe::answers(kind, &url).is_ok()
    }) {
        stop(&id);
        bail!(
            "the {} container did not answer on port {port} in time",
            kind.name()
        );
    }
    Ok((url, id))
}

/// Removes a container this xtask started.
pub(crate) fn stop(id: &str) {
    eprintln!("$ docker rm -f {id}");
    if !succeeds(Command::new("docker").args(["rm", "-f", id])) {
        eprintln!("warning: cannot remove container {id}");
    }
}
