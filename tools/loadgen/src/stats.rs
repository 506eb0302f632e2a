//! Latency histograms (HdrHistogram, microseconds) and the percentiles the report prints.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency the histograms track: one hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A histogram of microseconds from 1 µs to one hour, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).context("creating a histogram")
}

/// A duration in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Percentiles of one histogram, in milliseconds with two decimals.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| round2(us as f64 / 1000.0);
        Some(Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }

    /// One report line: the percentiles (and the max, if `with_max`), or `n/a`.
    pub fn line(s: &Option<Self>, with_max: bool) -> String {
        match s {
            None => "n/a".to_owned(),
            Some(s) if with_max => format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms  (n={})",
                s.p50, s.p95, s.p99, s.max, s.count
            ),
            Some(s) => format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2} ms  (n={})",
                s.p50, s.p95, s.p99, s.count
            ),
        }
    }
}

/// `v` rounded to two decimals.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_in_milliseconds() {
        let mut h = histogram().unwrap();
        assert!(Summary::of(&h).is_none());
        assert_eq!(Summary::line(&Summary::of(&h), true), "n/a");
        // Below 2,048 µs three significant digits record every value exactly.
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(
            Summary::line(&s, true),
            "p50 0.50  p95 0.95  p99 0.99  max 1.00 ms  (n=1000)"
        );
        assert_eq!(
            Summary::line(&s, false),
            "p50 0.50  p95 0.95  p99 0.99 ms  (n=1000)"
        );
    }
}
