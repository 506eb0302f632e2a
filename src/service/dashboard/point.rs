//! One second of the cluster's figures: what the charts plot.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sum::ClusterDelta;
use crate::telemetry::live::LatencyHistogram;

/// The series every point has: all tasks.
pub const ALL: &str = "all";

/// The cluster's figures over one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// The second, unix seconds.
    pub at: i64,
    /// Per series: `all`, `queue:<name>`, `type:<name>` and `queue:<name>/type:<name>`. Only
    /// series with something to show are present.
    pub series: BTreeMap<String, SeriesPoint>,
    /// Per provider.
    pub providers: BTreeMap<String, ProviderPoint>,
}

/// One series over one second, sent as an array to keep 15 minutes of history small:
/// `[submitted, completed, failed, retried, p50_ms, p95_ms, p99_ms]` (latencies `null` when
/// nothing finished).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoint(
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
);

impl SeriesPoint {
    /// Tasks submitted.
    pub fn submitted(&self) -> u64 {
        self.0
    }

    /// Tasks completed.
    pub fn completed(&self) -> u64 {
        self.1
    }

    /// Tasks failed for good.
    pub fn failed(&self) -> u64 {
        self.2
    }
}

/// One provider over one second: `[calls, ok, latency_ms_sum, cost_micros]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderPoint(pub u64, pub u64, pub u64, pub u64);

impl ProviderPoint {
    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.0
    }
}

/// Counts and latencies of one series, summed before the quantiles are taken.
#[derive(Default)]
struct Acc {
    submitted: u64,
    completed: u64,
    failed: u64,
    retried: u64,
    latency: LatencyHistogram,
}

impl Acc {
    fn point(&self) -> Option<SeriesPoint> {
        let empty = self.submitted + self.completed + self.failed + self.retried == 0;
        let q = |q| {
            self.latency
                .quantile(q)
                .map(|ms| (ms * 10.0).round() / 10.0)
        };
        (!empty).then(|| {
            SeriesPoint(
                self.submitted,
                self.completed,
                self.failed,
                self.retried,
                q(0.50),
                q(0.95),
                q(0.99),
            )
        })
    }
}

impl Point {
    /// The point of second `at` from what the cluster counted during it.
    pub fn from_delta(at: i64, delta: &ClusterDelta) -> Self {
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        acc.entry(ALL.to_owned()).or_default();
        for s in delta.series.values() {
            let keys = [
                ALL.to_owned(),
                format!("queue:{}", s.queue),
                format!("type:{}", s.task_type),
                format!("queue:{}/type:{}", s.queue, s.task_type),
            ];
            for key in keys {
                let a = acc.entry(key).or_default();
                a.submitted += s.submitted;
                a.completed += s.completed;
                a.failed += s.failed;
                a.retried += s.retried;
                a.latency.add(&s.latency);
            }
        }
        let mut series: BTreeMap<String, SeriesPoint> = acc
            .iter()
            .filter_map(|(k, a)| Some((k.clone(), a.point()?)))
            .collect();
        // `all` is always there, so a quiet second still plots as zero.
        series.entry(ALL.to_owned()).or_default();
        let providers = delta
            .providers
            .values()
            .filter(|p| p.calls > 0)
            .map(|p| {
                let point = ProviderPoint(p.calls, p.ok, p.latency_ms, p.cost_micros);
                (p.provider.clone(), point)
            })
            .collect();
        Self {
            at,
            series,
            providers,
        }
    }
}
