//! The oracle: what each soak session must look like given the calls that were acknowledged, and
//! the judges that hold an observation against it.
//!
//! Each session id (a *slot*) has one fixed user. Mutations of a slot are serialized by a claim
//! (one writer, updater or invalidator at a time), so the slot's acknowledged history is a
//! sequence; reads take no claim and run concurrently with a mutation. A read may legitimately
//! see any state that was current at some instant of its call: the last state acknowledged before
//! the read began, every state acknowledged while it ran, and the target of a mutation still in
//! flight. It is a violation only when no such candidate allows the answer.
//!
//! Times are wall-clock microseconds (the stores expire by the wall clock). A store computes a
//! session's expiry from its own reading of the clock somewhere inside the storing call, so an
//! expiry is known as a window `[call start + ttl, call end + ttl]`. A read is *definitely live*
//! only if it ended [`MARGIN_MICROS`] before the earliest expiry, and *definitely dead* only if it
//! began that long after the latest; in between either answer is accepted. The margin absorbs
//! clock granularity (Redis keeps expiries in milliseconds, psm's clock anchors per thread).

use std::collections::VecDeque;

/// Clock slack on either side of an expiry window, in microseconds.
pub(crate) const MARGIN_MICROS: i64 = 5_000;

/// Permissions of the workload: `p0` … `p7`, a session's set is a non-empty bit mask.
pub(crate) const PERMISSIONS: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];

/// Acknowledged versions a slot remembers for reads still running; a read that began before the
/// oldest one is not judged.
const HISTORY: usize = 32;

/// The permission names of a mask, in bit order.
pub(crate) fn names(mask: u8) -> Vec<&'static str> {
    PERMISSIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, p)| *p)
        .collect()
}

/// The mask of permission names; `None` for a name outside the workload.
pub(crate) fn mask_of<'a>(perms: impl IntoIterator<Item = &'a str>) -> Option<u8> {
    let mut mask = 0u8;
    for p in perms {
        let i = PERMISSIONS.iter().position(|q| *q == p)?;
        mask |= 1 << i;
    }
    Some(mask)
}

/// The interval a call ran in (wall-clock microseconds, start ≤ end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing live: never stored, invalidated, or reported gone by a call (expiry never revives).
    Dead,
    /// A live session until its expiry.
    Live(Live),
    /// A call failed or timed out, so it may or may not have taken effect: not judged until the
    /// next successful store replaces the session whole.
    Unknown,
}

/// A stored session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) user: u32,
    pub(crate) perms: u8,
    /// Earliest and latest instant the session can expire (`i64::MAX` for a bound not known yet).
    pub(crate) expires: (i64, i64),
}

/// Whether a state is live over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alive {
    Yes,
    No,
    Maybe,
}

impl State {
    /// A session stored with `ttl` seconds by a call that ran in `w`.
    pub(crate) fn stored(user: u32, perms: u8, ttl: u64, w: Window) -> Self {
        State::Live(Live {
            user,
            perms,
            expires: expiry(ttl, w),
        })
    }

    /// Whether the state is live throughout `w`, dead throughout it, or either.
    pub(crate) fn alive(&self, w: Window) -> Alive {
        match self {
            State::Dead => Alive::No,
            State::Unknown => Alive::Maybe,
            State::Live(l) => {
                if w.end.saturating_add(MARGIN_MICROS) < l.expires.0 {
                    Alive::Yes
                } else if w.start > l.expires.1.saturating_add(MARGIN_MICROS) {
                    Alive::No
                } else {
                    Alive::Maybe
                }
            }
        }
    }
}

/// The expiry window of a ttl set by a call that ran in `w`.
pub(crate) fn expiry(ttl: u64, w: Window) -> (i64, i64) {
    let micros = i64::try_from(ttl).unwrap_or(i64::MAX / 2_000_000) * 1_000_000;
    (w.start.saturating_add(micros), w.end.saturating_add(micros))
}

/// The invariants the soak holds the providers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Invariant {
    /// A session stored and neither expired nor invalidated was missing, or read with other
    /// permissions than the last acknowledged write gave it.
    LostWrite,
    /// An expired or invalidated session passed a check (or was read, updated, renewed or
    /// invalidated as live) after the call that ended it returned.
    DeadPassed,
    /// A permission the session does not hold (never stored, or removed by an acknowledged
    /// update) passed a check.
    NotHeldPassed,
    /// A user held more live sessions than the login limit allows.
    LimitExceeded,
    /// A refresh token was accepted twice (sequentially or by simultaneous refreshes).
    RefreshAcceptedTwice,
    /// A rotated refresh token of a live family failed with something other than reuse detection.
    ReuseNotDetected,
    /// After reuse detection the session still passed a check, or the family's latest token
    /// was accepted.
    SurvivedReuse,
    /// A refresh token never presented before was refused as reused.
    FreshTokenRefused,
    /// Resident memory grew from the first half of the run to the second beyond the slack.
    MemoryGrowth,
    /// Open file descriptors (connections, files) grew from the first half to the second.
    FdGrowth,
}

impl Invariant {
    /// Every invariant, in table order.
    pub(crate) const ALL: [Invariant; 10] = [
        Invariant::LostWrite,
        Invariant::DeadPassed,
        Invariant::NotHeldPassed,
        Invariant::LimitExceeded,
        Invariant::RefreshAcceptedTwice,
        Invariant::ReuseNotDetected,
        Invariant::SurvivedReuse,
        Invariant::FreshTokenRefused,
        Invariant::MemoryGrowth,
        Invariant::FdGrowth,
    ];

    /// The table's wording.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Invariant::LostWrite => "acknowledged write lost",
            Invariant::DeadPassed => "expired or invalidated session passed",
            Invariant::NotHeldPassed => "permission not held passed",
            Invariant::LimitExceeded => "per-user session limit exceeded",
            Invariant::RefreshAcceptedTwice => "refresh token accepted twice",
            Invariant::ReuseNotDetected => "reused refresh token not detected",
            Invariant::SurvivedReuse => "session or family survived reuse detection",
            Invariant::FreshTokenRefused => "fresh refresh token refused as reused",
            Invariant::MemoryGrowth => "resident memory growing",
            Invariant::FdGrowth => "open file descriptors growing",
        }
    }
}

/// The outcome of judging one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Consistent,
    /// A candidate state is unknown (an earlier call failed): nothing can be said.
    Unjudged,
    Violated(Invariant),
}

/// Judges `check_permission(slot, PERMISSIONS[bit])` answering `observed` over `w`.
pub(crate) fn judge_check(candidates: &[State], bit: u8, w: Window, observed: bool) -> Verdict {
    if candidates.is_empty() || candidates.contains(&State::Unknown) {
        return Verdict::Unjudged;
    }
    let holds = |s: &State| matches!(s, State::Live(l) if l.perms & (1 << bit) != 0);
    let may_true = candidates
        .iter()
        .any(|s| holds(s) && s.alive(w) != Alive::No);
    let may_false = candidates
        .iter()
        .any(|s| !holds(s) || s.alive(w) != Alive::Yes);
    match (observed, may_true, may_false) {
        (true, false, _) => {
            // Held only by candidates that are dead by now, or held by none at all.
            if candidates.iter().any(holds) || candidates.iter().all(|s| *s == State::Dead) {
                Verdict::Violated(Invariant::DeadPassed)
            } else {
                Verdict::Violated(Invariant::NotHeldPassed)
            }
        }
        (false, _, false) => Verdict::Violated(Invariant::LostWrite),
        _ => Verdict::Consistent,
    }
}

/// Judges `get_permissions(slot)` returning `observed` (user and permission mask) over `w`.
pub(crate) fn judge_get(candidates: &[State], w: Window, observed: Option<(u32, u8)>) -> Verdict {
    if candidates.is_empty() || candidates.contains(&State::Unknown) {
        return Verdict::Unjudged;
    }
    match observed {
        None => {
            if candidates.iter().any(|s| s.alive(w) != Alive::Yes) {
                Verdict::Consistent
            } else {
                Verdict::Violated(Invariant::LostWrite)
            }
        }
        Some((user, perms)) => {
            let same =
                |s: &State| matches!(s, State::Live(l) if l.user == user && l.perms == perms);
            if candidates
                .iter()
                .any(|s| same(s) && s.alive(w) != Alive::No)
            {
                Verdict::Consistent
            } else if candidates.iter().any(same)
                || candidates.iter().all(|s| s.alive(w) == Alive::No)
            {
                Verdict::Violated(Invariant::DeadPassed)
            } else {
                Verdict::Violated(Invariant::LostWrite)
            }
        }
    }
}

/// Judges the boolean an update, renewal or invalidation returned ("the session was live"), given
/// the acknowledged state `prev` it started from and the call's window `w`.
pub(crate) fn judge_returned(prev: &State, w: Window, returned: bool) -> Verdict {
    match (prev.alive(w), returned) {
        _ if *prev == State::Unknown => Verdict::Unjudged,
        (Alive::Yes, false) => Verdict::Violated(Invariant::LostWrite),
        (Alive::No, true) => Verdict::Violated(Invariant::DeadPassed),
        _ => Verdict::Consistent,
    }
}

/// What a slot's mutation does, for the state it leaves and the target a concurrent read may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    Store { user: u32, perms: u8, ttl: u64 },
    Update { perms: u8, ttl: Option<u64> },
    Extend { ttl: u64 },
    Invalidate,
}

impl Mutation {
    /// The state a read may see while the call (started at `start`) is in flight and has taken
    /// effect; `None` when it cannot take effect from `prev`.
    pub(crate) fn in_flight(self, prev: &State, start: i64) -> Option<State> {
        let open = Window {
            start,
            end: i64::MAX / 2,
        };
        match (self, prev) {
            (Mutation::Store { user, perms, ttl }, _) => Some(State::Live(Live {
                user,
                perms,
                expires: (expiry(ttl, open).0, i64::MAX),
            })),
            (Mutation::Invalidate, _) => Some(State::Dead),
            (_, State::Unknown) => Some(State::Unknown),
            (_, State::Dead) => None,
            (Mutation::Update { perms, ttl }, State::Live(l)) => Some(State::Live(Live {
                perms,
                expires: ttl.map_or(l.expires, |t| (expiry(t, open).0, i64::MAX)),
                ..*l
            })),
            (Mutation::Extend { ttl }, State::Live(l)) => Some(State::Live(Live {
                expires: (expiry(ttl, open).0, i64::MAX),
                ..*l
            })),
        }
    }

    /// The state after the call ran in `w` and returned `returned` (`None`: it failed).
    pub(crate) fn after(self, prev: &State, w: Window, returned: Option<bool>) -> State {
        let Some(returned) = returned else {
            return State::Unknown;
        };
        match (self, prev, returned) {
            (Mutation::Store { user, perms, ttl }, _, _) => State::stored(user, perms, ttl, w),
            (Mutation::Invalidate, _, _) => State::Dead,
            // "Not live" is final: an expired session is never revived by an update or renewal.
            (_, _, false) => State::Dead,
            (Mutation::Update { perms, ttl }, State::Live(l), true) => State::Live(Live {
                perms,
                expires: ttl.map_or(l.expires, |t| expiry(t, w)),
                ..*l
            }),
            (Mutation::Extend { ttl }, State::Live(l), true) => State::Live(Live {
                expires: expiry(ttl, w),
                ..*l
            }),
            // Applied to a session the model holds dead or unknown (the violation, if any, is
            // judged separately): its expiry is not known.
            (_, _, true) => State::Unknown,
        }
    }
}

/// One session id's acknowledged history and the mutation in flight.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) user: u32,
    /// Acknowledged versions, oldest first, with their sequence numbers; never empty.
    history: VecDeque<(u64, State)>,
    /// The target of the mutation in flight, if it can take effect.
    pending: Option<State>,
    /// Claimed by a mutator.
    busy: bool,
}

/// What a read learned when it began.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    seq: u64,
    candidates: Vec<State>,
}

impl Slot {
    /// A slot nobody wrote yet.
    pub(crate) fn new(user: u32) -> Self {
        Self {
            user,
            history: VecDeque::from([(0, State::Dead)]),
            pending: None,
            busy: false,
        }
    }

    fn last(&self) -> (u64, &State) {
        match self.history.back() {
            Some((seq, state)) => (*seq, state),
            None => (0, &State::Unknown),
        }
    }

    /// The acknowledged state.
    pub(crate) fn current(&self) -> &State {
        self.last().1
    }

    /// Claims the slot for a mutation; `false` when another mutator holds it.
    pub(crate) fn try_claim(&mut self) -> bool {
        !std::mem::replace(&mut self.busy, true)
    }

    /// Announces the claimed slot's mutation before the call; returns the state it starts from.
    pub(crate) fn begin(&mut self, m: Mutation, start: i64) -> State {
        let prev = self.current().clone();
        self.pending = m.in_flight(&prev, start);
        prev
    }

    /// Records the claimed slot's new acknowledged state and releases the claim.
    pub(crate) fn finish(&mut self, state: State) {
        let seq = self.last().0 + 1;
        self.history.push_back((seq, state));
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.pending = None;
        self.busy = false;
    }

    /// Starts a read: the acknowledged state and any in-flight target.
    pub(crate) fn begin_read(&self) -> Ticket {
        let (seq, state) = self.last();
        let mut candidates = vec![state.clone()];
        candidates.extend(self.pending.clone());
        Ticket { seq, candidates }
    }

    /// Ends a read: every state it may have seen.
    pub(crate) fn end_read(&self, ticket: Ticket) -> Vec<State> {
        let Ticket {
            seq,
            mut candidates,
        } = ticket;
        let oldest = self.history.front().map_or(0, |(s, _)| *s);
        if oldest > seq + 1 {
            // Versions acknowledged during the read were forgotten: nothing can be said.
            candidates.push(State::Unknown);
        }
        candidates.extend(
            self.history
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, state)| state.clone()),
        );
        candidates.extend(self.pending.clone());
        candidates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    fn live(perms: u8, lo: i64, hi: i64) -> State {
        State::Live(Live {
            user: 1,
            perms,
            expires: (lo, hi),
        })
    }

    #[test]
    fn a_live_session_read_as_missing_is_a_lost_write() {
        let s = live(0b01, 10 * S, 10 * S + 100);
        assert_eq!(
            judge_check(std::slice::from_ref(&s), 0, w(S, S + 10), false),
            Verdict::Violated(Invariant::LostWrite)
        );
        assert_eq!(
            judge_get(std::slice::from_ref(&s), w(S, S + 10), None),
            Verdict::Violated(Invariant::LostWrite)
        );
        // Read with the permissions of an older write: lost too.
        assert_eq!(
            judge_get(&[s], w(S, S + 10), Some((1, 0b11))),
            Verdict::Violated(Invariant::LostWrite)
        );
    }

    #[test]
    fn an_expired_or_invalidated_session_passing_is_caught() {
        let expired = live(0b01, 2 * S, 2 * S + 100);
        assert_eq!(
            judge_check(
                std::slice::from_ref(&expired),
                0,
                w(3 * S, 3 * S + 10),
                true
            ),
            Verdict::Violated(Invariant::DeadPassed)
        );
        assert_eq!(
            judge_get(&[expired], w(3 * S, 3 * S + 10), Some((1, 0b01))),
            Verdict::Violated(Invariant::DeadPassed)
        );
        assert_eq!(
            judge_check(&[State::Dead], 0, w(S, S + 1), true),
            Verdict::Violated(Invariant::DeadPassed)
        );
        assert_eq!(
            judge_get(&[State::Dead], w(S, S + 1), Some((1, 1))),
            Verdict::Violated(Invariant::DeadPassed)
        );
    }

    #[test]
    fn a_permission_not_held_passing_is_caught() {
        let s = live(0b01, 10 * S, 10 * S);
        assert_eq!(
            judge_check(&[s], 1, w(S, S + 1), true),
            Verdict::Violated(Invariant::NotHeldPassed)
        );
    }

    #[test]
    fn answers_inside_the_expiry_window_or_during_a_mutation_are_accepted() {
        let s = live(0b01, 2 * S, 2 * S + 100);
        // The read overlaps the expiry window (with the margin): either answer.
        for observed in [true, false] {
            assert_eq!(
                judge_check(
                    std::slice::from_ref(&s),
                    0,
                    w(2 * S - 1000, 2 * S),
                    observed
                ),
                Verdict::Consistent
            );
        }
        // An update in flight: old and new permissions are both fine.
        let new = live(0b10, 10 * S, i64::MAX);
        let cands = [live(0b01, 10 * S, 10 * S), new];
        assert_eq!(judge_check(&cands, 0, w(S, S), true), Verdict::Consistent);
        assert_eq!(judge_check(&cands, 0, w(S, S), false), Verdict::Consistent);
        assert_eq!(
            judge_check(&[State::Unknown], 0, w(S, S), true),
            Verdict::Unjudged
        );
    }

    #[test]
    fn returned_booleans_are_held_against_the_prior_state() {
        let s = live(1, 10 * S, 10 * S);
        assert_eq!(
            judge_returned(&s, w(S, S), false),
            Verdict::Violated(Invariant::LostWrite)
        );
        assert_eq!(judge_returned(&s, w(S, S), true), Verdict::Consistent);
        assert_eq!(
            judge_returned(&State::Dead, w(S, S), true),
            Verdict::Violated(Invariant::DeadPassed)
        );
        let expired = live(1, S, S);
        assert_eq!(
            judge_returned(&expired, w(2 * S, 2 * S), true),
            Verdict::Violated(Invariant::DeadPassed)
        );
    }

    #[test]
    fn reads_see_the_versions_acknowledged_while_they_ran() {
        let mut slot = Slot::new(1);
        assert!(slot.try_claim());
        assert!(!slot.try_claim(), "a claimed slot refuses a second mutator");
        let store = Mutation::Store {
            user: 1,
            perms: 1,
            ttl: 3,
        };
        let prev = slot.begin(store, S);
        assert_eq!(prev, State::Dead);
        let ticket = slot.begin_read();
        slot.finish(store.after(&prev, w(S, S + 10), Some(true)));
        let cands = slot.end_read(ticket);
        // Before, in flight and after: a read overlapping the store may answer either way.
        assert_eq!(
            judge_check(&cands, 0, w(S, S + 20), false),
            Verdict::Consistent
        );
        assert_eq!(
            judge_check(&cands, 0, w(S, S + 20), true),
            Verdict::Consistent
        );
        // A read starting after the acknowledgement must see the session.
        let ticket = slot.begin_read();
        let cands = slot.end_read(ticket);
        assert_eq!(
            judge_check(&cands, 0, w(S + 30, S + 40), false),
            Verdict::Violated(Invariant::LostWrite)
        );
        // After an acknowledged invalidation a pass is a violation.
        assert!(slot.try_claim());
        let prev = slot.begin(Mutation::Invalidate, 2 * S);
        slot.finish(Mutation::Invalidate.after(&prev, w(2 * S, 2 * S + 5), Some(true)));
        let cands = slot.end_read(slot.begin_read());
        assert_eq!(
            judge_check(&cands, 0, w(2 * S + 10, 2 * S + 20), true),
            Verdict::Violated(Invariant::DeadPassed)
        );
    }

    #[test]
    fn update_without_ttl_keeps_the_expiry_and_false_is_final() {
        let w1 = w(S, S + 10);
        let s = State::stored(1, 1, 2, w1);
        let updated = Mutation::Update {
            perms: 2,
            ttl: None,
        }
        .after(&s, w(S + 20, S + 30), Some(true));
        assert_eq!(
            updated,
            State::Live(Live {
                user: 1,
                perms: 2,
                expires: (3 * S, 3 * S + 10)
            })
        );
        let gone = Mutation::Extend { ttl: 3 }.after(&s, w(S, S), Some(false));
        assert_eq!(gone, State::Dead);
        let failed = Mutation::Extend { ttl: 3 }.after(&s, w(S, S), None);
        assert_eq!(failed, State::Unknown);
    }

    #[test]
    fn forgotten_history_makes_a_read_unjudged() {
        let mut slot = Slot::new(1);
        let ticket = slot.begin_read();
        for i in 0..(HISTORY as i64 + 2) {
            assert!(slot.try_claim());
            let m = Mutation::Invalidate;
            let prev = slot.begin(m, i);
            slot.finish(m.after(&prev, w(i, i), Some(false)));
        }
        let cands = slot.end_read(ticket);
        assert_eq!(judge_check(&cands, 0, w(0, 100), true), Verdict::Unjudged);
    }

    #[test]
    fn masks_and_names_round_trip() {
        assert_eq!(names(0b101), ["p0", "p2"]);
        assert_eq!(mask_of(["p0", "p2"]), Some(0b101));
        assert_eq!(mask_of(["admin"]), None);
    }
}
