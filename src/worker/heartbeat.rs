//! Lease renewal: a live pool keeps the tasks it runs, a dead one loses them within a lease.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::running::RunningAttempts;
use crate::clock;
use crate::domain::{TaskId, WorkerId};
use crate::store::TaskStore;

/// Renews this pool's leases every third of the lease, so a live worker never loses a task
/// however long its attempt runs, and a dead one loses them within one lease.
pub(super) async fn heartbeat_loop(
    store: Arc<dyn TaskStore>,
    id: WorkerId,
    attempts: RunningAttempts,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<TaskId> = attempts.lock().keys().copied().collect();
        let now = clock::now();
        if let Err(e) = store.heartbeat(&id, &running, now + lease, now).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}
