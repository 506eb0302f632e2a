//! Prometheus metrics through the `metrics` facade. One recorder per process (tests run many
//! apps in one process, so it is installed once and shared); every name is declared in this
//! folder with its help text and labels, by what it describes: `tasks.rs` (tasks, queues,
//! workers), `providers.rs` (AI providers, breakers, money), `edge.rs` (HTTP, gRPC, event
//! streams), `projections.rs` (the event store's projections). Labels are bounded: task type,
//! queue, level, provider, outcome, route, method, status, transport, projection. Never a task
//! id, user id or error text.

mod edge;
mod projections;
mod providers;
mod tasks;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use edge::*;
pub use projections::*;
pub use providers::*;
pub use tasks::*;

/// Buckets fine enough to read P50/P95/P99 of both sub-millisecond submits and minute-long AI
/// calls (seed 001's latency percentiles).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// The process's recorder, installed on first use; its handle renders the text format.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (a host program's): render ours anyway, unused.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        tasks::describe();
        providers::describe();
        edge::describe();
        projections::describe();
        handle
    })
}

/// Picks `value` from `known`, or `other`: a label fed from outside cannot grow without bound.
fn bounded(known: &[&'static str], value: &str, other: &'static str) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or(other)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{QueueName, TaskType};

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(bounded(&["a", "b"], "b", "other"), "b");
        assert_eq!(bounded(&["a", "b"], "sk-secret", "other"), "other");
    }

    #[test]
    fn recorded_metrics_render() {
        let handle = recorder();
        tasks_submitted(TaskType::Summarize, QueueName::default_queue(), 2);
        attempt_finished(
            TaskType::Summarize,
            QueueName::default_queue(),
            "groq",
            AttemptEnd::Completed,
            Duration::from_millis(30),
        );
        let text = handle.render();
        assert!(
            text.contains("ais_tasks_submitted_total{type=\"summarize\",queue=\"default\"}"),
            "{text}"
        );
        assert!(text.contains("ais_task_run_seconds_bucket{type=\"summarize\",provider=\"groq\",outcome=\"completed\",le=\"0.05\"}"), "{text}");
    }
}
