//! Prometheus metrics through the `metrics` facade. One recorder per process (tests run many
//! apps in one process, so it is installed once and shared); every name is declared here with
//! its help text and labels. Labels are bounded: task type, queue, provider, outcome, route,
//! method, status. Never a task id, user id or error text.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{QueueName, TaskType};

/// Tasks accepted, by `type` and `queue`.
pub const TASKS_SUBMITTED: &str = "ais_tasks_submitted_total";
/// Task outcomes, by `type`, `queue` and `outcome`: an attempt `completed`, `failed` (a dead
/// letter) or `retried`; a task `cancelled`.
pub const TASK_OUTCOMES: &str = "ais_task_outcomes_total";
/// Seconds from submit (or a retry falling due) to start, by `type`.
pub const TASK_WAIT: &str = "ais_task_wait_seconds";
/// Seconds one attempt ran, by `type`, `provider` and `outcome`.
pub const TASK_RUN: &str = "ais_task_run_seconds";
/// Tasks waiting, by `queue`, read from the shared queue at scrape time.
pub const QUEUE_DEPTH: &str = "ais_queue_depth";
/// This instance's worker limit now (adaptive).
pub const POOL_LIMIT: &str = "ais_worker_pool_limit";
/// This instance's worker ceiling (`WORKER_POOL_SIZE`).
pub const POOL_SIZE: &str = "ais_worker_pool_size";
/// Tasks running on this instance, by `queue`.
pub const POOL_BUSY: &str = "ais_worker_pool_busy";
/// Provider tries, by `provider` and `outcome` (`ok`, `retryable`, `rate_limited`,
/// `non_retryable`, `skipped_breaker`, `skipped_rate_limit`, `abandoned`).
pub const PROVIDER_REQUESTS: &str = "ais_provider_requests_total";
/// Seconds of provider calls, by `provider` and `outcome`.
pub const PROVIDER_DURATION: &str = "ais_provider_request_duration_seconds";
/// Tokens, by `provider` and `direction` (`in`, `out`).
pub const PROVIDER_TOKENS: &str = "ais_provider_tokens_total";
/// Cost in micro-dollars, by `provider`.
pub const PROVIDER_COST: &str = "ais_provider_cost_microdollars_total";
/// HTTP requests, by `method`, `route` (the matched template) and `status`.
pub const HTTP_REQUESTS: &str = "ais_http_requests_total";
/// HTTP request seconds, by `method`, `route` and `status`.
pub const HTTP_DURATION: &str = "ais_http_request_duration_seconds";

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
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(TASKS_SUBMITTED, "Tasks accepted, by type and queue.");
    describe_counter!(
        TASK_OUTCOMES,
        "Task outcomes, by type, queue and outcome (completed, failed, retried, cancelled)."
    );
    describe_histogram!(
        TASK_WAIT,
        metrics::Unit::Seconds,
        "Seconds from submit (or a retry falling due) to the attempt's start, by type."
    );
    describe_histogram!(
        TASK_RUN,
        metrics::Unit::Seconds,
        "Seconds one attempt ran, by type, provider and outcome."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Tasks waiting, by queue (read from the shared queue)."
    );
    describe_gauge!(
        POOL_LIMIT,
        "This instance's current worker limit (adaptive)."
    );
    describe_gauge!(
        POOL_SIZE,
        "This instance's worker ceiling (WORKER_POOL_SIZE)."
    );
    describe_gauge!(POOL_BUSY, "Tasks running on this instance, by queue.");
    describe_counter!(
        PROVIDER_REQUESTS,
        "Provider tries, by provider and outcome."
    );
    describe_histogram!(
        PROVIDER_DURATION,
        metrics::Unit::Seconds,
        "Seconds of provider calls (skipped tries included, near zero), by provider and outcome."
    );
    describe_counter!(
        PROVIDER_TOKENS,
        "Provider tokens, by provider and direction (in, out)."
    );
    describe_counter!(
        PROVIDER_COST,
        "Provider cost in micro-dollars, by provider."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by method, route and status.");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request seconds, by method, route and status."
    );
}

/// `n` tasks of `task_type` accepted into `queue`.
pub fn tasks_submitted(task_type: TaskType, queue: QueueName, n: u64) {
    counter!(TASKS_SUBMITTED, "type" => task_type.as_str(), "queue" => queue.as_str()).increment(n);
}

/// How an attempt ended, for [`attempt_finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The task completed.
    Completed,
    /// The task failed for good (a dead letter).
    Failed,
    /// The task will run again after a backoff.
    Retried,
    /// The task was cancelled while it ran.
    Cancelled,
}

impl AttemptEnd {
    /// Its label value (and span outcome).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retried => "retried",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An attempt of `task_type` in `queue` ended `end` after `ran`, answered by `provider`
/// (`none` when no provider answered).
pub fn attempt_finished(
    task_type: TaskType,
    queue: QueueName,
    provider: &str,
    end: AttemptEnd,
    ran: Duration,
) {
    counter!(TASK_OUTCOMES, "type" => task_type.as_str(), "queue" => queue.as_str(),
        "outcome" => end.as_str())
    .increment(1);
    histogram!(TASK_RUN, "type" => task_type.as_str(), "provider" => bounded_provider(provider),
        "outcome" => end.as_str())
    .record(ran.as_secs_f64());
}

/// A task of `task_type` in `queue` was cancelled.
pub fn task_cancelled(task_type: TaskType, queue: QueueName) {
    counter!(TASK_OUTCOMES, "type" => task_type.as_str(), "queue" => queue.as_str(),
        "outcome" => AttemptEnd::Cancelled.as_str())
    .increment(1);
}

/// An attempt of `task_type` started `waited` after its task was submitted or fell due.
pub fn attempt_started(task_type: TaskType, waited: Duration) {
    histogram!(TASK_WAIT, "type" => task_type.as_str()).record(waited.as_secs_f64());
}

/// The queue's and the pool's gauges, set just before a scrape renders them.
pub fn set_pool(limit: usize, size: usize, busy: &[(QueueName, usize)]) {
    gauge!(POOL_LIMIT).set(limit as f64);
    gauge!(POOL_SIZE).set(size as f64);
    for (queue, n) in busy {
        gauge!(POOL_BUSY, "queue" => queue.as_str()).set(*n as f64);
    }
}

/// Tasks waiting in `queue`.
pub fn set_queue_depth(queue: QueueName, depth: u64) {
    gauge!(QUEUE_DEPTH, "queue" => queue.as_str()).set(depth as f64);
}

/// One provider try: `provider` answered `outcome` after `took`, using these tokens and
/// costing `cost_micros`.
pub fn provider_try(
    provider: &str,
    outcome: &'static str,
    took: Duration,
    tokens: (u64, u64),
    cost_micros: i64,
) {
    let provider = bounded_provider(provider);
    counter!(PROVIDER_REQUESTS, "provider" => provider, "outcome" => outcome).increment(1);
    histogram!(PROVIDER_DURATION, "provider" => provider, "outcome" => outcome)
        .record(took.as_secs_f64());
    if tokens.0 > 0 {
        counter!(PROVIDER_TOKENS, "provider" => provider, "direction" => "in").increment(tokens.0);
    }
    if tokens.1 > 0 {
        counter!(PROVIDER_TOKENS, "provider" => provider, "direction" => "out").increment(tokens.1);
    }
    if cost_micros > 0 {
        counter!(PROVIDER_COST, "provider" => provider).increment(cost_micros as u64);
    }
}

/// One HTTP request answered.
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    let method = bounded_method(method);
    let status = status.to_string();
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(),
        "status" => status.clone())
    .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route.to_owned(), "status" => status)
        .record(took.as_secs_f64());
}

/// Provider names are configured ones, plus the few local answerers; anything else (never
/// expected) is folded so a label cannot grow without bound.
fn bounded_provider(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "openai",
        "claude",
        "gemini",
        "groq",
        "compat",
        "unsplash",
        "echo",
        "cache",
        "extraction",
        "none",
    ];
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}

fn bounded_method(method: &str) -> &'static str {
    const KNOWN: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    KNOWN
        .iter()
        .find(|k| **k == method)
        .copied()
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(bounded_provider("groq"), "groq");
        assert_eq!(bounded_provider("sk-secret-name"), "other");
        assert_eq!(bounded_method("BREW"), "OTHER");
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
