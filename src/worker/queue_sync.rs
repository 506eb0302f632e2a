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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QueueName;
    use crate::queue::QueueSet;
    use crate::store::SqliteTaskStore;

    #[tokio::test]
    async fn applies_flags_written_elsewhere_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn QueueStore> = Arc::new(SqliteTaskStore::open(dir.path()).await.unwrap());
        let states = Arc::new(QueueStates::new(QueueSet::single(2)));
        let sync = QueueSync::new(store.clone(), states.clone(), Duration::from_millis(10));
        sync.register().await.unwrap();
        let q = QueueName::default_queue();
        assert!(!states.is_paused_name(q));

        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sync.run(shutdown.clone()));
        // Another instance pauses the queue.
        assert!(store.set_queue_paused(q, true, clock::now()).await.unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !states.is_paused_name(q) {
            assert!(tokio::time::Instant::now() < deadline, "flag not applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops on shutdown")
            .unwrap();

        // A restart keeps the flag: registering again does not reset it.
        let again = Arc::new(QueueStates::new(QueueSet::single(2)));
        QueueSync::new(store, again.clone(), Duration::from_secs(1))
            .register()
            .await
            .unwrap();
        assert!(again.is_paused_name(q));
    }
}
