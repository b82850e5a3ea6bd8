//! What the Redis and PostgreSQL runs share: fresh names for what a run creates, checks cycling over
//! the access sequence, calls split among concurrent tasks, and best-of-rounds figures.
//!
//! A server-backed run checks more times than it has sessions (a round trip costs tens of
//! microseconds, so a measurement needs tens of thousands of calls, while filling the server takes
//! time of its own): position `k` of a run asks what position `k % sessions` of the workload's
//! access sequence asks, so half of any run's checks are still for a permission the session holds.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    ops::Range,
    time::{Duration, Instant},
};

use psm::PermissionStorageManager as Manager;
use serde_json::{Value, json};

use crate::{BenchResult, ops::Op, psm_run::run_op, workload::Workload};

/// A current-thread runtime: the sequential measurements' (one task and the connections it awaits
/// on one thread, as `redis-benchmark -c 1` and `pgbench -c 1` are one thread).
pub(crate) fn current_thread() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A two-worker runtime: the concurrent measurements' (one worker per core).
pub(crate) fn two_workers() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A suffix no other run picks: the process id and 64 bits from the standard library's per-process
/// random hasher keys (the bench has no random-number crate, and the wall clock is banned).
pub(crate) fn fresh_suffix() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{}_{:016x}", std::process::id(), hasher.finish())
}

/// The workload positions behind the run positions `range` (which may pass the end of the access
/// sequence any number of times), as contiguous ranges of `0..n`.
pub(crate) fn segments(range: Range<usize>, n: usize) -> impl Iterator<Item = Range<usize>> {
    let mut at = range.start;
    let end = range.end;
    std::iter::from_fn(move || {
        if at >= end || n == 0 {
            return None;
        }
        let from = at % n;
        let len = (n - from).min(end - at);
        at += len;
        Some(from..from + len)
    })
}

/// How many of the checks at run positions `range` must answer `true`: the even workload positions.
pub(crate) fn expected_check_hits(range: Range<usize>, n: usize) -> u64 {
    segments(range, n)
        .map(|s| (s.end.div_ceil(2) - s.start.div_ceil(2)) as u64)
        .sum()
}

/// The run positions `range` split into `tasks` contiguous ranges (none empty unless the range is
/// shorter than `tasks`).
pub(crate) fn split(range: Range<usize>, tasks: usize) -> Vec<Range<usize>> {
    let tasks = tasks.max(1);
    let (from, len) = (range.start, range.len());
    (0..tasks)
        .map(|i| from + len * i / tasks..from + len * (i + 1) / tasks)
        .collect()
}

/// Runs the positions `range` split among `tasks` spawned Tokio tasks, each awaiting its own calls
/// one by one; returns the elapsed time and the sum of their tallies.
pub(crate) async fn run_tasks<F, Fut>(
    range: Range<usize>,
    tasks: usize,
    task: F,
) -> BenchResult<(Duration, u64)>
where
    F: Fn(Range<usize>) -> Fut,
    Fut: Future<Output = BenchResult<u64>> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = split(range, tasks)
        .into_iter()
        .map(|range| tokio::spawn(task(range)))
        .collect();
    let mut hits = 0;
    for handle in handles {
        hits += handle.await??;
    }
    Ok((start.elapsed(), hits))
}

/// Each paired measurement alternates its two sides in this many slices.
pub(crate) const SLICES: usize = 10;

/// The run positions `0..calls` measured on side `a` and on side `b`, alternating in [`SLICES`]
/// slices (`a` first in even slices, `b` in odd ones) so both sides see the same machine load: on
/// a shared VM throughput drifts by tens of percent within seconds. Each slice runs as
/// [`run_tasks`] with `tasks` tasks. Returns each side's total time and tally.
pub(crate) async fn paired<A, FA, B, FB>(
    calls: usize,
    tasks: usize,
    a: A,
    b: B,
) -> BenchResult<[(Duration, u64); 2]>
where
    A: Fn(Range<usize>) -> FA,
    FA: Future<Output = BenchResult<u64>> + Send + 'static,
    B: Fn(Range<usize>) -> FB,
    FB: Future<Output = BenchResult<u64>> + Send + 'static,
{
    let mut out = [(Duration::ZERO, 0); 2];
    let slice = calls.div_ceil(SLICES).max(1);
    for (i, from) in (0..calls).step_by(slice).enumerate() {
        let range = from..(from + slice).min(calls);
        for a_turn in [i % 2 == 0, i % 2 == 1] {
            let (elapsed, hits) = if a_turn {
                run_tasks(range.clone(), tasks, &a).await?
            } else {
                run_tasks(range.clone(), tasks, &b).await?
            };
            let side = &mut out[usize::from(!a_turn)];
            side.0 += elapsed;
            side.1 += hits;
        }
    }
    Ok(out)
}

/// `check_permission` through the manager at the run positions `range`, cycling over the first
/// `n` positions of the access sequence (at most its length), with the existing [`run_op`] over
/// each stretch; returns the `true` answers.
pub(crate) async fn psm_checks(
    m: &Manager,
    w: &Workload,
    range: Range<usize>,
    n: usize,
) -> psm::Result<u64> {
    let mut hits = 0;
    for segment in segments(range, n.min(w.len())) {
        hits += run_op(m, w, Op::Check, segment).await?;
    }
    Ok(hits)
}

/// One measured figure: the rate of every round, and what each round's answers added up to.
#[derive(Debug, Default)]
pub(crate) struct Figure {
    rates: Vec<f64>,
    tallies: Vec<(u64, u64)>,
}

impl Figure {
    /// Records a round of `calls` calls that took `elapsed`, tallied `got` and had to tally
    /// `expected`.
    pub(crate) fn record(&mut self, calls: usize, elapsed: Duration, got: u64, expected: u64) {
        self.rates
            .push(calls as f64 / elapsed.as_secs_f64().max(1e-9));
        self.tallies.push((got, expected));
    }

    /// Records one side of a [`paired`] measurement.
    pub(crate) fn record_side(&mut self, calls: usize, side: (Duration, u64), expected: u64) {
        self.record(calls, side.0, side.1, expected);
    }

    /// The best round's rate.
    pub(crate) fn best(&self) -> Option<f64> {
        self.rates.iter().copied().reduce(f64::max)
    }

    /// Every round whose tally differs from what the workload dictates, as a problem.
    pub(crate) fn verify(&self, what: &str, problems: &mut Vec<String>) {
        for (round, &(got, expected)) in self.tallies.iter().enumerate() {
            if got != expected {
                problems.push(format!(
                    "{what}: round {} tallied {got}, expected {expected}",
                    round + 1
                ));
            }
        }
    }

    /// `{ "best": ops/s, "rounds": [ops/s, ...] }`.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "best": self.best().map_or(Value::Null, Value::from),
            "rounds": self.rates,
        })
    }
}

/// `url` with `key=value` appended to its query.
pub(crate) fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// `url` without a password, for the JSON result (which the report prints).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_positions_cycle_over_the_access_sequence() {
        let got: Vec<_> = segments(3..12, 5).collect();
        assert_eq!(got, [3..5, 0..5, 0..2]);
        assert_eq!(segments(0..0, 5).count(), 0);
        // Even workload positions answer true: 4 | 0 2 4 | 0 of 3..12 over 5.
        assert_eq!(expected_check_hits(3..12, 5), 5);
        let brute =
            |r: Range<usize>, n: usize| r.filter(|k| (k % n).is_multiple_of(2)).count() as u64;
        for (r, n) in [(0..100, 7), (5..99, 10), (13..14, 3), (0..1, 1)] {
            assert_eq!(expected_check_hits(r.clone(), n), brute(r, n));
        }
    }

    #[test]
    fn splits_cover_every_call_once() {
        let parts = split(5..105, 64);
        assert_eq!(parts.len(), 64);
        assert_eq!(parts.iter().map(ExactSizeIterator::len).sum::<usize>(), 100);
        assert!(parts.windows(2).all(|p| p[0].end == p[1].start));
        assert_eq!((parts[0].start, parts[63].end), (5, 105));
        assert_eq!(split(0..10, 0).len(), 1);
        assert_eq!(split(0..10, 0).first(), Some(&(0..10)));
    }

    #[test]
    fn paired_sides_each_run_every_position_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sum = |range: Range<usize>| async move { Ok(range.map(|k| k as u64).sum::<u64>()) };
        let [a, b] = rt.block_on(paired(95, 4, sum, sum)).unwrap();
        let all = (0..95_u64).sum::<u64>();
        assert_eq!((a.1, b.1), (all, all));
    }

    #[test]
    fn urls_get_params_and_lose_passwords() {
        assert_eq!(
            with_param("redis://h:1", "key_prefix", "p:"),
            "redis://h:1?key_prefix=p:"
        );
        assert_eq!(
            with_param("postgres://h/db?a=b", "x", "y"),
            "postgres://h/db?a=b&x=y"
        );
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_ne!(fresh_suffix(), fresh_suffix());
    }
}
