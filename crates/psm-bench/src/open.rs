//! Opening a large file store: built once through the public API by many concurrent durable
//! writers, closed, then opened (rebuilding the in-memory index from disk) and timed.

use std::{path::Path, sync::Arc, time::Instant};

use psm::{PermissionRef, PermissionStorageManager as Manager, SessionIdRef};
use psm_file::{FileConfig, FileStorage};
use serde_json::{Value, json};

use crate::{
    BenchResult,
    file_run::fresh_dir,
    workload::{PERMS_PER_SESSION, SESSIONS_PER_USER, SplitMix64},
};

/// Concurrent writers that build the store: more writers share each fsync, so building is faster.
const BUILD_WRITERS: usize = 256;
/// Sessions live a day, so none expires between building and opening.
const TTL: u64 = 86_400;
/// Sessions whose permissions are checked after every open.
const SPOT_CHECKS: usize = 1_000;
/// The permission pool: the workload's 50 resources times four actions.
const POOL: usize = 200;
/// A stride coprime with the pool, so five steps from any start give five distinct permissions.
const STRIDE: usize = 41;

/// The sessions of the large store: ids, users and pool offsets computed from the index, so
/// nothing but the ids is kept in memory.
#[derive(Debug)]
struct Sessions {
    ids: Vec<String>,
    users: usize,
    first: Vec<u8>,
    pool: Vec<String>,
}

impl Sessions {
    fn generate(n: usize, seed: u64) -> Self {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = SplitMix64(seed ^ 0x6f70_656e);
        let ids = (0..n)
            .map(|i| {
                // Four characters spell the index (24 bits), so ids are distinct; eighteen are random.
                let mut id = String::with_capacity(30);
                id.push_str("session_");
                for shift in [18, 12, 6, 0] {
                    id.push(char::from(ALPHABET[(i >> shift) & 63]));
                }
                let (mut a, mut b) = (rng.next(), rng.next());
                for _ in 0..9 {
                    id.push(char::from(ALPHABET[(a & 63) as usize]));
                    id.push(char::from(ALPHABET[(b & 63) as usize]));
                    a >>= 6;
                    b >>= 6;
                }
                id
            })
            .collect();
        let first = (0..n).map(|_| (rng.next() % POOL as u64) as u8).collect();
        let pool = (0..POOL / 4)
            .flat_map(|r| ["read", "write", "admin", "delete"].map(|a| format!("res{r}:{a}")))
            .collect();
        Self {
            ids,
            users: (n / SESSIONS_PER_USER).max(1),
            first,
            pool,
        }
    }

    fn perm(&self, i: usize, j: usize) -> &str {
        &self.pool[(usize::from(self.first[i]) + j * STRIDE) % POOL]
    }

    fn user(&self, i: usize) -> String {
        format!("user_{:06}", i % self.users)
    }
}

/// Builds a store of `n` sessions, then opens it `opens` times; returns the figures and what the
/// checks after each open found wrong.
pub(crate) fn large_store(
    file_dir: &Path,
    n: usize,
    opens: u32,
    seed: u64,
    problems: &mut Vec<String>,
) -> BenchResult<Value> {
    let sessions = Arc::new(Sessions::generate(n, seed));
    let dir = fresh_dir(file_dir, "open-")?;
    let config = FileConfig::new(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let build_started = Instant::now();
    {
        let storage = FileStorage::open(config.clone())?;
        let m = rt.block_on(Manager::from_store(storage.sessions()))?;
        let writers = BUILD_WRITERS.min(n);
        let stored = rt.block_on(async {
            let tasks: Vec<_> = (0..writers)
                .map(|t| {
                    let (m, s) = (m.clone(), Arc::clone(&sessions));
                    tokio::spawn(async move {
                        let mut stored = 0_u64;
                        for i in (n * t / writers)..(n * (t + 1) / writers) {
                            let perms = (0..PERMS_PER_SESSION).map(|j| s.perm(i, j));
                            stored += u64::from(
                                m.store_permissions(&s.ids[i], &s.user(i), perms, Some(TTL), None)
                                    .await?,
                            );
                        }
                        Ok::<_, psm::Error>(stored)
                    })
                })
                .collect();
            let mut stored = 0;
            for task in tasks {
                stored += task.await??;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(stored)
        })?;
        rt.block_on(m.close())?;
        storage.close();
        if stored != n as u64 {
            problems.push(format!("large store: {stored} of {n} stores answered true"));
        }
    }
    let build_secs = build_started.elapsed().as_secs_f64();
    drop(rt);

    let mut open_secs = Vec::new();
    let mut disk_bytes = 0;
    for round in 1..=opens {
        eprintln!("psm-bench: opening the store of {n} sessions ({round} of {opens})");
        let start = Instant::now();
        let storage = FileStorage::open(config.clone())?;
        open_secs.push(start.elapsed().as_secs_f64());
        let stats = storage.storage_stats()?;
        disk_bytes = stats.total_size_bytes;
        if stats.active_sessions != n as u64 {
            problems.push(format!(
                "large store: open {round} found {} sessions, expected {n}",
                stats.active_sessions
            ));
        }
        if !storage.damage().is_empty() {
            problems.push(format!(
                "large store: open {round} skipped {} damaged records",
                storage.damage().len()
            ));
        }
        spot_check(&storage, &sessions, round, problems)?;
        storage.close();
    }
    let best = open_secs.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(json!({
        "sessions": n,
        "build_writers": BUILD_WRITERS.min(n),
        "build_secs": build_secs,
        "build_rate": n as f64 / build_secs.max(1e-9),
        "open_secs": open_secs,
        "best_open_secs": if best.is_finite() { Value::from(best) } else { Value::Null },
        "disk_bytes": disk_bytes,
    }))
}

/// Every `n / SPOT_CHECKS`-th session holds its five permissions and not the next one.
fn spot_check(
    storage: &FileStorage,
    s: &Sessions,
    round: u32,
    problems: &mut Vec<String>,
) -> BenchResult<()> {
    let store = storage.sessions();
    let step = (s.ids.len() / SPOT_CHECKS).max(1);
    let mut wrong = 0;
    for i in (0..s.ids.len()).step_by(step) {
        let id = SessionIdRef::parse(&s.ids[i])?;
        for j in 0..=PERMS_PER_SESSION {
            let held = j < PERMS_PER_SESSION;
            if store.check_permission_now(id, PermissionRef::parse(s.perm(i, j))?)? != held {
                wrong += 1;
            }
        }
    }
    if wrong > 0 {
        problems.push(format!(
            "large store: open {round}: {wrong} spot checks answered wrong"
        ));
    }
    Ok(())
}
