//! Hears of task ends on the store's after-commit path, for the scheduler: the fast path
//! from a stage's task finishing to its dependents starting. Losing one (a full channel, a
//! crash) delays that session until the scheduler's sweep finds the end in the database.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::{StoredEvent, TaskEventType, TaskId};
use crate::store::EventPublisher;

/// Ends waiting for the scheduler, at most; more are left to the sweep.
pub const CAPACITY: usize = 100_000;

/// The store's publisher: everything on to `next`, and the ids of ended tasks to the
/// scheduler as well.
pub struct StageEndTee {
    /// Where every event goes.
    next: Arc<dyn EventPublisher>,
    /// The scheduler's queue.
    ends: mpsc::Sender<TaskId>,
}

impl StageEndTee {
    /// A tee in front of `next`, and the receiving end for the scheduler.
    pub fn new(next: Arc<dyn EventPublisher>) -> (Self, mpsc::Receiver<TaskId>) {
        let (ends, rx) = mpsc::channel(CAPACITY);
        (Self { next, ends }, rx)
    }
}

impl EventPublisher for StageEndTee {
    fn publish(&self, events: Vec<StoredEvent>) {
        for e in &events {
            let ended = matches!(
                e.event.kind,
                TaskEventType::TaskCompleted
                    | TaskEventType::TaskFailed
                    | TaskEventType::TaskCancelled
            );
            // Never block the commit path: a dropped end waits for the sweep.
            if ended && self.ends.try_send(e.event.task_id).is_err() {
                tracing::debug!(task_id = %e.event.task_id, "stage end left to the sweep");
            }
        }
        self.next.publish(events);
    }
}
