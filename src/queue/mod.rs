//! The work queue: an index of pending task ids, one ready set (and delayed set) per named
//! queue, that can always be rebuilt from the database. Two implementations: Redis (clustered)
//! and in-process (embedded).
//!
//! The queue never decides who runs a task; the store's compare-and-set claim does. So a queue
//! that hands an id out twice, or loses one, costs at most a wasted claim or a late run, never a
//! double run or a lost task.

mod error;
mod memory;
mod redis;
mod spec;
mod states;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Priority, QueueName, Task, TaskId};

pub use error::QueueError;
pub use memory::MemoryQueue;
pub use redis::RedisQueue;
pub use spec::{QueueSet, QueueSpec, allocate};
pub use states::QueueStates;

/// One id to queue, with the named queue it goes to and the priority that orders it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEntry {
    /// The task.
    pub task_id: TaskId,
    /// Higher runs first; equal priorities run in push order (a standard queue ignores it).
    pub priority: Priority,
    /// The named queue; one no longer configured is served by the default route's queue.
    pub queue: QueueName,
}

impl QueueEntry {
    /// The entry that queues `task` in its recorded queue.
    pub fn of(task: &Task) -> Self {
        Self {
            task_id: task.id,
            priority: task.priority,
            queue: task.queue,
        }
    }

    /// An entry for the `default` queue.
    pub fn new(task_id: TaskId, priority: Priority) -> Self {
        Self {
            task_id,
            priority,
            queue: QueueName::default_queue(),
        }
    }

    /// The same entry in queue `queue`.
    pub fn in_queue(mut self, queue: QueueName) -> Self {
        self.queue = queue;
        self
    }
}

/// How many ids one pop may take from one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PopRequest {
    /// The queue.
    pub queue: QueueName,
    /// Its free slots.
    pub max: usize,
}

/// An id taken from a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Popped {
    /// The queue it came from (the pool counts it against that queue's concurrency).
    pub queue: QueueName,
    /// The task.
    pub task_id: TaskId,
}

/// Makes `tasks` ready. A failure is logged, not returned: the tasks are safely pending in the
/// database and the reconciler queues them once the queue is back.
pub async fn push_or_defer<'a>(queue: &dyn TaskQueue, tasks: impl IntoIterator<Item = &'a Task>) {
    let entries: Vec<QueueEntry> = tasks.into_iter().map(QueueEntry::of).collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = queue.push(&entries).await {
        tracing::warn!(error = %e, count = entries.len(), "queue push failed; reconciler will requeue");
    }
}

/// Result of moving due delayed entries to the ready queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Promoted {
    /// Entries moved.
    pub moved: usize,
    /// When the earliest remaining delayed entry falls due, if any.
    pub next_due: Option<DateTime<Utc>>,
}

/// One queue's waiting entries, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelDepth {
    /// Ready entries, indexed by [`crate::domain::PriorityLevel::index`].
    pub ready: [u64; 4],
    /// Entries parked until a retry falls due.
    pub delayed: u64,
}

/// A priority queue of task ids with a delayed set for retries.
// `len` is one round trip to Redis; an `is_empty` beside it would only duplicate it.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Makes entries ready. An id already ready keeps its place (no duplicates). Returns how
    /// many ids were not ready before.
    async fn push(&self, entries: &[QueueEntry]) -> Result<u64, QueueError>;

    /// Parks entries until `due`; [`TaskQueue::promote_due`] makes them ready then.
    async fn push_delayed(
        &self,
        entries: &[QueueEntry],
        due: DateTime<Utc>,
    ) -> Result<(), QueueError>;

    /// Moves every delayed entry due at `now` to the ready queue.
    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError>;

    /// Takes up to `total` ready ids from the `requests`' queues, at most `max` from each, in
    /// each queue's order (priority, then FIFO; FIFO only for a standard queue), waiting up to
    /// `wait` for the first one. The slots are shared by [`allocate`] over what each queue has
    /// ready, in the order of `requests` (earlier is preferred when they do not go round). A
    /// rate-limited queue gives no more than its rate allows, counted across instances.
    /// Returns an empty list on timeout. With a single request for a queue that is not rate
    /// limited this is one blocking round trip to Redis.
    async fn pop_from(
        &self,
        requests: &[PopRequest],
        total: usize,
        wait: Duration,
    ) -> Result<Vec<Popped>, QueueError>;

    /// Takes up to `max` ready ids of the first configured queue (see [`Self::pop_from`]).
    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<TaskId>, QueueError> {
        let queue = self.queues().specs()[0].name;
        let popped = self
            .pop_from(&[PopRequest { queue, max }], max, wait)
            .await?;
        Ok(popped.into_iter().map(|p| p.task_id).collect())
    }

    /// Removes an id from every ready and delayed set. Returns whether it was there.
    async fn remove(&self, id: TaskId) -> Result<bool, QueueError>;

    /// Ready plus delayed entries of every queue: the number `MAX_QUEUE_SIZE` bounds.
    async fn len(&self) -> Result<u64, QueueError>;

    /// Ready plus delayed entries of one queue (0 for a queue not configured).
    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError>;

    /// One queue's entries by priority level (by the effective priority: a standard queue's
    /// are all critical) and its delayed entries, without reading them one by one.
    async fn depth_by_level(&self, queue: QueueName) -> Result<LevelDepth, QueueError>;

    /// The configured queues.
    fn queues(&self) -> &QueueSet;

    /// Whether the queue's backend answers.
    async fn ping(&self) -> Result<(), QueueError>;
}
