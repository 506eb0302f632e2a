//! A cheap, slightly stale view of the queue's depth for the `MAX_QUEUE_SIZE` check.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::queue::{QueueError, TaskQueue};

/// How stale the measured depth may be. Between measurements every accepted task is added,
/// so the estimate only errs high: a burst cannot overshoot the limit by more than what the
/// workers drained meanwhile.
const MAX_AGE: Duration = Duration::from_millis(50);

/// Queue depth, measured at most every [`MAX_AGE`] instead of once per submit.
pub struct QueueDepth {
    /// Depth at the last measurement plus tasks accepted since.
    estimate: AtomicU64,
    /// When the queue was last measured; `None` before the first measurement.
    measured_at: Mutex<Option<Instant>>,
}

impl QueueDepth {
    /// Not yet measured.
    pub fn new() -> Self {
        Self {
            estimate: AtomicU64::new(0),
            measured_at: Mutex::new(None),
        }
    }

    /// The current estimate, measuring the queue if the last measurement is too old.
    pub async fn get(&self, queue: &dyn TaskQueue) -> Result<u64, QueueError> {
        let stale = {
            let mut at = self.measured_at.lock().unwrap_or_else(|e| e.into_inner());
            let stale = at.is_none_or(|t| t.elapsed() >= MAX_AGE);
            if stale {
                // Claim the refresh so concurrent callers keep using the estimate meanwhile.
                *at = Some(Instant::now());
            }
            stale
        };
        if stale {
            match queue.len().await {
                Ok(n) => self.estimate.store(n, Ordering::Relaxed),
                Err(e) => {
                    *self.measured_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Err(e);
                }
            }
        }
        Ok(self.estimate.load(Ordering::Relaxed))
    }

    /// Counts tasks just accepted.
    pub fn add(&self, n: u64) {
        self.estimate.fetch_add(n, Ordering::Relaxed);
    }
}

impl Default for QueueDepth {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, TaskId};
    use crate::queue::{MemoryQueue, QueueEntry};

    #[tokio::test]
    async fn counts_accepted_tasks_until_the_next_measurement() {
        let q = MemoryQueue::new();
        let d = QueueDepth::new();
        assert_eq!(d.get(&q).await.unwrap(), 0);
        let e = QueueEntry::new(TaskId::new(), Priority::NORMAL);
        q.push(&[e]).await.unwrap();
        d.add(1);
        assert_eq!(
            d.get(&q).await.unwrap(),
            1,
            "estimate includes accepted tasks"
        );
        q.pop(1, Duration::ZERO).await.unwrap();
        assert_eq!(d.get(&q).await.unwrap(), 1, "still within MAX_AGE");
        tokio::time::sleep(MAX_AGE).await;
        assert_eq!(d.get(&q).await.unwrap(), 0, "re-measured");
    }
}
