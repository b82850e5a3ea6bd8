//! Login throttling: failed attempts in a sliding window, per account and per client key.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
};

use psm_core::{Error, ErrorKind, Result, Timestamp};

use crate::auth::config::ThrottleConfig;

/// The two counters one login attempt touches.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    window_micros: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, VecDeque<Timestamp>>,
    clients: HashMap<String, VecDeque<Timestamp>>,
}

/// A started attempt, counted as a failure until [`Throttle::succeeded`] forgives it.
#[derive(Debug)]
pub(crate) struct Attempt {
    account: String,
    client: String,
    at: Timestamp,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            window_micros: i64::try_from(config.window.as_micros()).unwrap_or(i64::MAX),
            state: Mutex::new(State::default()),
        }
    }

    /// Starts an attempt: fails with `RateLimited` (and a `retry_after` in seconds) when the account
    /// or the client key is over its limit; otherwise counts the attempt as a failure, atomically with
    /// the check, so concurrent guesses cannot pass the limit together.
    pub(crate) fn begin(&self, account: &str, client: &str, now: Timestamp) -> Result<Attempt> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let limits = [
            (
                &mut state.accounts,
                account,
                self.config.max_failures_per_account,
                "account",
            ),
            (
                &mut state.clients,
                client,
                self.config.max_failures_per_client,
                "client",
            ),
        ];
        let mut retry_after: Option<(u64, &'static str)> = None;
        for (map, key, max, scope) in limits {
            let Some(q) = map.get_mut(key) else { continue };
            prune(q, now, self.window_micros);
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            if q.len() >= max {
                // The oldest counted failure that must leave the window before one more is allowed.
                let oldest = q[q.len() - max];
                let free_at = Timestamp::from_unix_micros(
                    oldest.as_unix_micros().saturating_add(self.window_micros),
                );
                let secs = free_at.secs_until_ceil(now).max(1);
                if retry_after.is_none_or(|(s, _)| secs > s) {
                    retry_after = Some((secs, scope));
                }
            }
        }
        if let Some((secs, scope)) = retry_after {
            return Err(
                Error::new(ErrorKind::RateLimited, "too many failed login attempts")
                    .with_detail("retry_after", secs)
                    .with_detail("scope", scope),
            );
        }
        let cap = self.config.max_tracked_keys;
        let keep_a = usize::try_from(self.config.max_failures_per_account).unwrap_or(usize::MAX);
        let keep_c = usize::try_from(self.config.max_failures_per_client).unwrap_or(usize::MAX);
        let window = self.window_micros;
        record(&mut state.accounts, account, now, keep_a, cap, window);
        record(&mut state.clients, client, now, keep_c, cap, window);
        Ok(Attempt {
            account: account.to_owned(),
            client: client.to_owned(),
            at: now,
        })
    }

    /// Forgives a successful attempt: clears the account's failures and removes this attempt from
    /// the client key's count (its other failures stay, so logging in to one's own account does not
    /// reset a guessing client).
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.accounts.remove(&attempt.account);
        if let Some(q) = state.clients.get_mut(&attempt.client) {
            if let Some(i) = q.iter().rposition(|t| *t == attempt.at) {
                q.remove(i);
            }
            if q.is_empty() {
                state.clients.remove(&attempt.client);
            }
        }
    }
}

fn prune(q: &mut VecDeque<Timestamp>, now: Timestamp, window: i64) {
    while q.front().is_some_and(|t| now.micros_since(*t) >= window) {
        q.pop_front();
    }
}

fn record(
    map: &mut HashMap<String, VecDeque<Timestamp>>,
    key: &str,
    now: Timestamp,
    keep: usize,
    cap: usize,
    window: i64,
) {
    if !map.contains_key(key) && map.len() >= cap {
        // Forget stale keys first; if every key is live, forget the half that failed longest ago.
        map.retain(|_, q| {
            prune(q, now, window);
            !q.is_empty()
        });
        if map.len() >= cap {
            let mut last: Vec<Timestamp> = map.values().filter_map(|q| q.back().copied()).collect();
            last.sort_unstable();
            let cut = last[last.len() / 2];
            map.retain(|_, q| q.back().is_some_and(|t| *t > cut));
        }
    }
    let q = map.entry(key.to_owned()).or_default();
    q.push_back(now);
    // Only the newest `keep` failures decide anything.
    while q.len() > keep {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig {
            window: Duration::from_secs(900),
            max_failures_per_account: 3,
            max_failures_per_client: 5,
            max_tracked_keys: 4,
        })
    }

    #[test]
    fn account_limit_and_retry_after() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        for i in 0..3 {
            t.begin("a", "ip", t0.plus_secs(i * 10)).unwrap();
        }
        let e = t.begin("a", "ip2", t0.plus_secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.detail("retry_after"), Some("870"));
        assert_eq!(e.detail("scope"), Some("account"));
        // Another account from the same client still works until the client limit.
        t.begin("b", "ip", t0.plus_secs(30)).unwrap();
        // The oldest failure leaves the window.
        t.begin("a", "ip3", t0.plus_secs(900)).unwrap();
    }

    #[test]
    fn client_limit_across_accounts() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        for i in 0..5 {
            t.begin(&format!("acct{i}"), "ip", t0).unwrap();
        }
        let e = t.begin("fresh", "ip", t0).unwrap_err();
        assert_eq!(e.detail("scope"), Some("client"));
        assert_eq!(e.detail("retry_after"), Some("900"));
    }

    #[test]
    fn success_forgives_account_and_its_own_attempt() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        t.begin("a", "ip", t0).unwrap();
        t.begin("a", "ip", t0.plus_secs(1)).unwrap();
        let ok = t.begin("a", "ip", t0.plus_secs(2)).unwrap();
        t.succeeded(ok);
        for i in 0..3 {
            t.begin("a", "ip", t0.plus_secs(3 + i)).unwrap();
        }
        // Client: 2 failures kept + 3 new = 5, the limit.
        assert_eq!(
            t.begin("z", "ip", t0.plus_secs(10))
                .unwrap_err()
                .detail("scope"),
            Some("client")
        );
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        for i in 0..100 {
            t.begin(&format!("acct{i}"), &format!("ip{i}"), t0.plus_secs(i))
                .unwrap();
        }
        let state = t.state.lock().unwrap();
        assert!(state.accounts.len() <= 4 && state.clients.len() <= 4);
    }
}
