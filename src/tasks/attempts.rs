//! Writes provider attempts to the usage store in the background, in batches, as they happen:
//! an attempt is kept even when the task's own future is later dropped (timeout, cancel).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::domain::ProviderAttempt;
use crate::store::UsageStore;

/// Most attempts written in one statement.
const BATCH: usize = 500;

/// Sends attempts to the writer loop.
#[derive(Clone)]
pub struct AttemptRecorder {
    tx: mpsc::UnboundedSender<ProviderAttempt>,
}

impl AttemptRecorder {
    /// Starts the writer loop on `tracker`; it ends once every recorder clone is dropped and
    /// everything sent is written.
    pub fn spawn(store: Arc<dyn UsageStore>, tracker: &TaskTracker) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<ProviderAttempt>();
        tracker.spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(e) = store.record_attempts(&batch).await {
                    tracing::warn!(error = %e, count = batch.len(), "could not record provider attempts");
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    /// Queues `attempt` for writing.
    pub fn record(&self, attempt: ProviderAttempt) {
        let _ = self.tx.send(attempt);
    }
}
