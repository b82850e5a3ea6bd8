//! CI's API conformance step: schemathesis, a client nobody here wrote (pinned from PyPI), run
//! against the `/openapi.json` of a running `psm serve` on the embedded default, for every
//! operation. It must find no server error and no response that breaks the document (status,
//! content type, headers, body schema), and no request the document forbids may be accepted.
//!
//! Three runs, each with an administrator of its own, created with `psm users create --admin` while
//! the server is stopped (the file store is locked while it runs): the example, coverage and
//! fuzzing phases, and the stateful phase, both without the operations that can end the caller's
//! own access (schemathesis reuses ids it saw in responses, such as the caller's own user and
//! session id from `/v1/me`), and required to stay authenticated (`xtask/schemathesis.toml` fails
//! a run in which an operation only ever got 401/403); then each of those operations alone
//! (`revoke-all`, deleting a user, ending a user's sessions, ending one of one's own sessions). Each run stops the server with
//! SIGTERM, which must exit cleanly. Schema-valid input
//! the server refuses (`positive_data_acceptance`) is not checked: JSON Schema counts `maxLength`
//! in code points where psm's rules count UTF-8 bytes, and emails are validated beyond any pattern.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    python,
    util::{Error, Result, bail, cargo, free_port, run, target_dir, wait_until, workspace_root},
};

/// The client, pinned.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// One seed, so a red run can be replayed exactly (`PSM_SCHEMATHESIS_SEED` overrides it).
const SEED: &str = "20261207";
/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "50";

/// A password for the throwaway administrator, from the OS CSPRNG.
fn password() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `psm serve` child; stopped with SIGTERM when dropped (also on a failed run).
struct Server {
    child: Child,
}

impl Server {
    /// SIGTERM, then the exit status, which must be a clean, graceful exit.
    fn stop(mut self) -> Result<()> {
        let status = terminate(&mut self.child)?;
        if !status.success() {
            bail!("psm serve did not shut down cleanly on SIGTERM ({status})");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = terminate(&mut self.child);
        }
    }
}

fn terminate(child: &mut Child) -> Result<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !stopped {
        let _ = child.kill();
    }
    Ok(child.wait()?)
}

/// Logs the administrator in through the API (with the venv's Python, so xtask needs no HTTP
/// client); returns the access token.
fn login(python: &Path, base: &str, email: &str, password: &str) -> Result<String> {
    const SCRIPT: &str = "import json, sys, urllib.request\n\
        body = json.dumps({'email': sys.argv[2], 'password': sys.stdin.read()}).encode()\n\
        req = urllib.request.Request(sys.argv[1] + '/v1/auth/login', body, {'content-type': 'application/json'})\n\
        print(json.load(urllib.request.urlopen(req))['access_token'])\n";
    let mut child = Command::new(python)
        .args(["-c", SCRIPT, base, email])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("logging the administrator in failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs the step.
pub(crate) fn conformance(env: &[(&'static str, String)]) -> Result<()> {
    let target = target_dir();
    let venv = target.join("xtask/schemathesis-venv");
    let python = python::ensure_venv(&venv, SCHEMATHESIS, &mut Vec::new())?;
    let schemathesis = venv.join("bin/schemathesis");
    run(cargo().args(["build", "-p", "psm-cli", "--bin", "psm"]))?;
    let psm = target.join("debug/psm");

    let data = target.join(format!("xtask/conformance-{}", std::process::id()));
    let _ = fs::remove_dir_all(&data);
    let result = with_server(&psm, &data, &python, &schemathesis, env);
    let _ = fs::remove_dir_all(&data);
    result
}

/// Creates an administrator with the CLI (the server must be stopped).
fn create_admin(psm: &Path, data: &Path, email: &str, password: &str) -> Result<()> {
    let mut create = Command::new(psm)
        .arg("--data-dir")
        .arg(data)
        .args([
            "users",
            "create",
            "--admin",
            "--email",
            email,
            "--password-stdin",
        ])
        .env("PSM_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = create.stdin.take() {
        writeln!(stdin, "{password}")?;
    }
    if !create.wait()?.success() {
        bail!("psm users create --admin failed");
    }
    Ok(())
}

/// Starts `psm serve` on a free port and waits until it listens.
fn start(psm: &Path, data: &Path, env: &[(&'static str, String)]) -> Result<(Server, String)> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let server = Server {
        child: Command::new(psm)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", &listen])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PSM_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| Error::new(format!("cannot start psm serve: {e}")))?,
    };
    if !wait_until(Duration::from_secs(60), || {
        TcpStream::connect(&listen).is_ok()
    }) {
        bail!("psm serve did not start listening on {listen}");
    }
    Ok((server, format!("http://{listen}")))
}

fn with_server(
    psm: &Path,
    data: &Path,
    python: &Path,
    schemathesis: &Path,
    env: &[(&'static str, String)],
) -> Result<()> {
    let seed = std::env::var("PSM_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_owned());
    // The operations that can end the caller's own access (schemathesis names an operation
    // `METHOD /path`).
    const SELF_ENDING: &str = concat!(
        r"^(POST /v1/auth/revoke-all|DELETE /v1/users/\{id\}|",
        r"DELETE /v1/users/\{id\}/sessions|DELETE /v1/me/sessions/\{id\})$"
    );
    let config = workspace_root().join("xtask/schemathesis.toml");
    let config = config.to_string_lossy().into_owned();
    let runs: [(&str, bool, &[&str]); 6] = [
        (
            "examples, coverage and fuzzing",
            true,
            &[
                "--phases",
                "examples,coverage,fuzzing",
                "--exclude-name-regex",
                SELF_ENDING,
            ],
        ),
        (
            "stateful",
            true,
            &["--phases", "stateful", "--exclude-name-regex", SELF_ENDING],
        ),
        // Each alone, with an administrator of its own: it may end that administrator's access
        // at any point of its run, never another operation's.
        (
            "revoke-all",
            false,
            &["--include-name", "POST /v1/auth/revoke-all"],
        ),
        (
            "delete a user",
            false,
            &["--include-name", "DELETE /v1/users/{id}"],
        ),
        (
            "end a user's sessions",
            false,
            &["--include-name", "DELETE /v1/users/{id}/sessions"],
        ),
        (
            "end one of one's sessions",
            false,
            &["--include-name", "DELETE /v1/me/sessions/{id}"],
        ),
    ];
    for (index, (name, authenticated, extra)) in runs.into_iter().enumerate() {
        println!("schemathesis: {name}");
        let email = format!("conformance-admin-{index}@example.com");
        let password = password()?;
        create_admin(psm, data, &email, &password)?;
        let (server, base) = start(psm, data, env)?;
        let token = login(python, &base, &email, &password)?;
        let mut cmd = Command::new(schemathesis);
        if authenticated {
            cmd.args(["--config-file", &config]);
        }
        run(cmd
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", &seed])
            .args(["--wait-for-schema", "30", "--workers", "2"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(extra)
            // Its cache directory lands in the working directory: keep it out of the clone.
            .current_dir(data)
            .env("NO_COLOR", "1"))
        .map_err(|e| Error::new(format!("schemathesis ({name}) reported problems: {e}")))?;
        server.stop()?;
    }
    Ok(())
}
