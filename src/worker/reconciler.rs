//! Rebuilds the queue from the database: the database is the truth, the queue an index.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::queue::{QueueEntry, QueueError, TaskQueue};
use crate::store::{StoreError, TaskStore};
use crate::telemetry::metrics;

/// Why a reconciliation pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Pending tasks could not be read.
    #[error("reading pending tasks: {0}")]
    Store(#[from] StoreError),
    /// The queue did not take them.
    #[error("queueing pending tasks: {0}")]
    Queue(#[from] QueueError),
}

/// Pending tasks read per pass.
const PASS_LIMIT: u32 = 100_000;
/// Periodic passes skip tasks changed more recently than this: such a task is normally in a
/// worker's hands between popping and claiming, and re-queueing it would only leave a stale
/// entry behind (harmless, but it counts against MAX_QUEUE_SIZE).
const SETTLE_TIME: Duration = Duration::from_secs(5);

/// Re-queues pending tasks the queue lost (Redis flushed or restarted, an instance died between
/// popping an id and claiming it). Pushing an id already queued changes nothing, and a
/// duplicate hand-out is harmless because claiming is a compare-and-set.
pub struct Reconciler {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    interval: Duration,
}

impl Reconciler {
    /// A reconciler that runs every `interval`.
    pub fn new(store: Arc<dyn TaskStore>, queue: Arc<dyn TaskQueue>, interval: Duration) -> Self {
        Self {
            store,
            queue,
            interval,
        }
    }

    /// One pass over pending tasks last changed at least `min_age` ago: ready ones to the
    /// ready set, ones waiting out a retry delay to the delayed set. Returns how many ids were
    /// pushed. At start-up `min_age` is zero: everything pending is queued.
    pub async fn reconcile(&self, min_age: Duration) -> Result<usize, ReconcileError> {
        let now = clock::now();
        let settled_before = now - min_age;
        let pending = self.store.find_pending_tasks(PASS_LIMIT).await?;
        let (ready, later): (Vec<_>, Vec<_>) = pending
            .iter()
            .filter(|t| t.updated_at <= settled_before)
            .partition(|t| t.run_after <= now);
        let entries: Vec<QueueEntry> = ready.iter().map(|t| QueueEntry::of(t)).collect();
        let lost = self.queue.push(&entries).await?;
        if lost > 0 {
            metrics::reconciler_requeued(lost);
        }
        for t in &later {
            self.queue
                .push_delayed(&[QueueEntry::of(t)], t.run_after)
                .await?;
        }
        Ok(entries.len() + later.len())
    }

    /// Runs a pass every interval until `shutdown` (the start-up pass is the caller's).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => break,
            }
            match self.reconcile(SETTLE_TIME).await {
                Ok(n) => tracing::debug!(pushed = n, "queue reconciled"),
                Err(e) => tracing::warn!(error = %e, "queue reconciliation failed"),
            }
        }
    }
}
