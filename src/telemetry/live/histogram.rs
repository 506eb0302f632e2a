//! A small fixed-bucket latency histogram: cheap to record, to add up across instances and
//! to subtract (for per-second deltas of cumulative counts), and precise enough for P50, P95
//! and P99 on a chart.

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in milliseconds (1-2-5 steps); one more bucket holds the rest.
pub const BOUNDS_MS: [u64; 17] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000, 120_000,
    300_000,
];

/// Number of buckets: one per bound plus the overflow.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Counts of latencies per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LatencyHistogram {
    /// One count per bucket; shorter (or empty) when the high buckets are all zero.
    counts: Vec<u64>,
}

impl LatencyHistogram {
    /// Counts one latency of `ms` milliseconds.
    pub fn record(&mut self, ms: u64) {
        let i = BOUNDS_MS.partition_point(|&b| b < ms);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        let n = other.counts.len().min(BUCKETS);
        if self.counts.len() < n {
            self.counts.resize(n, 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// What `self` counted beyond `earlier` (bucket by bucket, never below zero).
    pub fn since(&self, earlier: &Self) -> Self {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Self { counts }
    }

    /// Latencies counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0 to 1) in milliseconds, interpolated inside its bucket; `None` when
    /// nothing was counted. The overflow bucket answers with the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let Some(&upper) = BOUNDS_MS.get(i) else {
                    return Some(BOUNDS_MS[BOUNDS_MS.len() - 1] as f64);
                };
                let lower = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
                let within = (rank - seen as f64) / c as f64;
                return Some(lower as f64 + within * (upper - lower) as f64);
            }
            seen += c;
        }
        Some(BOUNDS_MS[BOUNDS_MS.len() - 1] as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let mut h = LatencyHistogram::default();
        for _ in 0..98 {
            h.record(3);
        }
        h.record(150);
        h.record(400_000);
        let p50 = h.quantile(0.5).unwrap();
        assert!((2.0..=5.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((100.0..=200.0).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), Some(300_000.0));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn deltas_and_sums_are_per_bucket() {
        let mut earlier = LatencyHistogram::default();
        earlier.record(1);
        let mut now = earlier.clone();
        now.record(1);
        now.record(7);
        let delta = now.since(&earlier);
        assert_eq!(delta.total(), 2);
        let mut sum = earlier.clone();
        sum.add(&delta);
        assert_eq!(sum, now);
        assert_eq!(earlier.since(&now).total(), 0, "never below zero");
    }
}
