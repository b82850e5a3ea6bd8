//! Time as a port: [`Clock`], the real [`SystemClock`], and a controllable [`ManualClock`] for tests.

use std::{
    cell::Cell,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::Timestamp;

/// A source of the current time. Stores that keep time themselves take one, so TTL behaviour is
/// tested without sleeping.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// A clock shared behind an `Arc`.
pub type DynClock = Arc<dyn Clock>;

/// The wall clock, read cheaply.
///
/// Each thread anchors to the operating system's wall clock (`SystemTime::now`) and advances from the
/// anchor with the CPU's invariant time-stamp counter (through `quanta`), re-anchoring every 100 ms.
/// Why not `SystemTime::now` on every call: its vDSO path issues an ordered `rdtsc` (an `lfence`),
/// which stalls every outstanding memory load; on a check that is otherwise a few cache misses, that
/// fence cost several hundred nanoseconds in `cargo xtask bench`. The error against the OS clock stays
/// within the counter's calibration error over 100 ms (microseconds), and a wall-clock step shows up
/// within 100 ms. Where no invariant counter exists, `quanta` falls back to the OS monotonic clock.
///
/// Anchors are per thread, so two threads may disagree by a few microseconds, and a thread's reading
/// can step back by that much when it re-anchors; the OS wall clock itself steps under NTP. Nothing
/// in psm relies on timestamps being strictly monotonic: ties and near-ties are ordered by id.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How long a thread's anchor is trusted before it is read from the OS again.
const REANCHOR_AFTER: Duration = Duration::from_millis(100);

thread_local! {
    static ANCHOR: Cell<Option<(i64, quanta::Instant)>> = const { Cell::new(None) };
}

impl SystemClock {
    /// Reads the operating system's wall clock directly (microseconds since the epoch).
    #[allow(clippy::disallowed_methods)] // The one place that reads the OS wall clock.
    fn os_now_micros() -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let tick = quanta::Instant::now();
        let micros = ANCHOR.with(|anchor| match anchor.get() {
            Some((wall, at)) if tick.saturating_duration_since(at) < REANCHOR_AFTER => {
                let since = tick.saturating_duration_since(at).as_micros();
                wall.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
            }
            _ => {
                let wall = Self::os_now_micros();
                anchor.set(Some((wall, tick)));
                wall
            }
        });
        Timestamp::from_unix_micros(micros)
    }
}

/// A clock that moves only when told. Clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_unix_micros())))
    }

    /// A clock standing at 2024-01-01T00:00:00Z, a convenient fixed start for tests.
    pub fn at_2024() -> Self {
        Self::new(Timestamp::from_unix_secs(1_704_067_200))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock to `t` (may move backwards).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_unix_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_moves_only_when_told() {
        let c = ManualClock::at_2024();
        let c2 = c.clone();
        let t0 = c.now();
        c2.advance(Duration::from_millis(1500));
        assert_eq!(c.now().micros_since(t0), 1_500_000);
        c.set(t0);
        assert_eq!(c2.now(), t0);
    }

    #[test]
    fn system_clock_tracks_the_os_clock() {
        for _ in 0..3 {
            let ours = SystemClock.now().as_unix_micros();
            let os = SystemClock::os_now_micros();
            // Generous: a loaded CI machine may deschedule us between the two reads.
            assert!((ours - os).abs() < 250_000, "drift {} us", ours - os);
            std::thread::sleep(Duration::from_millis(120));
        }
        let a = SystemClock.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = SystemClock.now();
        let step = b.micros_since(a);
        assert!(
            (15_000..5_000_000).contains(&step),
            "a 20 ms sleep advanced {step} us"
        );
    }
}
