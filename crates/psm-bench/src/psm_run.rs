//! psm's memory provider through the manager: single task, two worker threads, and `psm::blocking`.

use std::{ops::Range, sync::Arc, thread, time::Instant};

use psm::PermissionStorageManager as Manager;
use serde_json::json;

use crate::{
    BenchResult, alloc,
    ops::{Op, OpResults},
    workload::{LIST_LIMIT, Workload},
};

/// The manager's default ttl: one hour, so every session has an expiry as in the Python original.
const DEFAULT_TTL: u64 = 3600;

/// The memory provider with no quota (`max_sessions` absent) and the default sweeper.
fn builder() -> psm::ManagerBuilder {
    Manager::builder()
        .provider("memory")
        .config(json!({}))
        .default_ttl(Some(DEFAULT_TTL))
}

/// Runs `op` for the positions in `range` of its access sequence; returns the answers' tally. Any
/// manager will do: the file provider's runs use it too.
pub(crate) async fn run_op(
    m: &Manager,
    w: &Workload,
    op: Op,
    range: Range<usize>,
) -> psm::Result<u64> {
    let mut hits = 0_u64;
    if op == Op::ListUser {
        for &u in &w.user_order[range] {
            hits += m
                .list_sessions(Some(&w.users[u]), LIST_LIMIT, 0)
                .await?
                .len() as u64;
        }
        return Ok(hits);
    }
    for k in range {
        let s = if op == Op::Store {
            w.insert_order[k]
        } else {
            w.order[k]
        };
        let id = if op == Op::Store {
            w.sessions[s].as_str()
        } else {
            w.read_ids[k].as_str()
        };
        hits += match op {
            Op::Store => u64::from(
                m.store_permissions(id, &w.users[w.owner[s]], w.perms_of(s), None, None)
                    .await?,
            ),
            Op::Check => u64::from(m.check_permission(id, &w.pool[w.check[k]]).await?),
            Op::Check5 => m
                .check_permissions(id, w.check5_at(k))
                .await?
                .granted()
                .count() as u64,
            Op::Get => u64::from(m.get_permissions(id).await?.is_some()),
            Op::Invalidate => u64::from(m.invalidate_session(id).await?),
            Op::ListUser => 0,
        };
    }
    Ok(hits)
}

/// One task on a current-thread runtime awaiting each call; each round starts from an empty store.
pub(crate) fn single(w: &Workload, rounds: u32) -> BenchResult<OpResults> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut results = OpResults::default();
        for _ in 0..rounds {
            let m = builder().build().await?;
            for op in Op::ALL {
                let calls = op.calls(w);
                let start = Instant::now();
                let hits = run_op(&m, w, op, 0..calls).await?;
                results.record(op, calls, start.elapsed(), hits);
            }
            m.close().await?;
        }
        Ok(results)
    })
}

/// A two-worker runtime with the sequence split across two tasks.
pub(crate) fn threads2(w: &Arc<Workload>, rounds: u32) -> BenchResult<OpResults> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut results = OpResults::default();
        for _ in 0..rounds {
            let m = builder().build().await?;
            for op in Op::ALL {
                let calls = op.calls(w);
                let mid = calls / 2;
                let start = Instant::now();
                let halves = [0..mid, mid..calls].map(|range| {
                    let (m, w) = (m.clone(), Arc::clone(w));
                    tokio::spawn(async move { run_op(&m, &w, op, range).await })
                });
                let mut hits = 0;
                for half in halves {
                    hits += half.await??;
                }
                results.record(op, calls, start.elapsed(), hits);
            }
            m.close().await?;
        }
        Ok(results)
    })
}

/// `check_permission` through `psm::blocking` from one plain thread and from two.
#[derive(Debug, Default)]
pub(crate) struct Blocking {
    pub(crate) single: OpResults,
    pub(crate) threads2: OpResults,
}

/// Fills a blocking manager once, then times the checks from plain threads.
pub(crate) fn blocking(w: &Workload, rounds: u32) -> BenchResult<Blocking> {
    let m = psm::blocking::PermissionStorageManager::from_builder(builder())?;
    for &s in &w.insert_order {
        m.store_permissions(
            &w.sessions[s],
            &w.users[w.owner[s]],
            w.perms_of(s),
            None,
            None,
        )?;
    }
    let check = |range: Range<usize>| -> psm::Result<u64> {
        let mut hits = 0;
        for k in range {
            hits += u64::from(m.check_permission(&w.read_ids[k], &w.pool[w.check[k]])?);
        }
        Ok(hits)
    };
    let mut out = Blocking::default();
    let calls = w.len();
    for _ in 0..rounds {
        let start = Instant::now();
        let hits = check(0..calls)?;
        out.single.record(Op::Check, calls, start.elapsed(), hits);

        let mid = calls / 2;
        let start = Instant::now();
        let hits = thread::scope(|scope| -> psm::Result<u64> {
            let a = scope.spawn(|| check(0..mid));
            let b = check(mid..calls)?;
            let a = a
                .join()
                .map_err(|_| psm::Error::provider("a benchmark thread panicked"))??;
            Ok(a + b)
        })?;
        out.threads2.record(Op::Check, calls, start.elapsed(), hits);
    }
    m.close()?;
    Ok(out)
}

/// Heap bytes the filled store holds per session: the manager built and filled under the counting
/// allocator, on a runtime that exists before counting starts.
pub(crate) fn bytes_per_session(w: &Workload) -> BenchResult<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (filled, bytes) = alloc::measure(|| {
        rt.block_on(async {
            let m = builder().build().await?;
            run_op(&m, w, Op::Store, 0..w.len()).await?;
            Ok::<_, psm::Error>(m)
        })
    });
    // Dropped only after the measurement: the store's memory is what was counted.
    drop(filled?);
    Ok(bytes as f64 / w.len() as f64)
}
