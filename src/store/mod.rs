//! Durable task storage: the ports and their PostgreSQL and SQLite implementations.
//!
//! The ports are here (`TaskStore` below, and one file each for notifications, queues, usage
//! and [`TaskStoreTesting`]); `sql/` holds the SQL every database shares, and `postgres/`
//! and `sqlite/` what each does its own way, hot paths included.
//!
//! Every state change is a compare-and-set in SQL (`WHERE status = ...`), written in the same
//! transaction as its [`TaskEvent`](crate::domain::TaskEvent), so the database alone decides who
//! owns a task and a terminal status never changes again.

mod after_commit;
pub mod audit;
pub mod chat;
mod error;
pub mod eventstore;
mod notifications;
pub mod pipeline;
mod postgres;
pub mod progress;
pub(crate) mod queues;
mod row;
mod sql;
mod sqlite;
mod testing;
mod tickets;
mod usage;
pub mod workers;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{
    ErrorClass, Page, PageRequest, Task, TaskError, TaskEvent, TaskId, TaskStatus, TaskType,
    UserId, WorkerId,
};

pub(crate) use after_commit::AfterCommit;
pub use after_commit::EventPublisher;
pub use error::StoreError;
pub use notifications::{EventBounds, NotificationSession, NotificationStore, Transport};
pub use postgres::PgTaskStore;
pub use queues::{QueueRecord, QueueStore};
pub use sqlite::SqliteTaskStore;
pub use sqlite::{CheckpointPass, Checkpointer};
pub use testing::TaskStoreTesting;
pub use tickets::{NewStreamTicket, StreamGrant, TicketHash};
pub use usage::{ProviderStats, Reservation, Spend, UsageStore, UsageSummary};
pub use workers::{WorkerDirectory, WorkerRecord};

/// The outcome of inserting one task.
#[derive(Debug, Clone)]
pub struct Inserted {
    /// The stored task: the new one, or the earlier one with the same idempotency key.
    pub task: Task,
    /// False when an earlier task with the same idempotency key was returned instead.
    pub created: bool,
}

/// How one attempt ended, as reported by the worker that held the task.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The task.
    pub task_id: TaskId,
    /// The worker that claimed it; the update applies only if it still holds the task.
    pub worker_id: WorkerId,
    /// What happened.
    pub outcome: Outcome,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The end of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `processing -> completed`.
    Completed {
        /// The provider's answer.
        result: Value,
        /// Who produced it.
        provider: Option<String>,
    },
    /// `processing -> pending`, to run again at `run_after`.
    Retry {
        /// Why this attempt failed.
        error: TaskError,
        /// Not before this time.
        run_after: DateTime<Utc>,
    },
    /// `processing -> failed`.
    Failed {
        /// Why.
        error: TaskError,
    },
}

/// Counts and recent timings over all tasks (seed 000's QueueStats, from the database).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStats {
    /// Tasks per status.
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Mean submit-to-start time of the sample, in milliseconds.
    pub average_wait_ms: u64,
    /// Mean start-to-finish time of the sample, in milliseconds.
    pub average_processing_ms: u64,
    /// Finished tasks the averages come from.
    pub sample_size: u64,
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this owner's tasks (`None`: everyone's, for admins).
    pub user_id: Option<UserId>,
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this type.
    pub task_type: Option<TaskType>,
    /// Only tasks whose last error has this class.
    pub error_class: Option<ErrorClass>,
}

/// Durable task storage (seed 000's AIGenerationTaskRepository, plus the batch operations the
/// worker pool and group commit need).
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Inserts tasks and their `TaskCreated` events in one transaction: all or none. A task whose
    /// (user, idempotency key) already exists is not inserted; the existing one is returned.
    async fn insert_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Inserted>, StoreError>;

    /// One task by id.
    async fn find_by_id(&self, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// Claims those of `ids` that are still pending for `worker`, with a lease until
    /// `lease_until`, writing a `TaskStarted` event each. Returns the claimed tasks; ids that
    /// were not pending (claimed elsewhere, cancelled, finished) are skipped.
    async fn claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError>;

    /// Applies finished attempts in one transaction. Each applies only if the task is still
    /// processing under that worker; returns, per input, whether it applied.
    async fn finish(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError>;

    /// `pending | processing -> cancelled`. Returns the task after the attempt and whether it
    /// was cancelled now; `None` if there is no such task.
    async fn cancel(
        &self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Task, bool)>, StoreError>;

    /// While each task is processing: sets its progress (when given) and records a
    /// `TaskProgress` event with its `data` (plus `progress`, when given and `data` is an
    /// object), all in one transaction (one commit, one lock per user counter). Returns whether
    /// each was recorded, in order (false, and nothing recorded, for a task not processing).
    /// For percentages and batches of streamed tokens.
    async fn record_progress_many(
        &self,
        updates: Vec<(TaskId, Option<u8>, Value)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Pending tasks in queue order (priority, then age).
    async fn find_pending_tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError>;

    /// Tasks matching `filter`, newest first, one page.
    async fn list(&self, filter: &TaskFilter, page: &PageRequest)
    -> Result<Page<Task>, StoreError>;

    /// Pending and processing tasks of `user`.
    async fn count_active_by_user(&self, user: &UserId) -> Result<u64, StoreError>;

    /// A task's events, oldest first.
    async fn events_for_task(&self, id: TaskId) -> Result<Vec<TaskEvent>, StoreError>;

    // ===== Leases and workers =====

    /// Records a worker pool as active (seed 000's register_worker).
    async fn register_worker(
        &self,
        worker: &WorkerId,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks the worker alive and extends to `lease_until` the lease of each task of `running`
    /// that it still holds (seed 000's update_worker_heartbeat). Only the tasks the worker is
    /// running: one it holds but no longer runs (its outcome could not be written) must lose
    /// its lease so that the reaper gives it to another attempt. Returns how many leases were
    /// renewed.
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        running: &[TaskId],
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Marks a worker pool as stopped after a clean shutdown.
    async fn unregister_worker(
        &self,
        worker: &WorkerId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Active workers whose last heartbeat is before `older_than`; marks them dead.
    async fn reap_stale_workers(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError>;

    /// Processing tasks whose lease ended before `now` (their worker died or hung): back to
    /// pending when retries remain (the lost attempt counts), else failed; with the matching
    /// event. Returns the tasks that are pending again, to be queued. At most `limit` per call.
    async fn requeue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Those of `ids` that are still processing under `worker`. A running task missing from the
    /// answer was cancelled or taken over (its lease expired), and its attempt should stop.
    async fn still_held(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// Hands tasks a worker still holds back to pending without counting an attempt (a clean
    /// shutdown that could not finish them). Returns the released tasks.
    async fn release(&self, worker: &WorkerId, now: DateTime<Utc>)
    -> Result<Vec<Task>, StoreError>;

    // ===== Dead letters =====

    /// Failed tasks among `ids` back to pending with their attempts reset (the one way out of
    /// a terminal status: an operator's decision after fixing the cause). The last error and
    /// every event stay as history. Returns the requeued tasks.
    async fn requeue_failed(
        &self,
        ids: &[TaskId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError>;

    /// Deletes the failed tasks among `ids` and their events. Returns how many were deleted.
    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64, StoreError>;

    /// Counts per status, and mean wait and processing times of (up to 10,000 of) the tasks
    /// created since `since` that have finished.
    async fn task_stats(&self, since: DateTime<Utc>) -> Result<TaskStats, StoreError>;

    /// Failed tasks (dead letters), counted up to `cap`: the work is bounded however many
    /// there are, so a metrics scrape stays cheap.
    async fn count_dead_letters(&self, cap: u64) -> Result<u64, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
