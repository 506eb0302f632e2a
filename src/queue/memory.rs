//! In-process queue for embedded mode.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{Promoted, QueueEntry, QueueError, TaskQueue};
use crate::domain::{Priority, TaskId};

/// Ready order: priority descending (stored as 10 - priority), then push sequence.
type ReadyKey = (u8, u64, TaskId);

#[derive(Default)]
struct State {
    /// Ids in pop order.
    ready: BTreeSet<ReadyKey>,
    /// Where each ready id sits in `ready`, for de-duplication and removal.
    ready_index: HashMap<TaskId, ReadyKey>,
    /// Delayed ids by due time.
    delayed: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// Due time and priority of each delayed id.
    delayed_index: HashMap<TaskId, (DateTime<Utc>, Priority)>,
    /// Next push sequence number: FIFO within a priority.
    seq: u64,
}

impl State {
    fn make_ready(&mut self, e: QueueEntry) {
        if self.ready_index.contains_key(&e.task_id) {
            return;
        }
        self.seq += 1;
        let key = (
            Priority::MAX.value() - e.priority.value(),
            self.seq,
            e.task_id,
        );
        self.ready.insert(key);
        self.ready_index.insert(e.task_id, key);
    }
}

/// A priority queue in this process's memory. Lost on exit; the reconciler rebuilds it from the
/// database at start.
#[derive(Default)]
pub struct MemoryQueue {
    /// All entries behind one lock: every operation is a few map updates.
    state: Mutex<State>,
    /// Wakes poppers waiting for work.
    available: Notify,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain maps behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, max: usize) -> Vec<TaskId> {
        let mut st = self.lock();
        let mut out = Vec::with_capacity(max.min(st.ready.len()));
        while out.len() < max {
            let Some(key) = st.ready.pop_first() else {
                break;
            };
            st.ready_index.remove(&key.2);
            out.push(key.2);
        }
        out
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn push(&self, entries: &[QueueEntry]) -> Result<(), QueueError> {
        {
            let mut st = self.lock();
            for e in entries {
                st.make_ready(*e);
            }
        }
        self.available.notify_waiters();
        Ok(())
    }

    async fn push_delayed(
        &self,
        entries: &[QueueEntry],
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        for e in entries {
            if let Some((old_due, _)) = st.delayed_index.insert(e.task_id, (due, e.priority)) {
                st.delayed.remove(&(old_due, e.task_id));
            }
            st.delayed.insert((due, e.task_id));
        }
        Ok(())
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError> {
        let moved = {
            let mut st = self.lock();
            let mut moved = 0;
            while let Some(&(due, id)) = st.delayed.first() {
                if due > now {
                    break;
                }
                st.delayed.pop_first();
                if let Some((_, priority)) = st.delayed_index.remove(&id) {
                    st.make_ready(QueueEntry {
                        task_id: id,
                        priority,
                    });
                    moved += 1;
                }
            }
            let next_due = st.delayed.first().map(|(due, _)| *due);
            Promoted { moved, next_due }
        };
        if moved.moved > 0 {
            self.available.notify_waiters();
        }
        Ok(moved)
    }

    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<TaskId>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait is seen.
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ids = self.take(max);
            if !ids.is_empty() {
                return Ok(ids);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn remove(&self, id: TaskId) -> Result<bool, QueueError> {
        let mut st = self.lock();
        let mut found = false;
        if let Some(key) = st.ready_index.remove(&id) {
            st.ready.remove(&key);
            found = true;
        }
        if let Some((due, _)) = st.delayed_index.remove(&id) {
            st.delayed.remove(&(due, id));
            found = true;
        }
        Ok(found)
    }

    async fn len(&self) -> Result<u64, QueueError> {
        let st = self.lock();
        Ok((st.ready.len() + st.delayed.len()) as u64)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
