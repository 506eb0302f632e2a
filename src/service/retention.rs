//! Deletes notifications older than `NOTIFICATION_RETENTION` and expired stream tickets, and
//! ends sessions whose instance died. The per-user counters stay, so ids never restart: a client resuming from a deleted
//! id is told its history is gone (`recovered: false`) instead of being handed reused ids.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::notifications::SESSION_STALE;
use crate::clock;
use crate::store::{NotificationStore, StoreError};

/// Events deleted per statement, so one pass never holds long locks.
const DELETE_BATCH: u32 = 10_000;

/// The retention loop.
pub struct Retention {
    store: Arc<dyn NotificationStore>,
    /// How long events are kept.
    keep: Duration,
    /// Time between passes.
    interval: Duration,
}

impl Retention {
    /// Keeps events for `keep`; passes run every quarter of it (100 ms to 1 min).
    pub fn new(store: Arc<dyn NotificationStore>, keep: Duration) -> Self {
        Self {
            store,
            keep,
            interval: (keep / 4).clamp(Duration::from_millis(100), Duration::from_secs(60)),
        }
    }

    /// One pass; returns how many events were deleted.
    pub async fn run_once(&self) -> Result<u64, StoreError> {
        let now = clock::now();
        let keep = chrono::TimeDelta::from_std(self.keep).unwrap_or(chrono::TimeDelta::MAX);
        let cutoff = now.checked_sub_signed(keep).unwrap_or(now);
        let mut total = 0;
        loop {
            let n = self
                .store
                .delete_events_before(cutoff, DELETE_BATCH)
                .await?;
            total += n;
            if n < u64::from(DELETE_BATCH) {
                break;
            }
        }
        let stale = chrono::TimeDelta::from_std(SESSION_STALE).unwrap_or(chrono::TimeDelta::MAX);
        let ended = self.store.end_stale_sessions(now - stale).await?;
        let tickets = self.store.delete_expired_stream_tickets(now).await?;
        if total > 0 || ended > 0 {
            tracing::info!(events = total, sessions = ended, "notification retention");
        }
        if tickets > 0 {
            tracing::debug!(tickets, "expired stream tickets deleted");
        }
        Ok(total)
    }

    /// Runs passes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "notification retention pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
