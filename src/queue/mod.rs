//! The work queue: an index of pending task ids, by priority, that can always be rebuilt from
//! the database. Two implementations: Redis (clustered) and in-process (embedded).
//!
//! The queue never decides who runs a task; the store's compare-and-set claim does. So a queue
//! that hands an id out twice, or loses one, costs at most a wasted claim or a late run, never a
//! double run or a lost task.

mod error;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Priority, Task, TaskId};

pub use error::QueueError;
pub use memory::MemoryQueue;
pub use redis::RedisQueue;

/// One id to queue, with the priority that orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEntry {
    /// The task.
    pub task_id: TaskId,
    /// Higher runs first; equal priorities run in push order.
    pub priority: Priority,
}

impl QueueEntry {
    /// The entry that queues `task`.
    pub fn of(task: &Task) -> Self {
        Self {
            task_id: task.id,
            priority: task.priority,
        }
    }
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

/// A priority queue of task ids with a delayed set for retries.
// `len` is one round trip to Redis; an `is_empty` beside it would only duplicate it.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Makes entries ready. An id already ready keeps its place (no duplicates).
    async fn push(&self, entries: &[QueueEntry]) -> Result<(), QueueError>;

    /// Parks entries until `due`; [`TaskQueue::promote_due`] makes them ready then.
    async fn push_delayed(
        &self,
        entries: &[QueueEntry],
        due: DateTime<Utc>,
    ) -> Result<(), QueueError>;

    /// Moves every delayed entry due at `now` to the ready queue.
    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError>;

    /// Takes up to `max` ready ids, highest priority first and FIFO within a priority, waiting
    /// up to `wait` for the first one. Returns an empty list on timeout.
    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<TaskId>, QueueError>;

    /// Removes an id from the ready and delayed sets. Returns whether it was there.
    async fn remove(&self, id: TaskId) -> Result<bool, QueueError>;

    /// Ready plus delayed entries: the number `MAX_QUEUE_SIZE` bounds.
    async fn len(&self) -> Result<u64, QueueError>;

    /// Whether the queue's backend answers.
    async fn ping(&self) -> Result<(), QueueError>;
}
