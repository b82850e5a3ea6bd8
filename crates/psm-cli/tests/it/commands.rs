//! Admin commands and their exit codes.

use crate::{parts, psm};

#[test]
fn sessions_commands_answer_with_stable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let (code, out, err) = parts(&psm(d, args, None));
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    ok(&[
        "sessions",
        "store",
        "sess_1",
        "--user",
        "alice",
        "-p",
        "read,write",
        "--ttl",
        "1h",
        "--metadata",
        "{\"ip\":\"10.0.0.1\"}",
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["sessions", "get", "sess_1"])).unwrap();
    assert_eq!(info["session_id"], "sess_1");
    assert_eq!(info["permissions"], serde_json::json!(["read", "write"]));
    assert_eq!(info["ttl_remaining"], 3600);
    assert_eq!(info["metadata"]["ip"], "10.0.0.1");
    assert_eq!(ok(&["sessions", "list", "--user", "alice"]), "sess_1\n");

    // check: 0 when all granted, 1 when any is denied.
    let (code, out, _) = parts(&psm(d, &["check", "sess_1", "read", "write"], None));
    assert_eq!((code, out.as_str()), (0, "read\tgranted\nwrite\tgranted\n"));
    let (code, out, _) = parts(&psm(
        d,
        &["sessions", "check", "sess_1", "read", "admin"],
        None,
    ));
    assert_eq!((code, out.as_str()), (1, "read\tgranted\nadmin\tdenied\n"));
    assert_eq!(parts(&psm(d, &["check", "sess_none", "read"], None)).0, 1);

    ok(&["sessions", "update", "sess_1", "-p", "admin"]);
    ok(&["sessions", "extend", "sess_1", "--ttl", "90"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["sessions", "get", "sess_1"])).unwrap();
    assert_eq!(info["permissions"], serde_json::json!(["admin"]));
    assert_eq!(info["ttl_remaining"], 90);
    assert_eq!(ok(&["sessions", "cleanup"]), "0 expired sessions removed\n");

    // Not found: 3; invalid input: 4, with nothing changed.
    for args in [
        &["sessions", "get", "sess_none"][..],
        &["sessions", "update", "sess_none", "-p", "x"],
        &["sessions", "extend", "sess_none", "--ttl", "5"],
        &["sessions", "invalidate", "sess_none"],
    ] {
        let (code, _, err) = parts(&psm(d, args, None));
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.starts_with("psm: "), "{err}");
    }
    for args in [
        &["sessions", "get", "bad id"][..],
        &[
            "sessions",
            "store",
            "sess_2",
            "--user",
            "bob",
            "-p",
            "two words",
        ],
        &[
            "sessions",
            "store",
            "sess_2",
            "--user",
            "bob",
            "-p",
            "x",
            "--metadata",
            "[1]",
        ],
        &[
            "sessions",
            "store",
            "sess_2",
            "--user",
            "bob",
            "-p",
            "x",
            "--metadata",
            "{oops",
        ],
        &["sessions", "list", "--limit", "0"],
    ] {
        let (code, _, err) = parts(&psm(d, args, None));
        assert_eq!(code, 4, "{args:?}: {err}");
    }
    assert_eq!(parts(&psm(d, &["sessions", "get", "sess_2"], None)).0, 3);
    // Usage errors are clap's: 2.
    assert_eq!(
        parts(&psm(
            d,
            &["sessions", "extend", "sess_1", "--ttl", "soon"],
            None
        ))
        .0,
        2
    );
    assert_eq!(parts(&psm(d, &["sessions", "frobnicate"], None)).0, 2);

    assert_eq!(
        ok(&["sessions", "invalidate", "--user", "alice"]),
        "1 sessions invalidated\n"
    );
    assert_eq!(ok(&["sessions", "list"]), "");
}

#[test]
fn users_are_created_read_and_deleted_without_their_hash_showing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, err) = parts(&psm(
        d,
        &[
            "users",
            "create",
            "--email",
            "Ops@Example.com",
            "--admin",
            "--password-stdin",
        ],
        Some("a fine long password\n"),
    ));
    assert_eq!(code, 0, "{err}");
    let user: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        user["permissions"],
        serde_json::json!(["psm:user", "psm:admin"])
    );
    assert_eq!(user["username"], "Ops");
    assert!(!out.contains("argon2"), "{out}");
    let id = user["id"].as_str().unwrap();
    let (code, _, _) = parts(&psm(
        d,
        &[
            "users",
            "create",
            "--email",
            "plain@example.com",
            "--password-stdin",
        ],
        Some("another fine password\n"),
    ));
    assert_eq!(code, 0);
    let (code, out, _) = parts(&psm(d, &["users", "list"], None));
    assert_eq!(code, 0);
    let emails: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["email"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(emails, ["Ops@Example.com", "plain@example.com"]);
    assert!(!out.contains("argon2"));
    let (_, admins, _) = parts(&psm(
        d,
        &["users", "list", "--permission", "psm:admin"],
        None,
    ));
    assert_eq!(admins.lines().count(), 1);
    assert_eq!(
        parts(&psm(d, &["users", "list", "--limit", "0"], None)).0,
        4
    );
    let (code, out, _) = parts(&psm(
        d,
        &["users", "get", "--email", "ops@example.com"],
        None,
    ));
    assert_eq!(code, 0);
    assert!(out.contains(id) && !out.contains("argon2"));
    // Taken email: conflict (5); weak password: invalid (4); no password at all: invalid.
    let (code, _, _) = parts(&psm(
        d,
        &[
            "users",
            "create",
            "--email",
            "ops@example.com",
            "--username",
            "ops2",
            "--password-stdin",
        ],
        Some("a fine long password\n"),
    ));
    assert_eq!(code, 5);
    let (code, _, _) = parts(&psm(
        d,
        &[
            "users",
            "create",
            "--email",
            "x@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    ));
    assert_eq!(code, 4);
    let (code, _, _) = parts(&psm(
        d,
        &["users", "create", "--email", "y@example.com"],
        Some(""),
    ));
    assert_eq!(code, 4);
    assert_eq!(parts(&psm(d, &["users", "delete", id], None)).0, 0);
    assert_eq!(parts(&psm(d, &["users", "get", id], None)).0, 3);
    assert_eq!(parts(&psm(d, &["users", "delete", id], None)).0, 3);
}

#[test]
fn settings_come_from_flags_then_environment_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("psm.toml");
    std::fs::write(&config, "store = \"mysql://nowhere\"\n").unwrap();
    let c = config.to_str().unwrap();
    // The file alone: an unsupported provider is a configuration error (7).
    let (code, _, err) = parts(&psm(d, &["--config", c, "sessions", "list"], None));
    assert_eq!(code, 7, "{err}");
    // The environment wins over the file, the flag over the environment.
    let mut env = std::process::Command::new(env!("CARGO_BIN_EXE_psm"));
    env.args([
        "--data-dir",
        d.to_str().unwrap(),
        "--config",
        c,
        "sessions",
        "list",
    ])
    .env("PSM_STORE", "memory://");
    assert!(env.output().unwrap().status.success());
    let mut flag = std::process::Command::new(env!("CARGO_BIN_EXE_psm"));
    flag.args([
        "--data-dir",
        d.to_str().unwrap(),
        "--store",
        "memory://",
        "sessions",
        "list",
    ])
    .env("PSM_STORE", "mysql://nowhere");
    assert!(flag.output().unwrap().status.success());
    // A misspelt key in the file is named.
    std::fs::write(&config, "stroe = \"memory://\"\n").unwrap();
    let (code, _, err) = parts(&psm(d, &["--config", c, "sessions", "list"], None));
    assert_eq!(code, 7);
    assert!(err.contains("stroe"), "{err}");
}

#[test]
fn configuration_mistakes_exit_7_and_keep_passwords_out_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Redis keeps no accounts: a user command on a Redis session store needs --users.
    let redis = std::env::var("PSM_REDIS_URL").unwrap_or_else(|_| {
        panic!("PSM_REDIS_URL is not set: run through `cargo xtask ci` or `eval \"$(cargo xtask services env)\"`")
    });
    let sep = if redis.contains('?') { '&' } else { '?' };
    let store = format!("{redis}{sep}key_prefix=psmclitest_{}:", std::process::id());
    let (code, _, err) = parts(&psm(d, &["--store", &store, "users", "get", "x"], None));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("keeps no user accounts") && err.contains("--users"),
        "{err}"
    );
    // An unreachable server: unavailable (6), and its password never in the message.
    let (code, _, err) = parts(&psm(
        d,
        &[
            "--store",
            "redis://:hunter2secret@127.0.0.1:1/0",
            "sessions",
            "list",
        ],
        None,
    ));
    assert_eq!(code, 6, "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    let (code, _, err) = parts(&psm(d, &["--store", "not a url", "sessions", "list"], None));
    assert_eq!(code, 7, "{err}");
    let (code, _, err) = parts(&psm(d, &["--log-level", "=[bad", "sessions", "list"], None));
    assert_eq!(code, 7, "{err}");
}

#[test]
fn the_environment_sets_serve_settings_and_a_flag_overrides_it() {
    // `--listen` from the environment: an address in use is named in the error (exit 7).
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut from_env = std::process::Command::new(env!("CARGO_BIN_EXE_psm"));
    from_env
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
        .env("PSM_LISTEN", &addr)
        .env("PSM_LOG_LEVEL", "warn");
    let out = from_env.output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
    // A flag wins: `--request-timeout soon` is refused by clap (2) although the environment's
    // value is fine, and the environment's bad value is refused when no flag overrides it.
    let mut flag = std::process::Command::new(env!("CARGO_BIN_EXE_psm"));
    flag.args([
        "--data-dir",
        dir.path().to_str().unwrap(),
        "serve",
        "--request-timeout",
        "soon",
    ])
    .env("PSM_REQUEST_TIMEOUT", "30s");
    assert_eq!(flag.output().unwrap().status.code(), Some(2));
    let mut env_bad = std::process::Command::new(env!("CARGO_BIN_EXE_psm"));
    env_bad
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            &addr,
        ])
        .env("PSM_BODY_LIMIT", "lots");
    assert_eq!(env_bad.output().unwrap().status.code(), Some(2));
}

#[test]
fn migrate_says_when_there_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = parts(&psm(dir.path(), &["migrate"], None));
    assert_eq!(
        (code, out.trim()),
        (0, "nothing to migrate: no store is on PostgreSQL")
    );
}

#[test]
fn bench_prints_a_table_removes_its_sessions_and_refuses_zero_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, out, err) = parts(&psm(
        d,
        &[
            "--store",
            "memory://",
            "bench",
            "--sessions",
            "200",
            "--ops",
            "500",
            "--concurrency",
            "4",
        ],
        None,
    ));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("psm bench: memory store, 200 sessions, 4 tasks"),
        "{out}"
    );
    assert!(lines[1].starts_with("operation"), "{out}");
    for (line, kind) in
        lines[2..5]
            .iter()
            .zip(["check_permission", "get_permissions", "store_permissions"])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], kind, "{out}");
        assert_eq!(cells[1], "500", "{out}");
        assert!(cells[2].parse::<f64>().unwrap() > 0.0, "{out}");
        assert_eq!(cells[5], "0", "errors: {out}");
    }
    let removed: u64 = lines[5]
        .strip_prefix("(seeding errors: 0; bench sessions removed: ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(removed >= 200, "{out}");

    let (code, _, err) = parts(&psm(
        d,
        &["--store", "memory://", "bench", "--ops", "0"],
        None,
    ));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("at least 1"), "{err}");
}
