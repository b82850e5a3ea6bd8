//! The bare baseline: `std::sync::RwLock<HashMap<String, Vec<String>>>` on the same data, driven by
//! one or two plain threads. It has no per-user index, so it has no `list_sessions` figure.

use std::{collections::HashMap, ops::Range, sync::RwLock, thread, time::Instant};

use crate::{
    BenchResult, alloc,
    ops::{Op, OpResults},
    workload::{PERMS_PER_SESSION, Workload},
};

type Map = RwLock<HashMap<String, Vec<String>>>;

/// The baseline's operations, in round order.
const OPS: [Op; 5] = [Op::Store, Op::Check, Op::Check5, Op::Get, Op::Invalidate];

/// Runs `op` for the positions in `range` of the access sequence; returns the answers' tally.
///
/// A poisoned lock (a panic in another benchmark thread) still holds consistent data for a read-only
/// benchmark, so the guard is recovered rather than turned into a panic here.
fn run_op(map: &Map, w: &Workload, op: Op, range: Range<usize>) -> u64 {
    let read = || {
        map.read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let write = || {
        map.write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut hits = 0_u64;
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
            Op::Store => {
                // Owned copies, as a store must keep: the same work psm's store does with its input.
                let perms: Vec<String> = w.perms_of(s).map(str::to_owned).collect();
                write().insert(id.to_owned(), perms);
                1
            }
            Op::Check => {
                let asked = w.pool[w.check[k]].as_str();
                u64::from(
                    read()
                        .get(id)
                        .is_some_and(|perms| perms.iter().any(|p| p == asked)),
                )
            }
            Op::Check5 => {
                let guard = read();
                let held = guard.get(id);
                let mut answers = [false; PERMS_PER_SESSION];
                for (answer, asked) in answers.iter_mut().zip(w.check5_at(k)) {
                    *answer = held.is_some_and(|perms| perms.iter().any(|p| p == asked));
                }
                answers.iter().filter(|&&a| a).count() as u64
            }
            Op::Get => u64::from(read().get(id).cloned().is_some()),
            Op::Invalidate => u64::from(write().remove(id).is_some()),
            Op::ListUser => 0,
        };
    }
    hits
}

/// One plain thread; each round starts from an empty map.
pub(crate) fn single(w: &Workload, rounds: u32) -> OpResults {
    let mut results = OpResults::default();
    for _ in 0..rounds {
        let map = Map::default();
        for op in OPS {
            let calls = op.calls(w);
            let start = Instant::now();
            let hits = run_op(&map, w, op, 0..calls);
            results.record(op, calls, start.elapsed(), std::hint::black_box(hits));
        }
    }
    results
}

/// Two plain threads, the sequence split in two.
pub(crate) fn threads2(w: &Workload, rounds: u32) -> BenchResult<OpResults> {
    let mut results = OpResults::default();
    for _ in 0..rounds {
        let map = Map::default();
        for op in OPS {
            let calls = op.calls(w);
            let mid = calls / 2;
            let start = Instant::now();
            let hits = thread::scope(|scope| {
                let a = scope.spawn(|| run_op(&map, w, op, 0..mid));
                let b = run_op(&map, w, op, mid..calls);
                a.join().map(|a| a + b)
            })
            .map_err(|_| "a baseline thread panicked")?;
            results.record(op, calls, start.elapsed(), std::hint::black_box(hits));
        }
    }
    Ok(results)
}

/// Heap bytes per session of the filled map.
pub(crate) fn bytes_per_session(w: &Workload) -> f64 {
    let (map, bytes) = alloc::measure(|| {
        let map = Map::default();
        run_op(&map, w, Op::Store, 0..w.len());
        map
    });
    drop(map);
    bytes as f64 / w.len() as f64
}
