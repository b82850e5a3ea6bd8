//! The measured operations and the best-of-rounds bookkeeping shared by every mode.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Map, Value};

use crate::workload::{LIST_LIMIT, Workload};

/// The operations, in the order a round runs them: `invalidate_session` last, on the filled store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Store,
    Check,
    Check5,
    Get,
    ListUser,
    Invalidate,
}

impl Op {
    pub(crate) const ALL: [Op; 6] = [
        Op::Store,
        Op::Check,
        Op::Check5,
        Op::Get,
        Op::ListUser,
        Op::Invalidate,
    ];

    /// The key in the JSON result (the report's names).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Check => "check",
            Op::Check5 => "check5",
            Op::Get => "get",
            Op::ListUser => "list_user",
            Op::Invalidate => "invalidate",
        }
    }

    /// Calls per round: one per session, except `list_sessions(user)`, one per user.
    pub(crate) fn calls(self, w: &Workload) -> usize {
        match self {
            Op::ListUser => w.users.len(),
            _ => w.len(),
        }
    }

    /// What the answers of one round must add up to: `true` answers, found records or listed ids.
    pub(crate) fn expected_hits(self, w: &Workload) -> u64 {
        match self {
            Op::Store | Op::Get | Op::Invalidate => w.len() as u64,
            Op::Check => w.expected_check_hits(),
            Op::Check5 => w.expected_check5_hits(),
            Op::ListUser => {
                let mut per_user = vec![0_u64; w.users.len()];
                for &u in &w.owner {
                    per_user[u] += 1;
                }
                per_user.iter().map(|&n| n.min(LIST_LIMIT)).sum()
            }
        }
    }
}

/// The best rate of each operation over the rounds, and the answers' tally of every round.
#[derive(Debug, Default)]
pub(crate) struct OpResults {
    best: BTreeMap<Op, f64>,
    hits: BTreeMap<Op, Vec<u64>>,
}

impl OpResults {
    pub(crate) fn record(&mut self, op: Op, calls: usize, elapsed: Duration, hits: u64) {
        let rate = calls as f64 / elapsed.as_secs_f64().max(1e-9);
        let best = self.best.entry(op).or_insert(0.0);
        *best = best.max(rate);
        self.hits.entry(op).or_default().push(hits);
    }

    /// Folds in another run's rounds: the best rate of each operation, and every tally.
    pub(crate) fn merge(&mut self, other: OpResults) {
        for (op, rate) in other.best {
            let best = self.best.entry(op).or_insert(0.0);
            *best = best.max(rate);
        }
        for (op, hits) in other.hits {
            self.hits.entry(op).or_default().extend(hits);
        }
    }

    /// The best rate of `op`, if it was measured.
    pub(crate) fn rate(&self, op: Op) -> Option<f64> {
        self.best.get(&op).copied()
    }

    /// Every round's answers of every operation, compared with what the workload dictates.
    pub(crate) fn verify(&self, w: &Workload, mode: &str, problems: &mut Vec<String>) {
        for (op, rounds) in &self.hits {
            let expected = op.expected_hits(w);
            for (round, &got) in rounds.iter().enumerate() {
                if got != expected {
                    problems.push(format!(
                        "{mode} {}: round {round} tallied {got}, expected {expected}",
                        op.key()
                    ));
                }
            }
        }
    }

    /// `{ "store": ops/s, ... }` for the operations measured.
    pub(crate) fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .best
            .iter()
            .map(|(op, rate)| (op.key().to_owned(), Value::from(*rate)))
            .collect();
        Value::Object(map)
    }
}
