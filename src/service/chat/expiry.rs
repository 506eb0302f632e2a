//! The expiry job: sessions idle longer than `CHAT_IDLE_TIMEOUT` become `expired`. One
//! instance at a time runs it, holding a lease in the database (`job_leases`); the others try
//! to take the lease at each pass, so one takes over within a lease period when the holder
//! dies, and at once when it stops cleanly (it releases the lease). Correctness does not hang
//! on the lease: expiring is one guarded `UPDATE`, harmless if two instances ran it at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::domain::chat::ChatSession;
use crate::store::StoreError;
use crate::store::chat::ChatStore;

/// The lease's name in `job_leases`.
pub const EXPIRY_JOB: &str = "chat_expiry";

/// Sessions expired per statement, so one pass never holds long locks.
const EXPIRE_BATCH: u32 = 1_000;

/// What one pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpiryPass {
    /// Another instance holds the lease; nothing was done.
    NotHolder,
    /// These sessions were expired.
    Expired(Vec<ChatSession>),
}

/// The expiry loop of one instance.
pub struct ChatExpiry {
    store: Arc<dyn ChatStore>,
    /// Sessions idle longer are expired.
    idle_timeout: Duration,
    /// Time between passes.
    interval: Duration,
    /// This instance's name in the lease.
    owner: String,
}

impl ChatExpiry {
    /// Expires sessions idle longer than `idle_timeout`, checking every `interval`.
    pub fn new(
        store: Arc<dyn ChatStore>,
        idle_timeout: Duration,
        interval: Duration,
        owner: String,
    ) -> Self {
        Self {
            store,
            idle_timeout,
            interval,
            owner,
        }
    }

    /// The lease lasts a few passes, so a holder that renews at every pass keeps it.
    fn lease(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(1))
    }

    /// One pass: take or renew the lease, then expire every idle session.
    pub async fn run_once(&self) -> Result<ExpiryPass, StoreError> {
        let now = clock::now();
        let until = now + chrono::TimeDelta::from_std(self.lease()).unwrap_or_default();
        if !self
            .store
            .acquire_job_lease(EXPIRY_JOB, &self.owner, until, now)
            .await?
        {
            return Ok(ExpiryPass::NotHolder);
        }
        let idle = chrono::TimeDelta::from_std(self.idle_timeout).unwrap_or(chrono::TimeDelta::MAX);
        let before = now.checked_sub_signed(idle).unwrap_or(now);
        let mut expired = Vec::new();
        loop {
            let batch = self.store.expire_idle(before, now, EXPIRE_BATCH).await?;
            let n = batch.len();
            expired.extend(batch);
            if n < EXPIRE_BATCH as usize {
                break;
            }
        }
        if !expired.is_empty() {
            tracing::info!(sessions = expired.len(), "idle chat sessions expired");
        }
        Ok(ExpiryPass::Expired(expired))
    }

    /// Runs passes until `shutdown`, then gives the lease up so another instance takes over
    /// at once.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "chat expiry pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = self.store.release_job_lease(EXPIRY_JOB, &self.owner).await {
            tracing::debug!(error = %e, "could not release the chat expiry lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::domain::UserId;
    use crate::domain::chat::{ChatStatus, ItemId};
    use crate::store::SqliteTaskStore;

    fn idle_session(item: &str) -> ChatSession {
        let long_ago = clock::now() - chrono::TimeDelta::hours(1);
        ChatSession::start(
            UserId::parse("u").unwrap(),
            ItemId::parse(item).unwrap(),
            Value::Null,
            long_ago,
        )
        .unwrap()
    }

    /// One holder at a time expires idle sessions; a cancelled loop ends and gives the lease
    /// up, so another instance takes over at its next pass instead of after the lease.
    #[tokio::test]
    async fn one_instance_expires_and_a_clean_shutdown_hands_the_lease_over() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ChatStore> = Arc::new(
            SqliteTaskStore::open(dir.path())
                .await
                .unwrap()
                .chat_store(),
        );
        let idle = idle_session("old");
        store.save(&idle).await.unwrap();
        let interval = Duration::from_secs(60);
        let a = ChatExpiry::new(store.clone(), Duration::from_secs(60), interval, "a".into());
        let b = ChatExpiry::new(store.clone(), Duration::from_secs(60), interval, "b".into());

        let ExpiryPass::Expired(expired) = a.run_once().await.unwrap() else {
            panic!("a takes the free lease");
        };
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].status, ChatStatus::Expired);
        assert_eq!(b.run_once().await.unwrap(), ExpiryPass::NotHolder);

        let stop = CancellationToken::new();
        let running = tokio::spawn(a.run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the loop ends on cancel")
            .unwrap();
        store.save(&idle_session("older")).await.unwrap();
        let ExpiryPass::Expired(expired) = b.run_once().await.unwrap() else {
            panic!("b takes over at once: a released the lease");
        };
        assert_eq!(expired.len(), 1);
    }
}
