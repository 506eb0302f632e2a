//! Rescues tasks whose worker is gone: expired leases go back to the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::queue::{TaskQueue, push_or_defer};
use crate::store::{StoreError, TaskStore};
use crate::telemetry::metrics;

/// Expired tasks handled per pass.
const PASS_LIMIT: u32 = 1000;

/// Finds processing tasks whose lease expired (their worker was killed, lost its instance or
/// hung) and makes them pending again, counting the lost attempt, or failed when no retry is
/// left; marks workers that stopped heartbeating as dead. Every instance runs one; the SQL
/// compare-and-set makes concurrent reapers harmless.
pub struct Reaper {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    /// Time between passes: short enough that an orphaned task runs again within its lease
    /// plus 1 s (a pass that finds nothing is one indexed query).
    interval: Duration,
    /// A worker silent this long is dead.
    stale_after: Duration,
}

impl Reaper {
    /// A reaper for workers whose leases last `lease`.
    pub fn new(store: Arc<dyn TaskStore>, queue: Arc<dyn TaskQueue>, lease: Duration) -> Self {
        Self {
            store,
            queue,
            interval: (lease / 4).clamp(Duration::from_millis(100), Duration::from_millis(500)),
            stale_after: lease * 2,
        }
    }

    /// One pass. Returns how many tasks were made pending again.
    pub async fn reap(&self) -> Result<usize, StoreError> {
        let now = clock::now();
        let stale_since = now - self.stale_after;
        for worker in self.store.reap_stale_workers(stale_since).await? {
            tracing::warn!(worker_id = %worker, "worker stopped heartbeating; marked dead");
        }
        let mut total = 0;
        loop {
            let requeued = self.store.requeue_expired(clock::now(), PASS_LIMIT).await?;
            let n = requeued.len();
            if n > 0 {
                tracing::warn!(count = n, "requeued tasks whose lease expired");
                metrics::leases_reaped(n as u64);
                push_or_defer(&*self.queue, &requeued).await;
            }
            total += n;
            if n < PASS_LIMIT as usize {
                return Ok(total);
            }
        }
    }

    /// Runs passes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reap().await {
                tracing::warn!(error = %e, "reaper pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
