//! Login throttling: failed attempts in a sliding window, per account and per client key.
//!
//! Keys are kept as 64-bit keyed hashes, never as the strings themselves, so memory per key is
//! fixed whatever a client sends. The hash is SipHash (std's `DefaultHasher`) over a per-service
//! random seed and the key: without the seed an attacker cannot aim two keys at one slot, and a
//! collision (about 2^-64 per pair) only merges two counters, which can only throttle earlier,
//! never later.

use std::{
    collections::{HashMap, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Mutex, PoisonError},
};

use psm_core::{Error, ErrorKind, RandomSource, Result, Timestamp};

use crate::auth::config::ThrottleConfig;

/// The account key every login whose email does not parse is counted under: such logins can never
/// succeed, and one key for all of them keeps them from filling the map.
pub(crate) const INVALID_ACCOUNT: &str = "<invalid>";

/// A tracked key: a keyed 64-bit hash of the account or client key.
type Key = u64;

type Counters = HashMap<Key, VecDeque<Timestamp>>;

/// The two counters one login attempt touches.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    window_micros: i64,
    seed: [u8; 16],
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: Counters,
    clients: Counters,
}

/// A started attempt, counted as a failure until [`Throttle::succeeded`] forgives it.
#[derive(Debug)]
pub(crate) struct Attempt {
    account: Key,
    client: Option<Key>,
    at: Timestamp,
}

/// One of the two maps an attempt is counted in.
struct Scope<'a> {
    map: &'a mut Counters,
    key: Key,
    max: usize,
    name: &'static str,
}

impl Throttle {
    /// A throttle whose key hashes are seeded from `rng`.
    pub(crate) fn new(config: ThrottleConfig, rng: &dyn RandomSource) -> Result<Self> {
        let mut seed = [0u8; 16];
        rng.fill(&mut seed)?;
        Ok(Self {
            config,
            window_micros: i64::try_from(config.window.as_micros()).unwrap_or(i64::MAX),
            seed,
            state: Mutex::new(State::default()),
        })
    }

    fn key(&self, domain: u8, key: &str) -> Key {
        let mut h = DefaultHasher::new();
        self.seed.hash(&mut h);
        domain.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// Starts an attempt: fails with `RateLimited` (and a `retry_after` in seconds) when the account
    /// or the client key is over its limit, or (scope `global`) when a new key must be tracked but
    /// every tracked key is at or near its limit; otherwise counts the attempt as a failure,
    /// atomically with the check, so concurrent guesses cannot pass the limit together.
    ///
    /// `client` is `None` for attempts with no client (a password change), counted per account only.
    pub(crate) fn begin(
        &self,
        account: &str,
        client: Option<&str>,
        now: Timestamp,
    ) -> Result<Attempt> {
        let account = self.key(b'a', account);
        let client = client.map(|c| self.key(b'c', c));
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let as_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let mut scopes = vec![Scope {
            map: &mut state.accounts,
            key: account,
            max: as_usize(self.config.max_failures_per_account),
            name: "account",
        }];
        if let Some(key) = client {
            scopes.push(Scope {
                map: &mut state.clients,
                key,
                max: as_usize(self.config.max_failures_per_client),
                name: "client",
            });
        }
        let mut retry_after: Option<(u64, &'static str)> = None;
        for s in &mut scopes {
            let Some(q) = s.map.get_mut(&s.key) else {
                continue;
            };
            prune(q, now, self.window_micros);
            if q.len() >= s.max {
                // The oldest counted failure that must leave the window before one more is allowed.
                let secs = self.secs_until_free(q[q.len() - s.max], now);
                note(&mut retry_after, secs, s.name);
            }
        }
        if retry_after.is_none() {
            for s in &mut scopes {
                if let Err(secs) = self.make_room(s, now) {
                    note(&mut retry_after, secs, "global");
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
        for s in scopes {
            let q = s.map.entry(s.key).or_default();
            q.push_back(now);
            // Only the newest `max` failures decide anything.
            while q.len() > s.max {
                q.pop_front();
            }
        }
        Ok(Attempt {
            account,
            client,
            at: now,
        })
    }

    /// Seconds until a failure counted at `at` leaves the window (at least 1).
    fn secs_until_free(&self, at: Timestamp, now: Timestamp) -> u64 {
        let free_at =
            Timestamp::from_unix_micros(at.as_unix_micros().saturating_add(self.window_micros));
        free_at.secs_until_ceil(now).max(1)
    }

    /// Makes room for `scope.key` when it is new and the map is full: forgets stale keys, then the
    /// keys with the fewest recent failures (a batch, so a full map is not rescanned on every login),
    /// but never a key at or near its limit, since forgetting that one would lift a lock. When every
    /// key is that hot, fails with the seconds until the first of them frees a slot.
    fn make_room(&self, scope: &mut Scope<'_>, now: Timestamp) -> std::result::Result<(), u64> {
        let cap = self.config.max_tracked_keys;
        let map = &mut *scope.map;
        if map.contains_key(&scope.key) || map.len() < cap {
            return Ok(());
        }
        let window = self.window_micros;
        map.retain(|_, q| {
            prune(q, now, window);
            !q.is_empty()
        });
        if map.len() < cap {
            return Ok(());
        }
        let hot = hot_threshold(scope.max);
        // Coldest first: fewest failures, then the longest since the last one.
        let mut cold: Vec<(usize, Timestamp, Key)> = map
            .iter()
            .filter(|(_, q)| q.len() < hot)
            .filter_map(|(k, q)| q.back().map(|t| (q.len(), *t, *k)))
            .collect();
        if cold.is_empty() {
            let first_free = map
                .values()
                .filter_map(|q| q.front())
                .min()
                .map_or(1, |t| self.secs_until_free(*t, now));
            return Err(first_free);
        }
        let batch = (cap / 8).clamp(1, cold.len());
        if batch < cold.len() {
            cold.select_nth_unstable(batch - 1);
        }
        for (_, _, k) in &cold[..batch] {
            map.remove(k);
        }
        Ok(())
    }

    /// Forgives a successful attempt: clears the account's failures and removes this attempt from
    /// the client key's count (its other failures stay, so logging in to one's own account does not
    /// reset a guessing client).
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.accounts.remove(&attempt.account);
        let Some(client) = attempt.client else {
            return;
        };
        if let Some(q) = state.clients.get_mut(&client) {
            if let Some(i) = q.iter().rposition(|t| *t == attempt.at) {
                q.remove(i);
            }
            if q.is_empty() {
                state.clients.remove(&client);
            }
        }
    }
}

/// Keeps the longest wait of the limits an attempt hits.
fn note(retry_after: &mut Option<(u64, &'static str)>, secs: u64, scope: &'static str) {
    if retry_after.is_none_or(|(s, _)| secs > s) {
        *retry_after = Some((secs, scope));
    }
}

/// Failures from which a key counts as at or near its limit `max` and is never evicted: within a
/// fifth of the limit (at least one failure short of it).
fn hot_threshold(max: usize) -> usize {
    max.saturating_sub((max / 5).max(1))
}

fn prune(q: &mut VecDeque<Timestamp>, now: Timestamp, window: i64) {
    while q.front().is_some_and(|t| now.micros_since(*t) >= window) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use psm_core::OsRandom;

    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(
            ThrottleConfig {
                window: Duration::from_secs(900),
                max_failures_per_account: 3,
                max_failures_per_client: 5,
                max_tracked_keys: 4,
            },
            &OsRandom,
        )
        .unwrap()
    }

    #[test]
    fn account_limit_and_retry_after() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        for i in 0..3 {
            t.begin("a", Some("ip"), t0.plus_secs(i * 10)).unwrap();
        }
        let e = t.begin("a", Some("ip2"), t0.plus_secs(30)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.detail("retry_after"), Some("870"));
        assert_eq!(e.detail("scope"), Some("account"));
        // Another account from the same client still works until the client limit.
        t.begin("b", Some("ip"), t0.plus_secs(30)).unwrap();
        // The oldest failure leaves the window.
        t.begin("a", Some("ip3"), t0.plus_secs(900)).unwrap();
    }

    #[test]
    fn client_limit_across_accounts() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        for i in 0..5 {
            t.begin(&format!("acct{i}"), Some("ip"), t0).unwrap();
        }
        let e = t.begin("fresh", Some("ip"), t0).unwrap_err();
        assert_eq!(e.detail("scope"), Some("client"));
        assert_eq!(e.detail("retry_after"), Some("900"));
    }

    #[test]
    fn success_forgives_account_and_its_own_attempt() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        t.begin("a", Some("ip"), t0).unwrap();
        t.begin("a", Some("ip"), t0.plus_secs(1)).unwrap();
        let ok = t.begin("a", Some("ip"), t0.plus_secs(2)).unwrap();
        t.succeeded(ok);
        for i in 0..3 {
            t.begin("a", Some("ip"), t0.plus_secs(3 + i)).unwrap();
        }
        // Client: 2 failures kept + 3 new = 5, the limit.
        assert_eq!(
            t.begin("z", Some("ip"), t0.plus_secs(10))
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
            t.begin(
                &format!("acct{i}"),
                Some(&format!("ip{i}")),
                t0.plus_secs(i),
            )
            .unwrap();
        }
        let state = t.state.lock().unwrap();
        assert!(state.accounts.len() <= 4 && state.clients.len() <= 4);
    }

    #[test]
    fn hot_keys_survive_a_full_map() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        // Lock "victim" (3 failures, the limit).
        for i in 0..3 {
            t.begin("victim", Some(&format!("v{i}")), t0).unwrap();
        }
        // Spray far more fresh accounts and clients than the map holds.
        for i in 0..100 {
            let _ = t.begin(
                &format!("spray{i}"),
                Some(&format!("ip{i}")),
                t0.plus_secs(1),
            );
        }
        let e = t
            .begin("victim", Some("fresh"), t0.plus_secs(2))
            .unwrap_err();
        assert_eq!(e.detail("scope"), Some("account"));
        let state = t.state.lock().unwrap();
        assert!(state.accounts.len() <= 4 && state.clients.len() <= 4);
    }

    #[test]
    fn every_key_hot_answers_global() {
        let t = throttle();
        let t0 = Timestamp::from_unix_secs(1_000_000);
        // Four accounts, each one short of its limit of 3 (hot), fill the map.
        for a in 0..4 {
            for i in 0..2 {
                t.begin(&format!("acct{a}"), None, t0.plus_secs(i)).unwrap();
            }
        }
        let e = t.begin("new", None, t0.plus_secs(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.detail("scope"), Some("global"));
        assert_eq!(e.detail("retry_after"), Some("890"));
        // Every hot account is still counted.
        for a in 0..4 {
            t.begin(&format!("acct{a}"), None, t0.plus_secs(11))
                .unwrap();
            let e = t
                .begin(&format!("acct{a}"), None, t0.plus_secs(12))
                .unwrap_err();
            assert_eq!(e.detail("scope"), Some("account"));
        }
        // Once the window has passed, stale keys make room again.
        t.begin("new", None, t0.plus_secs(1000)).unwrap();
    }

    #[test]
    fn keys_are_fixed_size_hashes() {
        let t = throttle();
        let long = "x".repeat(100_000);
        let a = t
            .begin(&long, Some(&long), Timestamp::from_unix_secs(1))
            .unwrap();
        assert_ne!(Some(a.account), a.client, "accounts and clients are apart");
        let other = throttle();
        assert_ne!(t.key(b'a', "k"), other.key(b'a', "k"), "seeded per service");
    }
}
