//! A small seeded generator (SplitMix64) for the workload's choices: the soak needs spread, not
//! secrecy, and a seed printed with the run makes a red run's choices reproducible per task.

/// SplitMix64 (Steele, Lea and Flood): one 64-bit state, full period, good enough mixing.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one task: the run's seed mixed with the task's number, so tasks differ.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; the modulo bias is irrelevant at these sizes).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A value in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// `true` with probability `1 / n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_differs_per_stream() {
        let mut a = Rng::new(7, 0);
        let mut b = Rng::new(7, 1);
        assert_ne!(a.next_u64(), b.next_u64());
        for _ in 0..1000 {
            let v = a.between(1, 3);
            assert!((1..=3).contains(&v));
        }
    }
}
