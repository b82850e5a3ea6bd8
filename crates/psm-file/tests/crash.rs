//! Crash safety under `kill -9`, and the directory lock across processes.
//!
//! This test binary has its own `main` (no libtest harness) so it can run itself as the child:
//! `crash child <dir> <seed>` opens the store and runs concurrent writers, printing one line per
//! acknowledged write; the parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged write is there, nothing deleted came back and nothing is
//! corrupt. Each writer task owns its ids and follows a sequence derived from the seed, so the
//! parent knows every write the child made or was making.

// A test binary: a failed expectation should stop it with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    env,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::Duration,
};

use psm_core::{NewSession, PermissionList, PermissionStore, SessionIdRef, UserId};
use psm_file::{FileConfig, FileStorage};

const ROUNDS: u64 = 24;
const TASKS: u64 = 16;
const IDS_PER_TASK: u64 = 6;

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let (Some(dir), Some(seed)) = (args.get(2), args.get(3).and_then(|s| s.parse().ok()))
        else {
            eprintln!("usage: crash child <dir> <seed>");
            std::process::exit(2);
        };
        child(Path::new(dir), seed);
        return;
    }
    if args.get(1).map(String::as_str) == Some("hold") {
        if let Some(dir) = args.get(2) {
            hold(Path::new(dir));
        }
        return;
    }
    // `cargo test` may pass libtest flags and filters; this binary has two checks and always
    // runs both, reporting in libtest's words so tools counting results see them.
    lock_is_held_across_processes();
    eprintln!("test lock_is_held_across_processes ... ok");
    acknowledged_writes_survive_kill_9();
    eprintln!("test acknowledged_writes_survive_kill_9 ... ok");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
    );
}

/// One write of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Store `id` with permissions `[version, "read"]`.
    Store(u64, String),
    /// Replace the permissions of `id` with `[version, "updated"]` if it exists.
    Update(u64, String),
    /// Invalidate `id`.
    Delete(u64),
}

/// What the parent expects of one id: its permissions, or absent.
type State = Option<Vec<String>>;

/// splitmix64: a tiny deterministic generator both processes run with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The `k`-th write of `task` in round `seed` (the same in both processes).
fn op(seed: u64, task: u64, k: u64) -> Op {
    let mut r = Rng(seed ^ (task << 32) ^ k.wrapping_mul(0x1000_0001));
    let id = r.next() % IDS_PER_TASK;
    let version = format!("v:{seed}:{task}:{k}");
    match r.next() % 10 {
        0..=5 => Op::Store(id, version),
        6..=7 => Op::Update(id, version),
        _ => Op::Delete(id),
    }
}

fn session_id(task: u64, id: u64) -> String {
    format!("t{task}_s{id}")
}

fn apply(state: &State, op: &Op) -> State {
    match op {
        Op::Store(_, v) => Some(vec![v.clone(), "read".into()]),
        Op::Update(_, v) => state.as_ref().map(|_| vec![v.clone(), "updated".into()]),
        Op::Delete(_) => None,
    }
}

fn op_id(op: &Op) -> u64 {
    match op {
        Op::Store(id, _) | Op::Update(id, _) | Op::Delete(id) => *id,
    }
}

fn config(dir: &Path) -> FileConfig {
    FileConfig {
        // Compact (and back up) often, so kills also land in the middle of compactions.
        compact_min_bytes: 32 << 10,
        max_backup_files: 2,
        ..FileConfig::new(dir)
    }
}

fn child(dir: &Path, seed: u64) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    rt.block_on(async move {
        let storage = match FileStorage::open(config(dir)) {
            Ok(s) => s,
            Err(e) => panic!("child open: {e}"),
        };
        let store = storage.sessions();
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        report(&out, "ready");
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                let out = Arc::clone(&out);
                tokio::spawn(async move {
                    for k in 0.. {
                        run_op(&store, task, &op(seed, task, k)).await;
                        report(&out, &format!("{task} {k}"));
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

async fn run_op(store: &psm_file::FileStore, task: u64, op: &Op) {
    let sid = session_id(task, op_id(op));
    let id = match SessionIdRef::parse(&sid) {
        Ok(id) => id,
        Err(e) => panic!("{e}"),
    };
    let result = match op {
        Op::Store(_, v) => {
            let perms = PermissionList::parse([v.as_str(), "read"]);
            let user = UserId::parse(&format!("user{task}"));
            match (perms, user) {
                (Ok(p), Ok(u)) => store.store_permissions(id, NewSession::new(u, p)).await,
                _ => panic!("bad test data"),
            }
        }
        Op::Update(_, v) => match PermissionList::parse([v.as_str(), "updated"]) {
            Ok(p) => store.update_permissions(id, p, None).await.map(|_| ()),
            Err(e) => panic!("{e}"),
        },
        Op::Delete(_) => store.invalidate_session(id).await.map(|_| ()),
    };
    if let Err(e) = result {
        // A failed write must fail the test, not just stop one task: exit with a code the parent
        // tells apart from its own SIGKILL.
        eprintln!("child write failed: {e}");
        std::process::exit(3);
    }
}

fn report(out: &std::sync::Mutex<std::io::Stdout>, line: &str) {
    if let Ok(out) = out.lock() {
        let mut out = out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn hold(dir: &Path) {
    let storage = FileStorage::open(FileConfig::new(dir));
    match storage {
        Ok(_s) => {
            println_ready();
            // Hold the lock until killed.
            loop {
                thread::sleep(Duration::from_secs(60));
            }
        }
        Err(e) => panic!("hold: {e}"),
    }
}

fn println_ready() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

fn spawn_self(args: &[&str]) -> std::process::Child {
    let exe = env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child")
}

fn wait_ready(lines: &mut impl Iterator<Item = std::io::Result<String>>) {
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => panic!("the child did not start: {other:?}"),
    }
}

fn lock_is_held_across_processes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 temp path");
    let mut child = spawn_self(&["hold", dir]);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    wait_ready(&mut lines);
    let e = FileStorage::open(FileConfig::new(tmp.path())).expect_err("the child holds the lock");
    assert_eq!(e.kind(), psm_core::ErrorKind::Concurrency);
    assert!(
        e.message().contains(&format!("pid {}", child.id())),
        "the error names the holder: {e}"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The kernel releases the lock with the dead process.
    let s = FileStorage::open(FileConfig::new(tmp.path())).expect("open after the holder died");
    assert!(s.is_open());
}

fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("store");
    let mut model: BTreeMap<(u64, u64), State> = BTreeMap::new();
    let mut rng = Rng(0x5EED);
    let mut total_acks = 0u64;
    let mut torn_rounds = 0u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for round in 0..ROUNDS {
        let seed = 1000 + round;
        let mut child = spawn_self(&["child", dir.to_str().expect("utf-8"), &seed.to_string()]);
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.is_empty() {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        // Once it has opened the store, let it write for a random while, then SIGKILL.
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child opened the store");
        thread::sleep(Duration::from_millis(5 + rng.next() % 250));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "round {round}: the child ended by itself ({status}), a write must have failed"
            );
        }
        let lines = reader.join().expect("reader");
        assert_eq!(
            lines.first().map(String::as_str),
            Some("ready"),
            "round {round}"
        );
        // acked[task] = number of acknowledged writes of the task.
        let mut acked = [0u64; TASKS as usize];
        for l in &lines[1..] {
            let mut parts = l.split(' ');
            let (Some(Ok(task)), Some(Ok(k))) = (
                parts.next().map(str::parse::<u64>),
                parts.next().map(str::parse::<u64>),
            ) else {
                continue; // a line cut by the kill was never a whole report
            };
            acked[task as usize] = acked[task as usize].max(k + 1);
        }
        total_acks += acked.iter().sum::<u64>();

        // What each id must be: the state after the acknowledged writes, or after the one
        // write of its task that was in flight when the kill came.
        let mut allowed: BTreeMap<(u64, u64), (State, State)> = BTreeMap::new();
        for task in 0..TASKS {
            for id in 0..IDS_PER_TASK {
                let s = model.get(&(task, id)).cloned().flatten();
                allowed.insert((task, id), (s.clone(), s));
            }
            for k in 0..acked[task as usize] {
                let o = op(seed, task, k);
                let entry = allowed.get_mut(&(task, op_id(&o))).expect("known id");
                let next = apply(&entry.0, &o);
                *entry = (next.clone(), next);
            }
            let in_flight = op(seed, task, acked[task as usize]);
            let entry = allowed
                .get_mut(&(task, op_id(&in_flight)))
                .expect("known id");
            entry.1 = apply(&entry.0, &in_flight);
        }

        let storage = FileStorage::open(config(&dir)).expect("reopen after kill -9");
        torn_rounds += u64::from(!storage.damage().is_empty());
        for d in storage.damage() {
            assert!(
                d.reason.contains("tail") || d.reason.contains("torn"),
                "round {round}: only a torn tail may be damaged after a kill: {d:?}"
            );
        }
        let store = storage.sessions();
        let listed = rt.block_on(async {
            store
                .list_sessions(None, psm_core::Page::new(10_000, 0).expect("page"))
                .await
                .expect("list")
        });
        for ((task, id), (acked_state, in_flight_state)) in &allowed {
            let sid = session_id(*task, *id);
            let got = store
                .get_permissions_now(SessionIdRef::parse(&sid).expect("id"))
                .expect("read");
            let got: State = got.map(|d| d.permissions.to_strings());
            assert!(
                got == *acked_state || got == *in_flight_state,
                "round {round}: {sid} is {got:?}; acknowledged {acked_state:?}, in flight {in_flight_state:?}"
            );
            model.insert((*task, *id), got);
        }
        // Listing shows exactly the sessions that are there: nothing unknown, nothing missing.
        let listed: std::collections::BTreeSet<String> =
            listed.iter().map(|id| id.as_str().to_owned()).collect();
        let present: std::collections::BTreeSet<String> = model
            .iter()
            .filter(|(_, state)| state.is_some())
            .map(|((task, id), _)| session_id(*task, *id))
            .collect();
        assert_eq!(
            listed, present,
            "round {round}: listing disagrees with reads"
        );
        if round + 1 == ROUNDS {
            // Compactions (each with a backup) ran while the children were being killed.
            assert!(
                !storage.list_backups().expect("backups").is_empty(),
                "no compaction happened in {ROUNDS} rounds"
            );
        }
        storage.close();
    }
    assert!(
        total_acks > ROUNDS * TASKS,
        "the children acknowledged only {total_acks} writes in {ROUNDS} rounds"
    );
    eprintln!(
        "{ROUNDS} kill -9 rounds, {total_acks} acknowledged writes checked, \
         {torn_rounds} rounds reopened a torn tail"
    );
}
