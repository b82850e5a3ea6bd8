//! Resident memory and open file descriptors of this process, sampled through a provider's run, and
//! the judge that tells a plateau from growth.
//!
//! The first fifth of a run is warm-up (pools connect, allocator arenas and the slots fill); the
//! rest is split in halves, and the median of the second half may exceed the median of the first
//! by the slack only. A leak that grows steadily by `G` over the judged part moves the median by
//! about `G / 2`, so it is caught once that exceeds the slack; noise and one-off spikes move a
//! median little.

use std::fs;

use crate::model::Invariant;

/// Samples taken before this fraction of the run are not judged.
const WARM_UP: f64 = 0.2;
/// Growth of resident memory tolerated between the halves: this much or this fraction of the
/// first half's median, whichever is larger.
const RSS_SLACK_BYTES: u64 = 16 << 20;
const RSS_SLACK_FRACTION: f64 = 0.10;
/// Growth of open descriptors tolerated (a pool reconnecting one connection late is not a leak).
const FD_SLACK: u64 = 4;
/// Fewest judged samples per half for a verdict.
const MIN_SAMPLES: usize = 3;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) rss_bytes: u64,
    pub(crate) fds: u64,
}

/// Reads `VmRSS` from `/proc/self/status` and counts `/proc/self/fd`; `None` where there is no
/// `/proc` (the check is then reported as not run).
pub(crate) fn sample() -> Option<Sample> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // The directory handle `read_dir` holds is one of the entries; it is there on every sample.
    let fds = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(Sample {
        rss_bytes: rss_kib * 1024,
        fds,
    })
}

/// The medians of the two judged halves, and the verdicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Growth {
    pub(crate) rss: Option<(u64, u64)>,
    pub(crate) fds: Option<(u64, u64)>,
    pub(crate) violations: Vec<Invariant>,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Judges the samples of one run (in the order taken, evenly spaced).
pub(crate) fn judge(samples: &[Sample]) -> Growth {
    let skip = (samples.len() as f64 * WARM_UP).ceil() as usize;
    let judged = samples.get(skip..).unwrap_or(&[]);
    let half = judged.len() / 2;
    let mut growth = Growth::default();
    if half < MIN_SAMPLES {
        return growth;
    }
    let (first, second) = (&judged[..half], &judged[judged.len() - half..]);
    let halves = |f: fn(&Sample) -> u64| {
        (
            median(first.iter().map(f).collect()),
            median(second.iter().map(f).collect()),
        )
    };
    let rss = halves(|s| s.rss_bytes);
    let fds = halves(|s| s.fds);
    let rss_slack = RSS_SLACK_BYTES.max((rss.0 as f64 * RSS_SLACK_FRACTION) as u64);
    if rss.1 > rss.0 + rss_slack {
        growth.violations.push(Invariant::MemoryGrowth);
    }
    if fds.1 > fds.0 + FD_SLACK {
        growth.violations.push(Invariant::FdGrowth);
    }
    growth.rss = Some(rss);
    growth.fds = Some(fds);
    growth
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn run(f: impl Fn(u64) -> Sample) -> Vec<Sample> {
        (0..100).map(f).collect()
    }

    #[test]
    fn a_plateau_with_noise_and_warm_up_passes() {
        let samples = run(|i| Sample {
            // Warm-up climbs, then it wobbles around 100 MiB with one spike.
            rss_bytes: if i < 15 {
                i * 6 * MIB
            } else {
                100 * MIB + (i % 3) * MIB
            } + if i == 90 { 50 * MIB } else { 0 },
            fds: if i < 10 { 5 + i } else { 20 + i % 2 },
        });
        assert_eq!(judge(&samples).violations, []);
    }

    #[test]
    fn steady_growth_is_caught() {
        // 1 MiB and one descriptor every sample: a leak of a connection per operation batch.
        let samples = run(|i| Sample {
            rss_bytes: 50 * MIB + i * MIB,
            fds: 10 + i,
        });
        assert_eq!(
            judge(&samples).violations,
            [Invariant::MemoryGrowth, Invariant::FdGrowth]
        );
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        let samples = run(|i| Sample {
            rss_bytes: i * 100 * MIB,
            fds: i,
        });
        assert_eq!(judge(&samples[..5]), Growth::default());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample().expect("/proc is readable on Linux");
        assert!(s.rss_bytes > 0 && s.fds >= 3);
    }
}
