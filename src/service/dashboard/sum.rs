//! Turns every instance's cumulative counters into what the cluster counted since the last
//! tick: per instance, this sample minus the one before.

use std::collections::{BTreeMap, HashMap};

use crate::telemetry::live::{InstanceSample, ProviderTotals, SeriesTotals};

/// An instance that started this recently when first seen is counted from zero; one seen
/// first later (this instance just started) is only a baseline, or its whole past would land
/// in one second.
const NEW_INSTANCE_MS: i64 = 5_000;

/// What the cluster counted between two ticks.
#[derive(Debug, Default)]
pub struct ClusterDelta {
    /// Per (queue, task type).
    pub series: BTreeMap<(String, String), SeriesTotals>,
    /// Per provider.
    pub providers: BTreeMap<String, ProviderTotals>,
}

/// The previous sample of each instance.
#[derive(Debug, Default)]
pub struct ClusterSummer {
    previous: HashMap<String, InstanceSample>,
}

impl ClusterSummer {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster's counts since the previous call, from the latest `samples` (one per
    /// instance) taken around `now_ms`.
    pub fn step(&mut self, samples: &[InstanceSample], now_ms: i64) -> ClusterDelta {
        let mut delta = ClusterDelta::default();
        let mut seen = HashMap::with_capacity(samples.len());
        for s in samples {
            let earlier = match self.previous.get(&s.instance) {
                Some(p) if p.boot == s.boot => Some(p),
                // Restarted: its counters began again from zero.
                Some(_) => None,
                None if now_ms - s.started_ms <= NEW_INSTANCE_MS => None,
                None => Some(s),
            };
            add_series(&mut delta, s, earlier);
            add_providers(&mut delta, s, earlier);
            seen.insert(s.instance.clone(), s.clone());
        }
        self.previous = seen;
        delta
    }
}

fn add_series(delta: &mut ClusterDelta, now: &InstanceSample, earlier: Option<&InstanceSample>) {
    for s in &now.series {
        let before = earlier.and_then(|e| {
            e.series
                .iter()
                .find(|b| b.queue == s.queue && b.task_type == s.task_type)
        });
        let d = delta
            .series
            .entry((s.queue.clone(), s.task_type.clone()))
            .or_insert_with(|| SeriesTotals {
                queue: s.queue.clone(),
                task_type: s.task_type.clone(),
                ..SeriesTotals::default()
            });
        let zero = SeriesTotals::default();
        let b = before.unwrap_or(&zero);
        d.submitted += s.submitted.saturating_sub(b.submitted);
        d.completed += s.completed.saturating_sub(b.completed);
        d.failed += s.failed.saturating_sub(b.failed);
        d.retried += s.retried.saturating_sub(b.retried);
        d.latency.add(&s.latency.since(&b.latency));
    }
}

fn add_providers(delta: &mut ClusterDelta, now: &InstanceSample, earlier: Option<&InstanceSample>) {
    for p in &now.providers {
        let zero = ProviderTotals::default();
        let b = earlier
            .and_then(|e| e.providers.iter().find(|b| b.provider == p.provider))
            .unwrap_or(&zero);
        let d = delta
            .providers
            .entry(p.provider.clone())
            .or_insert_with(|| ProviderTotals {
                provider: p.provider.clone(),
                ..ProviderTotals::default()
            });
        d.calls += p.calls.saturating_sub(b.calls);
        d.ok += p.ok.saturating_sub(b.ok);
        d.latency_ms += p.latency_ms.saturating_sub(b.latency_ms);
        d.cost_micros += p.cost_micros.saturating_sub(b.cost_micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(instance: &str, boot: u64, started_ms: i64, submitted: u64) -> InstanceSample {
        InstanceSample {
            instance: instance.into(),
            boot,
            started_ms,
            series: vec![SeriesTotals {
                queue: "default".into(),
                task_type: "echo".into(),
                submitted,
                ..SeriesTotals::default()
            }],
            ..InstanceSample::default()
        }
    }

    fn submitted(d: &ClusterDelta) -> u64 {
        d.series.values().map(|s| s.submitted).sum()
    }

    #[test]
    fn sums_the_increase_of_every_instance() {
        let mut sum = ClusterSummer::new();
        // Seen first long after they started: a baseline.
        let d = sum.step(&[sample("a", 1, 0, 100), sample("b", 1, 0, 50)], 60_000);
        assert_eq!(submitted(&d), 0);
        let d = sum.step(&[sample("a", 1, 0, 110), sample("b", 1, 0, 55)], 61_000);
        assert_eq!(submitted(&d), 15);
        // b restarted (new boot): counted from zero; c is new: counted from zero.
        let d = sum.step(
            &[
                sample("a", 1, 0, 110),
                sample("b", 2, 61_500, 3),
                sample("c", 1, 61_800, 4),
            ],
            62_000,
        );
        assert_eq!(submitted(&d), 7);
    }
}
