//! Keeps this instance's view of paused queues in step with the database, where the admin API
//! of any instance writes it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::queue::QueueStates;
use crate::store::{QueueStore, StoreError};

/// Reads the paused flags every `interval` (one small query) and applies them.
pub struct QueueSync {
    store: Arc<dyn QueueStore>,
    states: Arc<QueueStates>,
    interval: Duration,
}

impl QueueSync {
    /// Syncs `states` from `store` every `interval`.
    pub fn new(store: Arc<dyn QueueStore>, states: Arc<QueueStates>, interval: Duration) -> Self {
        Self {
            store,
            states,
            interval,
        }
    }

    /// Writes the configured queues to the database (keeping their paused flags) and loads
    /// the flags: the start-up step.
    pub async fn register(&self) -> Result<(), StoreError> {
        let records = self
            .store
            .sync_queues(self.states.set().specs(), clock::now())
            .await?;
        for r in records {
            self.states.set_paused(r.name, r.paused);
        }
        Ok(())
    }

    /// One pass: loads the flags.
    pub async fn sync(&self) -> Result<(), StoreError> {
        for r in self.store.list_queues().await? {
            self.states.set_paused(r.name, r.paused);
        }
        Ok(())
    }

    /// Runs passes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "could not read queue states");
            }
        }
    }
}
