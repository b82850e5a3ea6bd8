//! Counters of one provider's run (operations by kind, refusals and errors by `ErrorKind`,
//! invariant violations with a few examples) and the tables printed from them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use psm::ErrorKind;

use crate::{
    model::{Invariant, Verdict},
    resources::Growth,
};

/// Examples kept per invariant.
const EXAMPLES: usize = 3;

/// The operations the workload issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Store,
    Check,
    CheckMany,
    Get,
    Update,
    Extend,
    Invalidate,
    Login,
    IssueTokens,
    Refresh,
    Replay,
    AfterReuse,
    Simultaneous,
    ListUser,
    Cleanup,
}

impl Op {
    pub(crate) const ALL: [Op; 15] = [
        Op::Store,
        Op::Check,
        Op::CheckMany,
        Op::Get,
        Op::Update,
        Op::Extend,
        Op::Invalidate,
        Op::Login,
        Op::IssueTokens,
        Op::Refresh,
        Op::Replay,
        Op::AfterReuse,
        Op::Simultaneous,
        Op::ListUser,
        Op::Cleanup,
    ];

    fn label(self) -> &'static str {
        match self {
            Op::Store => "store_permissions",
            Op::Check => "check_permission",
            Op::CheckMany => "check_permissions",
            Op::Get => "get_permissions",
            Op::Update => "update_permissions",
            Op::Extend => "extend_session_ttl",
            Op::Invalidate => "invalidate_session",
            Op::Login => "create_session (limit)",
            Op::IssueTokens => "issue_tokens",
            Op::Refresh => "refresh",
            Op::Replay => "refresh (replayed token)",
            Op::AfterReuse => "refresh (latest, after reuse)",
            Op::Simultaneous => "refresh (3 at once)",
            Op::ListUser => "list_sessions(user)",
            Op::Cleanup => "cleanup (sessions, families)",
        }
    }
}

/// Why a call did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Psm(ErrorKind),
    /// No answer within the soak's per-call bound.
    Timeout,
}

impl Failure {
    fn label(self) -> String {
        match self {
            Failure::Psm(kind) => kind.code().to_owned(),
            Failure::Timeout => "no answer within the soak's bound".to_owned(),
        }
    }
}

/// One provider's counters, shared by its tasks.
#[derive(Debug)]
pub(crate) struct Stats {
    calls: [AtomicU64; Op::ALL.len()],
    /// Expected refusals (a limit reached, a revoked family) and errors, by operation and kind.
    outcomes: Mutex<BTreeMap<(String, Op, bool), u64>>,
    violations: Mutex<BTreeMap<Invariant, (u64, Vec<String>)>>,
    unjudged: AtomicU64,
    judged: AtomicU64,
    /// Listings above the login limit while a create of that user was in flight.
    transient: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            outcomes: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(BTreeMap::new()),
            unjudged: AtomicU64::new(0),
            judged: AtomicU64::new(0),
            transient: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy for the progress line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) violations: u64,
}

impl Stats {
    pub(crate) fn call(&self, op: Op) {
        self.calls[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An answer the workload provokes on purpose (a limit, a revoked family).
    pub(crate) fn refused(&self, op: Op, failure: Failure) {
        self.outcome(op, failure, true);
    }

    pub(crate) fn error(&self, op: Op, failure: Failure) {
        self.outcome(op, failure, false);
    }

    fn outcome(&self, op: Op, failure: Failure, expected: bool) {
        let mut map = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry((failure.label(), op, expected)).or_default() += 1;
    }

    /// Counts a verdict; `example` describes the observation (called only for a violation).
    pub(crate) fn verdict(&self, verdict: Verdict, example: impl FnOnce() -> String) {
        match verdict {
            Verdict::Consistent => {
                self.judged.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Unjudged => {
                self.unjudged.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Violated(invariant) => {
                self.judged.fetch_add(1, Ordering::Relaxed);
                self.violation(invariant, example());
            }
        }
    }

    /// A listing above the limit that overlapped a create of the same user.
    pub(crate) fn transient_over_limit(&self) {
        self.transient.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn violation(&self, invariant: Invariant, example: String) {
        let mut map = self
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(invariant).or_default();
        entry.0 += 1;
        if entry.1.len() < EXAMPLES {
            entry.1.push(example);
        }
    }

    /// Violations of one invariant.
    #[cfg(test)]
    pub(crate) fn count(&self, invariant: Invariant) -> u64 {
        let map = self
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&invariant).map_or(0, |(n, _)| *n)
    }

    pub(crate) fn violations(&self) -> u64 {
        let map = self
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.values().map(|(n, _)| n).sum()
    }

    pub(crate) fn totals(&self) -> Totals {
        let errors = {
            let map = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .filter(|((_, _, expected), _)| !expected)
                .map(|(_, n)| n)
                .sum()
        };
        Totals {
            calls: self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            errors,
            violations: self.violations(),
        }
    }

    /// The markdown report of one provider's run.
    pub(crate) fn report(&self, provider: &str, seconds: f64, growth: &Growth) -> String {
        let mut out = String::new();
        let outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let per_op = |op: Op, expected: bool| -> u64 {
            outcomes
                .iter()
                .filter(|((_, o, e), _)| *o == op && *e == expected)
                .map(|(_, n)| n)
                .sum()
        };
        let _ = writeln!(out, "### {provider} ({seconds:.0} s)\n");
        let _ = writeln!(
            out,
            "| operation | calls | per second | refused (expected) | errors |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        let mut total = 0;
        for op in Op::ALL {
            let calls = self.calls[op as usize].load(Ordering::Relaxed);
            total += calls;
            let _ = writeln!(
                out,
                "| {} | {calls} | {:.0} | {} | {} |",
                op.label(),
                calls as f64 / seconds.max(0.001),
                per_op(op, true),
                per_op(op, false)
            );
        }
        let _ = writeln!(
            out,
            "| **all** | **{total}** | **{:.0}** | | |\n",
            total as f64 / seconds.max(0.001)
        );
        if outcomes.is_empty() {
            let _ = writeln!(out, "No call was refused and none failed.\n");
        } else {
            let _ = writeln!(out, "| ErrorKind | operation | expected | count |");
            let _ = writeln!(out, "| --- | --- | --- | ---: |");
            for ((failure, op, expected), n) in outcomes.iter() {
                let _ = writeln!(
                    out,
                    "| {failure} | {} | {} | {n} |",
                    op.label(),
                    if *expected { "yes" } else { "**no**" }
                );
            }
            let _ = writeln!(out);
        }
        drop(outcomes);
        let violations = self
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "| invariant | violations |");
        let _ = writeln!(out, "| --- | ---: |");
        for invariant in Invariant::ALL {
            let n = violations.get(&invariant).map_or(0, |(n, _)| *n);
            let shown = match (invariant, growth) {
                (Invariant::MemoryGrowth, Growth { rss: None, .. })
                | (Invariant::FdGrowth, Growth { fds: None, .. }) => "not judged".to_owned(),
                _ => n.to_string(),
            };
            let _ = writeln!(out, "| {} | {shown} |", invariant.label());
        }
        let judged = self.judged.load(Ordering::Relaxed);
        let unjudged = self.unjudged.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "\n{judged} observations judged, {unjudged} not judged (a candidate state unknown after a failed call)."
        );
        let transient = self.transient.load(Ordering::Relaxed);
        if transient > 0 {
            let _ = writeln!(
                out,
                "{transient} listings showed more live sessions than the limit while a `create_session` of that user was in flight (transient; the limit bounds what the calls leave)."
            );
        }
        if let Some((a, b)) = growth.rss {
            let _ = writeln!(
                out,
                "Resident memory, median of each judged half: {:.1} MiB, then {:.1} MiB.",
                a as f64 / (1 << 20) as f64,
                b as f64 / (1 << 20) as f64
            );
        }
        if let Some((a, b)) = growth.fds {
            let _ = writeln!(
                out,
                "Open file descriptors, median of each half: {a}, then {b}."
            );
        }
        for (invariant, (_, examples)) in violations.iter() {
            for e in examples {
                let _ = writeln!(out, "- {}: {e}", invariant.label());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_counts_violations_and_errors() {
        let stats = Stats::default();
        stats.call(Op::Check);
        stats.error(Op::Check, Failure::Psm(ErrorKind::ProviderConnection));
        stats.refused(Op::Login, Failure::Psm(ErrorKind::SessionLimitReached));
        stats.verdict(Verdict::Violated(Invariant::LostWrite), || "slot 3".into());
        stats.verdict(Verdict::Consistent, String::new);
        assert_eq!(stats.violations(), 1);
        let t = stats.totals();
        assert_eq!((t.calls, t.errors, t.violations), (1, 1, 1));
        let report = stats.report("memory", 1.0, &Growth::default());
        assert!(
            report.contains("| acknowledged write lost | 1 |"),
            "{report}"
        );
        assert!(report.contains("slot 3"), "{report}");
        assert!(report.contains("| resident memory growing | not judged |"));
    }
}
