//! Moves delayed retries to the ready queue when they fall due.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::queue::TaskQueue;

/// Longest sleep between checks: other instances may add earlier entries meanwhile.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Promotes due entries of the queue's delayed set. One per instance; in clustered mode they
/// share the work, since promotion is atomic in Redis.
pub struct DelayScheduler {
    queue: Arc<dyn TaskQueue>,
    /// Rung when this instance parks a retry, so a sleeping scheduler looks again at once
    /// instead of up to [`MAX_SLEEP`] late.
    wake: Arc<Notify>,
}

impl DelayScheduler {
    /// A scheduler for `queue`.
    pub fn new(queue: Arc<dyn TaskQueue>) -> Self {
        Self {
            queue,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Ring this after pushing a delayed entry.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Promotes once; returns how long to sleep before the next check.
    pub async fn tick(&self) -> Duration {
        let now = clock::now();
        match self.queue.promote_due(now).await {
            Ok(p) => p
                .next_due
                .and_then(|due| (due - now).to_std().ok())
                .unwrap_or(MAX_SLEEP)
                .clamp(Duration::from_millis(1), MAX_SLEEP),
            Err(e) => {
                tracing::warn!(error = %e, "promoting delayed tasks failed");
                MAX_SLEEP
            }
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let sleep = self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Priority, TaskId};
    use crate::queue::{MemoryQueue, QueueEntry};

    #[tokio::test]
    async fn promotes_on_time_when_woken_and_stops_on_shutdown() {
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
        let scheduler = DelayScheduler::new(queue.clone());
        let wake = scheduler.waker();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(scheduler.run(shutdown.clone()));
        // Let it reach its long idle sleep first.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let entry = QueueEntry::new(TaskId::new(), Priority::NORMAL);
        let started = tokio::time::Instant::now();
        queue
            .push_delayed(&[entry], clock::now() + Duration::from_millis(200))
            .await
            .unwrap();
        wake.notify_one();
        let popped = queue.pop(1, Duration::from_secs(2)).await.unwrap();
        assert_eq!(popped, vec![entry.task_id]);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_millis(600),
            "promoted after {waited:?}, due after 200 ms"
        );

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops")
            .unwrap();
    }
}
