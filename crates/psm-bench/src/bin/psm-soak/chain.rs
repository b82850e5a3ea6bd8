//! Judges for refresh-token chains: one login's tokens, rotated by one task, then replayed.

use psm::ErrorKind;

use crate::model::{Invariant, Verdict};

/// How a refresh call ended, as far as the judges care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refreshed {
    Accepted,
    Refused(ErrorKind),
    /// Timed out or failed for a reason that says nothing about the token (a connection error).
    Failed,
}

/// The refusals that are the token service's answer about the token itself.
fn about_the_token(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::TokenReuseDetected
            | ErrorKind::TokenRevoked
            | ErrorKind::TokenExpired
            | ErrorKind::TokenInvalid
    )
}

impl Refreshed {
    /// Sorts a refresh's error into a refusal about the token or another failure.
    pub(crate) fn from_kind(kind: ErrorKind) -> Self {
        if about_the_token(kind) {
            Refreshed::Refused(kind)
        } else {
            Refreshed::Failed
        }
    }
}

/// Presenting the chain's current token, never presented before.
pub(crate) fn judge_fresh(outcome: Refreshed) -> Verdict {
    match outcome {
        Refreshed::Refused(ErrorKind::TokenReuseDetected) => {
            Verdict::Violated(Invariant::FreshTokenRefused)
        }
        Refreshed::Failed => Verdict::Unjudged,
        _ => Verdict::Consistent,
    }
}

/// Presenting a token that was accepted before. `family_live`: the chain's last refresh was
/// accepted and the family is not near its absolute end, so nothing but reuse detection may
/// refuse it.
pub(crate) fn judge_replay(outcome: Refreshed, family_live: bool) -> Verdict {
    match outcome {
        Refreshed::Accepted => Verdict::Violated(Invariant::RefreshAcceptedTwice),
        Refreshed::Refused(ErrorKind::TokenReuseDetected) => Verdict::Consistent,
        Refreshed::Refused(_) if family_live => Verdict::Violated(Invariant::ReuseNotDetected),
        Refreshed::Refused(_) => Verdict::Consistent,
        Refreshed::Failed => Verdict::Unjudged,
    }
}

/// Simultaneous refreshes with one token: at most one may get a pair.
pub(crate) fn judge_simultaneous(outcomes: &[Refreshed]) -> Verdict {
    let accepted = outcomes
        .iter()
        .filter(|o| **o == Refreshed::Accepted)
        .count();
    if accepted > 1 {
        Verdict::Violated(Invariant::RefreshAcceptedTwice)
    } else {
        Verdict::Consistent
    }
}

/// After reuse was detected: the session must have ended (no check passes) and the family's
/// latest token must be refused.
pub(crate) fn judge_after_reuse(session_passed: bool, latest: Refreshed) -> Verdict {
    if session_passed || latest == Refreshed::Accepted {
        Verdict::Violated(Invariant::SurvivedReuse)
    } else {
        Verdict::Consistent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_token_accepted_is_a_violation() {
        assert_eq!(
            judge_replay(Refreshed::Accepted, false),
            Verdict::Violated(Invariant::RefreshAcceptedTwice)
        );
        assert_eq!(
            judge_simultaneous(&[Refreshed::Accepted, Refreshed::Accepted]),
            Verdict::Violated(Invariant::RefreshAcceptedTwice)
        );
        assert_eq!(
            judge_simultaneous(&[
                Refreshed::Accepted,
                Refreshed::Refused(ErrorKind::TokenReuseDetected)
            ]),
            Verdict::Consistent
        );
    }

    #[test]
    fn a_live_family_must_answer_a_replay_with_reuse_detection() {
        let revoked = Refreshed::Refused(ErrorKind::TokenRevoked);
        assert_eq!(
            judge_replay(revoked, true),
            Verdict::Violated(Invariant::ReuseNotDetected)
        );
        assert_eq!(judge_replay(revoked, false), Verdict::Consistent);
        assert_eq!(
            judge_replay(Refreshed::Refused(ErrorKind::TokenReuseDetected), true),
            Verdict::Consistent
        );
        assert_eq!(judge_replay(Refreshed::Failed, true), Verdict::Unjudged);
    }

    #[test]
    fn reuse_detection_must_end_session_and_family() {
        let refused = Refreshed::Refused(ErrorKind::TokenRevoked);
        assert_eq!(judge_after_reuse(false, refused), Verdict::Consistent);
        assert_eq!(
            judge_after_reuse(true, refused),
            Verdict::Violated(Invariant::SurvivedReuse)
        );
        assert_eq!(
            judge_after_reuse(false, Refreshed::Accepted),
            Verdict::Violated(Invariant::SurvivedReuse)
        );
    }

    #[test]
    fn a_fresh_token_refused_as_reused_is_a_violation() {
        assert_eq!(
            judge_fresh(Refreshed::Refused(ErrorKind::TokenReuseDetected)),
            Verdict::Violated(Invariant::FreshTokenRefused)
        );
        assert_eq!(
            judge_fresh(Refreshed::Refused(ErrorKind::TokenRevoked)),
            Verdict::Consistent
        );
        assert_eq!(
            Refreshed::from_kind(ErrorKind::ProviderConnection),
            Refreshed::Failed
        );
    }
}
