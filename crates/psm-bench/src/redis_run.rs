//! psm's Redis provider through the manager against a bare `fred` pool sending the identical command
//! to the same server, on the same Tokio runtimes, in the same rounds: psm's check is
//! `HMGET <session hash> <permission> " e"`, and the bare pool sends exactly that `HMGET` to exactly
//! those hashes (the ones psm wrote), so the ratio measures psm's own overhead and nothing else.
//!
//! Sequential calls run on a current-thread runtime (one task and the connections on one thread,
//! as `redis-benchmark -c 1` is one thread); concurrent calls on a two-worker runtime. Each runtime
//! has its own managers and bare pool, connected to the same data.
//!
//! Everything the run writes lives under one fresh key prefix (`psmbench:<pid>_<random>:`): psm's
//! store under `<prefix>psm:` (the bare pool only reads psm's session hashes). The prefix is removed
//! with `SCAN` + `UNLINK` at the end, also after a failure; nothing else on the server is touched.

use std::{ops::Range, sync::Arc};

use fred::{
    prelude::{Builder, ClientLike, Config, HashesInterface, KeysInterface, Pool},
    types::{InfoKind, Key},
};
use psm::PermissionStorageManager as Manager;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::{
    BenchResult,
    ops::Op,
    psm_run::run_op,
    remote::{
        Figure, SLICES, current_thread, expected_check_hits, fresh_suffix, paired, psm_checks,
        redact, run_tasks, segments, two_workers, with_param,
    },
    workload::{PERMS_PER_SESSION, Workload},
};

/// Concurrent tasks of the concurrent measurement, and of the filling.
pub(crate) const CONCURRENCY: usize = 64;
/// Clients in the bare `fred` pool: psm-redis's default pool size, so both sides have the same
/// number of connections to multiplex their commands over.
pub(crate) const BARE_POOL: usize = psm::redis::DEFAULT_POOL_SIZE;
/// The sessions checked again and again by the client-side-cache measurement: the first positions
/// of the access sequence (half true, half false).
pub(crate) const HOT_SESSIONS: usize = 8;
/// Hot checks run once, untimed, before the first timed round, so the local cache is filled.
const HOT_WARM_UP: usize = 100_000;
/// The ttl of every session (the workload's default ttl).
const TTL: i64 = 3600;
/// psm's expiry field, asked for with every check (the bare pool asks for it too).
const EXPIRY_FIELD: &str = " e";

/// What the Redis part measures.
#[derive(Debug, Clone)]
pub(crate) struct RedisParams {
    /// The server, as `redis://host:port[/db]` with no psm options: psm's URL adds `key_prefix`
    /// (and `client_cache`), the bare pool connects to it as it is.
    pub(crate) url: String,
    /// Checks per measurement, sequential and concurrent alike.
    pub(crate) ops: usize,
    /// Hot checks per measurement of the client-side cache.
    pub(crate) hot_ops: usize,
    pub(crate) rounds: u32,
}

/// The bare side: a `fred` pool, and the key of every position of the access sequence ready to send
/// (cloning a `fred` key only bumps a reference count).
#[derive(Debug)]
struct Bare {
    pool: Pool,
    /// psm's hash of the session at each position of the access sequence.
    read_keys: Arc<Vec<Key>>,
}

impl Bare {
    /// psm's `HMGET <hash> <permission> " e"` for the run positions `range`; returns the `true`
    /// answers (the permission is present).
    async fn checks(&self, w: &Workload, range: Range<usize>) -> BenchResult<u64> {
        let mut hits = 0;
        for segment in segments(range, w.len()) {
            for j in segment {
                // Exactly psm's call: the fields as `&[&str; 2]`, the key a ready `fred` key.
                let fields = [w.pool[w.check[j]].as_str(), EXPIRY_FIELD];
                let (held, _expires): (Option<i64>, Option<i64>) =
                    self.pool.hmget(self.read_keys[j].clone(), &fields).await?;
                hits += u64::from(held.is_some());
            }
        }
        Ok(hits)
    }
}

/// The clients of one runtime: psm's manager, psm's manager with client-side caching, and the bare
/// pool, all on the same data.
#[derive(Debug)]
struct Side {
    m: Manager,
    cached: Manager,
    bare: Arc<Bare>,
}

/// The run's names and the bare side's ready-made keys.
#[derive(Debug)]
struct Target {
    url: String,
    /// psm's URL: the server with `key_prefix`.
    psm_url: String,
    read_keys: Arc<Vec<Key>>,
}

impl Target {
    fn new(w: &Workload, url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            psm_url: with_param(url, "key_prefix", &format!("{prefix}psm:")),
            read_keys: Arc::new(w.order.iter().map(|&s| psm_key(prefix, w, s)).collect()),
        }
    }

    /// Connects the clients of a side on the current runtime.
    async fn connect(&self) -> BenchResult<Side> {
        let build = |url: String| async move {
            Manager::builder()
                .url(url)
                .default_ttl(Some(TTL as u64))
                .build()
                .await
        };
        Ok(Side {
            m: build(self.psm_url.clone()).await?,
            cached: build(with_param(&self.psm_url, "client_cache", "true")).await?,
            bare: Arc::new(Bare {
                pool: connect_pool(&self.url).await?,
                read_keys: Arc::clone(&self.read_keys),
            }),
        })
    }
}

impl Side {
    async fn close(self) -> BenchResult<()> {
        self.cached.close().await?;
        self.m.close().await?;
        // Quitting only closes the connections; nothing depends on it succeeding.
        let _ = self.bare.pool.quit().await;
        Ok(())
    }
}

/// psm's session hash of session `s` (psm-redis' key layout: `<key_prefix>s:{<id>}`).
fn psm_key(prefix: &str, w: &Workload, s: usize) -> Key {
    Key::from(format!("{prefix}psm:s:{{{}}}", w.sessions[s]))
}

/// A bare pool of [`BARE_POOL`] clients on the current runtime.
async fn connect_pool(url: &str) -> BenchResult<Pool> {
    let config = Config::from_url(url)
        .map_err(|e| format!("bad --redis-url (psm-bench wants redis://host:port[/db]): {e}"))?;
    let pool = Builder::from_config(config).build_pool(BARE_POOL)?;
    pool.init().await.map_err(|e| {
        format!(
            "cannot connect to Redis at {} (set PSM_REDIS_URL to a server that answers): {e}",
            redact(url)
        )
    })?;
    Ok(pool)
}

/// The run's figures.
#[derive(Debug, Default)]
struct Figures {
    psm_sequential: Figure,
    bare_sequential: Figure,
    psm_concurrent: Figure,
    bare_concurrent: Figure,
    hot_single: Figure,
    hot_threads2: Figure,
}

/// Fills the server, measures every round and removes what it wrote; returns the JSON figures.
/// Wrong answers are added to `problems`.
pub(crate) fn run(
    w: &Arc<Workload>,
    p: &RedisParams,
    problems: &mut Vec<String>,
) -> BenchResult<Value> {
    let multi = two_workers()?;
    let single = current_thread()?;
    let prefix = format!("psmbench:{}:", fresh_suffix());
    let admin = multi.block_on(connect_pool(&p.url))?;
    let info: String = multi.block_on(admin.next().info(Some(InfoKind::Server)))?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map_or_else(
            || "Redis (version unknown)".to_owned(),
            |v| format!("Redis {}", v.trim()),
        );
    let measured = measure(w, p, &prefix, &admin, [&single, &multi], problems);
    let removed = multi.block_on(remove_prefix(&admin, &prefix));
    let left = multi.block_on(count_prefix(&admin, &prefix));
    let _ = multi.block_on(admin.quit());
    let mut out = measured?;
    let left = left?;
    if left > 0 {
        problems.push(format!(
            "redis: {left} keys left under {prefix} after cleanup"
        ));
    }
    out["cleanup"] = json!({ "prefix": prefix, "keys_removed": removed? });
    out["server"] = Value::from(version);
    Ok(out)
}

/// Fills both sides through `admin`'s runtime (`multi`), then runs the interleaved rounds:
/// sequential ones on `single`, concurrent ones on `multi`.
fn measure(
    w: &Arc<Workload>,
    p: &RedisParams,
    prefix: &str,
    admin: &Pool,
    [single, multi]: [&Runtime; 2],
    problems: &mut Vec<String>,
) -> BenchResult<Value> {
    let n = w.len();
    let target = Target::new(w, &p.url, prefix);
    let ms = multi.block_on(target.connect())?;

    // Filling: psm through `store_permissions`; the bare pool reads the same hashes.
    eprintln!("psm-bench: redis: storing {n} sessions through psm");
    let (fill, stored) = multi.block_on(run_tasks(0..n, CONCURRENCY, |range| {
        let (m, w) = (ms.m.clone(), Arc::clone(w));
        async move { Ok(run_op(&m, &w, Op::Store, range).await?) }
    }))?;
    if stored != n as u64 {
        problems.push(format!(
            "redis psm fill: {stored} of {n} stores answered true"
        ));
    }
    let psm_fill_rate = n as f64 / fill.as_secs_f64().max(1e-9);
    // The bare side must find every hash psm wrote, with the layout its HMGET reads.
    let probe = Key::from(format!("{prefix}psm:s:{{{}}}", w.sessions[0]));
    let fields: u64 = multi.block_on(admin.next().hlen(probe))?;
    if fields < PERMS_PER_SESSION as u64 {
        problems.push(format!(
            "redis: psm's session hash holds {fields} fields, expected at least {PERMS_PER_SESSION} permissions (the bare pool reads psm's key layout)"
        ));
    }

    let ss = single.block_on(target.connect())?;
    let hot_ops = p.hot_ops.max(HOT_SESSIONS);
    eprintln!("psm-bench: redis: warming the client-side caches on {HOT_SESSIONS} sessions");
    let warm_up = 0..HOT_WARM_UP.min(hot_ops);
    single.block_on(psm_checks(&ss.cached, w, warm_up.clone(), HOT_SESSIONS))?;
    multi.block_on(psm_checks(&ms.cached, w, warm_up, HOT_SESSIONS))?;

    let mut f = Figures::default();
    let ops = p.ops;
    let expected = expected_check_hits(0..ops, n);
    let hot_expected = expected_check_hits(0..hot_ops, HOT_SESSIONS);
    for round in 1..=p.rounds {
        eprintln!(
            "psm-bench: redis round {round}: {ops} checks by psm and by the bare pool, alternating in {SLICES} slices, from 1 task and from {CONCURRENCY}; {hot_ops} hot checks with the client-side cache"
        );
        for (rt, side, tasks, psm_fig, bare_fig) in [
            (
                single,
                &ss,
                1,
                &mut f.psm_sequential,
                &mut f.bare_sequential,
            ),
            (
                multi,
                &ms,
                CONCURRENCY,
                &mut f.psm_concurrent,
                &mut f.bare_concurrent,
            ),
        ] {
            let [psm_side, bare_side] = rt.block_on(paired(
                ops,
                tasks,
                |range| {
                    let (m, w) = (side.m.clone(), Arc::clone(w));
                    async move { Ok(psm_checks(&m, &w, range, w.len()).await?) }
                },
                |range| {
                    let (bare, w) = (Arc::clone(&side.bare), Arc::clone(w));
                    async move { bare.checks(&w, range).await }
                },
            ))?;
            psm_fig.record_side(ops, psm_side, expected);
            bare_fig.record_side(ops, bare_side, expected);
        }
        for (rt, side, tasks, fig) in [
            (single, &ss, 1, &mut f.hot_single),
            (multi, &ms, 2, &mut f.hot_threads2),
        ] {
            let (elapsed, hits) = rt.block_on(run_tasks(0..hot_ops, tasks, |range| {
                let (m, w) = (side.cached.clone(), Arc::clone(w));
                async move { Ok(psm_checks(&m, &w, range, HOT_SESSIONS).await?) }
            }))?;
            fig.record(hot_ops, elapsed, hits, hot_expected);
        }
    }
    single.block_on(ss.close())?;
    multi.block_on(ms.close())?;

    f.psm_sequential.verify("redis psm sequential", problems);
    f.bare_sequential.verify("redis bare sequential", problems);
    f.psm_concurrent.verify("redis psm concurrent", problems);
    f.bare_concurrent.verify("redis bare concurrent", problems);
    f.hot_single
        .verify("redis psm cached hot, single task", problems);
    f.hot_threads2
        .verify("redis psm cached hot, 2 tasks", problems);
    Ok(json!({
        "url": redact(&p.url),
        "sessions": n,
        "ops": ops,
        "hot_ops": hot_ops,
        "hot_sessions": HOT_SESSIONS,
        "concurrency": CONCURRENCY,
        "bare_pool": BARE_POOL,
        "rounds": p.rounds,
        "psm_store_concurrent": psm_fill_rate,
        "psm": {
            "sequential": f.psm_sequential.to_json(),
            "concurrent": f.psm_concurrent.to_json(),
        },
        "bare": {
            "sequential": f.bare_sequential.to_json(),
            "concurrent": f.bare_concurrent.to_json(),
        },
        "cached": {
            "hot_single": f.hot_single.to_json(),
            "hot_threads2": f.hot_threads2.to_json(),
        },
    }))
}

/// `SCAN` pages of `pattern`, handing each page's keys to `page`.
async fn scan_prefix(
    pool: &Pool,
    prefix: &str,
    mut page: impl AsyncFnMut(Vec<Key>) -> BenchResult<()>,
) -> BenchResult<()> {
    let pattern = format!("{prefix}*");
    let client = pool.next();
    let mut cursor = "0".to_owned();
    loop {
        let (next, keys): (String, Vec<Key>) = client
            .scan_page(cursor, pattern.as_str(), Some(1_000), None)
            .await?;
        if !keys.is_empty() {
            page(keys).await?;
        }
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// Removes every key under `prefix` (`SCAN` + `UNLINK`); returns how many.
async fn remove_prefix(pool: &Pool, prefix: &str) -> BenchResult<u64> {
    let mut removed = 0_u64;
    scan_prefix(pool, prefix, async |keys| {
        let n: u64 = pool.next().unlink(keys).await?;
        removed += n;
        Ok(())
    })
    .await?;
    Ok(removed)
}

/// How many keys are under `prefix`.
async fn count_prefix(pool: &Pool, prefix: &str) -> BenchResult<u64> {
    let mut count = 0_u64;
    scan_prefix(pool, prefix, async |keys| {
        count += keys.len() as u64;
        Ok(())
    })
    .await?;
    Ok(count)
}
