//! A fixed-window counter per client key, bounded in memory: how self-registration is throttled
//! (logins are throttled by `AuthService` itself).

use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::Mutex;

/// Most client keys tracked at once; beyond it, expired windows are dropped, and if none has
/// expired the attempt is refused (fail closed, like the login throttle's global state).
const MAX_KEYS: usize = 100_000;

/// Per-key attempt counting.
#[derive(Debug)]
pub(crate) struct Limiter {
    max: u32,
    window: Duration,
    keys: Mutex<HashMap<String, (Instant, u32)>>,
}

/// A refusal: retry after this many seconds; `global` when the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) retry_after: u64,
    pub(crate) global: bool,
}

impl Limiter {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt of `key` at `now`.
    pub(crate) fn attempt(&self, key: &str, now: Instant) -> Result<(), Refused> {
        let mut keys = self.keys.lock();
        if !keys.contains_key(key) && keys.len() >= MAX_KEYS {
            let window = self.window;
            keys.retain(|_, (start, _)| now.duration_since(*start) < window);
            if keys.len() >= MAX_KEYS {
                return Err(Refused {
                    retry_after: self.window.as_secs().max(1),
                    global: true,
                });
            }
        }
        let entry = keys.entry_ref(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.max {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(Refused {
                retry_after: left.as_secs().max(1),
                global: false,
            });
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_window() {
        let l = Limiter::new(2, Duration::from_secs(60));
        let t = Instant::now();
        assert!(l.attempt("a", t).is_ok());
        assert!(l.attempt("a", t).is_ok());
        let refused = l.attempt("a", t + Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                retry_after: 50,
                global: false
            }
        );
        assert!(l.attempt("b", t).is_ok(), "keys are counted apart");
        assert!(
            l.attempt("a", t + Duration::from_secs(60)).is_ok(),
            "a new window"
        );
    }
}
