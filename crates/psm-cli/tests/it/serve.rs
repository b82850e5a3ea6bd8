//! `psm serve` as a process: it answers, and on SIGTERM it finishes what it acknowledged.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{parts, psm};

/// Starts `psm serve` on a free port; returns the child, its address, and the lines it logs.
fn start(dir: &std::path::Path) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    start_with(dir, &[])
}

/// As [`start`], with extra environment variables.
fn start_with(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_psm"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PSM_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("PSM_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&logged);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line.clone());
            if !sent && let Some(at) = line.find("listening on http://") {
                let addr = line[at + "listening on http://".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("psm serve did not report its address");
    (child, addr, logged)
}

/// Polls `done` for up to 5 s.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits up to `limit` for `child` to exit.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = parts(&psm(
        d,
        &[
            "users",
            "create",
            "--email",
            "admin@example.com",
            "--admin",
            "--password-stdin",
        ],
        Some("the admin's passphrase\n"),
    ));
    assert_eq!(code, 0, "{err}");
    let (mut child, addr, logged) = start(d);
    assert!(
        !logged
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("no account holds")),
        "an admin exists, yet the hint was logged"
    );
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": "admin@example.com", "password": "the admin's passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();

    // Writers store sessions until the server goes away; every 200 is an acknowledgement.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, token, acked) = (
            client.clone(),
            base.clone(),
            token.clone(),
            Arc::clone(&acked),
        );
        writers.push(tokio::spawn(async move {
            for k in 0.. {
                let id = format!("sess_{w}_{k}");
                let sent = client
                    .put(format!("{base}/v1/sessions/{id}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"user_id": "load", "permissions": ["read"], "ttl": 3600}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(id);
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    terminate(&child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "psm serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "psm serve exited with {status}");
    // The stderr reader sees the last lines a moment after the exit.
    let closed = wait_for(|| {
        logged
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("the stores are closed"))
    });
    assert!(closed, "no line saying the stores were closed");
    for w in writers {
        w.await.unwrap();
    }

    // Reopened by another process: every acknowledged session is there.
    let (code, out, err) = parts(&psm(
        d,
        &["sessions", "list", "--user", "load", "--limit", "10000"],
        None,
    ));
    assert_eq!(code, 0, "{err}");
    let stored: HashSet<String> = out.lines().map(str::to_owned).collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged sessions lost: {lost:?}",
        lost.len()
    );
}

#[test]
fn a_first_start_without_an_admin_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _addr, logged) = start(dir.path());
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let lines = logged.lock().unwrap();
    let hint = lines
        .iter()
        .find(|l| l.contains("no account holds psm:admin"))
        .unwrap_or_else(|| panic!("no admin hint in {lines:?}"));
    assert!(hint.contains("psm users create --admin"), "{hint}");
    assert!(hint.contains("stop the server first"), "{hint}");
}

#[test]
fn an_address_in_use_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = parts(&psm(dir.path(), &["serve", "--listen", &addr], None));
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("cannot listen"), "{err}");
}

/// Opens a connection and sends half a request (no blank line after the headers).
fn half_request(addr: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
}

#[test]
fn a_client_trickling_its_headers_cannot_hold_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, _) = start(dir.path());
    let _held = half_request(&addr);
    std::thread::sleep(Duration::from_millis(100));
    terminate(&child);
    // The header read timeout (10 s) closes the connection; shutdown then completes cleanly.
    let status = exit_within(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("psm serve still runs 30 s after SIGTERM"));
    assert!(status.success(), "{status}");
}

#[test]
fn sigint_shuts_down_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, logged) = start(dir.path());
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = exit_within(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("psm serve still runs 30 s after SIGINT"));
    assert!(status.success(), "{status}");
    assert!(
        logged
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("shutting down")),
        "no shutdown was logged"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, logged) = start(dir.path());
    let _held = half_request(&addr);
    std::thread::sleep(Duration::from_millis(100));
    terminate(&child);
    assert!(wait_for(|| logged
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("shutting down"))));
    terminate(&child);
    let status = exit_within(&mut child, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("psm serve ignored the second signal"));
    assert_eq!(status.code(), Some(10));
}

#[test]
fn a_closed_standard_error_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_psm"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("PSM_LOG_LEVEL", "info")
        .env_remove("PSM_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "psm serve ended");
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on http://".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    // Closing our end of the pipe makes every later log write fail with EPIPE.
    drop(reader);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..3 {
            let r = client
                .post(format!("http://{addr}/v1/auth/register"))
                .json(&serde_json::json!({"username": format!("pipe{i}"), "email": format!("pipe{i}@example.com"), "password": "long enough pw"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    });
    terminate(&child);
    let status = exit_within(&mut child, Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, logged) = start_with(dir.path(), &[("PSM_LOG_FORMAT", "json")]);
    terminate(&child);
    assert!(
        exit_within(&mut child, Duration::from_secs(30))
            .unwrap()
            .success()
    );
    assert!(wait_for(|| logged
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("stores are closed"))));
    let lines = logged.lock().unwrap();
    let hint = lines
        .iter()
        .find(|l| l.contains("no account holds"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let value: serde_json::Value = serde_json::from_str(hint).unwrap();
    assert_eq!(value["level"], "WARN");
    for line in lines.iter() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line}"
        );
    }
}
