//! Tasks, queues and the worker pool.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use super::providers::bounded_provider;
use crate::domain::{PriorityLevel, QueueName, TaskType};

/// Tasks accepted, by `type` and `queue`.
pub const TASKS_SUBMITTED: &str = "ais_tasks_submitted_total";
/// Task outcomes, by `type`, `queue` and `outcome`: an attempt `completed`, `failed` (a dead
/// letter) or `retried`; a task `cancelled`.
pub const TASK_OUTCOMES: &str = "ais_task_outcomes_total";
/// Attempts that hit their task's timeout, by `type` and `queue` (also counted as `retried` or
/// `failed` outcomes).
pub const TASK_TIMEOUTS: &str = "ais_task_timeouts_total";
/// Seconds from submit (or a retry falling due) to start, by `type`.
pub const TASK_WAIT: &str = "ais_task_wait_seconds";
/// Seconds one attempt ran, by `type`, `provider` and `outcome`.
pub const TASK_RUN: &str = "ais_task_run_seconds";
/// Tasks ready to run, by `queue` and priority `level` (low, normal, high, critical), read
/// from the shared queue at scrape time.
pub const QUEUE_DEPTH: &str = "ais_queue_depth";
/// Tasks waiting out a retry delay, by `queue`, read from the shared queue at scrape time.
pub const QUEUE_DELAYED: &str = "ais_queue_delayed";
/// Failed tasks kept as dead letters (counted up to [`DEAD_LETTER_CAP`]), read from the store.
pub const DEAD_LETTERS: &str = "ais_dead_letters";
/// This instance's worker limit now (adaptive).
pub const POOL_LIMIT: &str = "ais_worker_pool_limit";
/// This instance's worker ceiling (`WORKER_POOL_SIZE`).
pub const POOL_SIZE: &str = "ais_worker_pool_size";
/// Tasks running on this instance, by `queue`.
pub const POOL_BUSY: &str = "ais_worker_pool_busy";
/// Tasks whose worker's lease ran out, made pending again by the reaper.
pub const LEASES_REAPED: &str = "ais_leases_reaped_total";
/// Pending tasks the queue had lost, pushed back by the reconciler.
pub const RECONCILER_REQUEUED: &str = "ais_reconciler_requeued_total";

/// The dead-letter gauge stops counting here, so a scrape's work is bounded.
pub const DEAD_LETTER_CAP: u64 = 100_000;

pub(super) fn describe() {
    describe_counter!(TASKS_SUBMITTED, "Tasks accepted, by type and queue.");
    describe_counter!(
        TASK_OUTCOMES,
        "Task outcomes, by type, queue and outcome (completed, failed, retried, cancelled)."
    );
    describe_counter!(
        TASK_TIMEOUTS,
        "Attempts that hit their task's timeout, by type and queue."
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
        "Tasks ready to run, by queue and priority level (read from the shared queue)."
    );
    describe_gauge!(
        QUEUE_DELAYED,
        "Tasks waiting out a retry delay, by queue (read from the shared queue)."
    );
    describe_gauge!(
        DEAD_LETTERS,
        "Failed tasks kept as dead letters, counted up to 100000 (read from the store)."
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
        LEASES_REAPED,
        "Tasks whose worker's lease ran out, made pending again."
    );
    describe_counter!(
        RECONCILER_REQUEUED,
        "Pending tasks the queue had lost, pushed back by the reconciler."
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
    fn as_str(self) -> &'static str {
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

/// An attempt of `task_type` in `queue` hit the task's timeout.
pub fn attempt_timed_out(task_type: TaskType, queue: QueueName) {
    counter!(TASK_TIMEOUTS, "type" => task_type.as_str(), "queue" => queue.as_str()).increment(1);
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

/// The pool's gauges, set just before a scrape renders them.
pub fn set_pool(limit: usize, size: usize, busy: &[(QueueName, usize)]) {
    gauge!(POOL_LIMIT).set(limit as f64);
    gauge!(POOL_SIZE).set(size as f64);
    for (queue, n) in busy {
        gauge!(POOL_BUSY, "queue" => queue.as_str()).set(*n as f64);
    }
}

/// `queue`'s ready tasks by priority level (indexed by [`PriorityLevel::index`]) and delayed.
pub fn set_queue_depth(queue: QueueName, ready: [u64; 4], delayed: u64) {
    for level in PriorityLevel::ALL {
        gauge!(QUEUE_DEPTH, "queue" => queue.as_str(), "level" => level.as_str())
            .set(ready[level.index()] as f64);
    }
    gauge!(QUEUE_DELAYED, "queue" => queue.as_str()).set(delayed as f64);
}

/// Dead letters stored (up to [`DEAD_LETTER_CAP`]).
pub fn set_dead_letters(n: u64) {
    gauge!(DEAD_LETTERS).set(n as f64);
}

/// The reaper made `n` tasks with expired leases pending again.
pub fn leases_reaped(n: u64) {
    counter!(LEASES_REAPED).increment(n);
}

/// The reconciler pushed back `n` pending tasks the queue did not hold.
pub fn reconciler_requeued(n: u64) {
    counter!(RECONCILER_REQUEUED).increment(n);
}
