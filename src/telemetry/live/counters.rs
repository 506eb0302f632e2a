//! This instance's live counters: fed where tasks are submitted and attempts end, and where
//! provider calls are recorded; read once a second into an [`InstanceSample`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::sample::{ProviderTotals, SeriesTotals};
use crate::domain::{QueueName, TaskType};
use crate::telemetry::metrics::AttemptEnd;

/// Cumulative counters since this instance started. One short lock per event: at 1,000 tasks
/// a second that is a few thousand uncontended locks, far below a microsecond each.
#[derive(Default)]
pub struct LiveCounters {
    /// Per queue and task type.
    series: Mutex<HashMap<(QueueName, TaskType), SeriesTotals>>,
    /// Per provider name.
    providers: Mutex<HashMap<String, ProviderTotals>>,
}

impl LiveCounters {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` tasks of `task_type` accepted into `queue`.
    pub fn submitted(&self, queue: QueueName, task_type: TaskType, n: u64) {
        self.with_series(queue, task_type, |s| s.submitted += n);
    }

    /// An attempt ended `end`, `latency` after its task was submitted or fell due.
    pub fn attempt_ended(
        &self,
        queue: QueueName,
        task_type: TaskType,
        end: AttemptEnd,
        latency: Duration,
    ) {
        self.with_series(queue, task_type, |s| match end {
            AttemptEnd::Completed => {
                s.completed += 1;
                s.latency.record(latency.as_millis() as u64);
            }
            AttemptEnd::Failed => {
                s.failed += 1;
                s.latency.record(latency.as_millis() as u64);
            }
            AttemptEnd::Retried => s.retried += 1,
            AttemptEnd::Cancelled => {}
        });
    }

    /// A call to `provider` ended (`ok` or not) after `latency_ms`, costing `cost_micros`.
    pub fn provider_call(&self, provider: &str, ok: bool, latency_ms: u64, cost_micros: u64) {
        let mut all = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(provider) {
            all.insert(
                provider.to_owned(),
                ProviderTotals {
                    provider: provider.to_owned(),
                    ..ProviderTotals::default()
                },
            );
        }
        if let Some(p) = all.get_mut(provider) {
            p.calls += 1;
            p.ok += u64::from(ok);
            p.latency_ms += latency_ms;
            p.cost_micros += cost_micros;
        }
    }

    /// Every series' totals so far, by queue then type.
    pub fn series(&self) -> Vec<SeriesTotals> {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<SeriesTotals> = all.values().cloned().collect();
        out.sort_by(|a, b| (&a.queue, &a.task_type).cmp(&(&b.queue, &b.task_type)));
        out
    }

    /// Every provider's totals so far, by name.
    pub fn providers(&self) -> Vec<ProviderTotals> {
        let all = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ProviderTotals> = all.values().cloned().collect();
        out.sort_by(|a, b| a.provider.cmp(&b.provider));
        out
    }

    fn with_series(
        &self,
        queue: QueueName,
        task_type: TaskType,
        f: impl FnOnce(&mut SeriesTotals),
    ) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = all
            .entry((queue, task_type))
            .or_insert_with(|| SeriesTotals {
                queue: queue.as_str().to_owned(),
                task_type: task_type.as_str().to_owned(),
                ..SeriesTotals::default()
            });
        f(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_queue_and_type() {
        let c = LiveCounters::new();
        let q = QueueName::default_queue();
        c.submitted(q, TaskType::Echo, 3);
        c.attempt_ended(
            q,
            TaskType::Echo,
            AttemptEnd::Completed,
            Duration::from_millis(4),
        );
        c.attempt_ended(
            q,
            TaskType::Echo,
            AttemptEnd::Failed,
            Duration::from_millis(40),
        );
        c.attempt_ended(q, TaskType::Echo, AttemptEnd::Retried, Duration::ZERO);
        c.submitted(q, TaskType::Summarize, 1);
        let s = c.series();
        assert_eq!(s.len(), 2);
        let echo = s.iter().find(|s| s.task_type == "echo").unwrap();
        assert_eq!(
            (echo.submitted, echo.completed, echo.failed, echo.retried),
            (3, 1, 1, 1)
        );
        assert_eq!(echo.latency.total(), 2);
        c.provider_call("openai", true, 100, 5);
        c.provider_call("openai", false, 50, 0);
        let p = &c.providers()[0];
        assert_eq!((p.calls, p.ok, p.latency_ms, p.cost_micros), (2, 1, 150, 5));
    }
}
