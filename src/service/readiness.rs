//! Readiness: whether this instance should be sent traffic. One answer for `/readyz` and for
//! gRPC health, so a load balancer and a gRPC client never hear two stories.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ProjectionView, ProjectionsService, ServiceError};
use crate::queue::TaskQueue;
use crate::store::TaskStore;

/// Longest a probe may take: a database or queue that hangs is as unready as one that refuses
/// (and a probe must not hang the health loop or the orchestrator's `/readyz` call).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready when the database and the queue answer and no drain has begun.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    /// Cancelled when the graceful shutdown starts: from then on the instance is never ready
    /// again, so load balancers stop sending it work while it drains.
    draining: CancellationToken,
    /// Projections, reported when they lag (never a reason to be unready: the instance
    /// serves, only its read models are stale).
    projections: Option<ProjectionsService>,
}

impl Readiness {
    /// Probes `store` and `queue`; unready for good once `draining` is cancelled.
    pub fn new(
        store: Arc<dyn TaskStore>,
        queue: Arc<dyn TaskQueue>,
        draining: CancellationToken,
    ) -> Self {
        Self {
            store,
            queue,
            draining,
            projections: None,
        }
    }

    /// Also reports the lag of `projections`.
    pub fn with_projections(mut self, projections: ProjectionsService) -> Self {
        self.projections = Some(projections);
        self
    }

    /// The projections lagging past their threshold or parked, for `/readyz`'s body. Empty
    /// when their lag cannot be read in time either: that is the database's story, which
    /// [`Self::check`] tells.
    pub async fn lagging_projections(&self) -> Vec<ProjectionView> {
        let Some(p) = &self.projections else {
            return Vec::new();
        };
        match tokio::time::timeout(PROBE_TIMEOUT, p.lagging()).await {
            Ok(Ok(views)) => views,
            _ => Vec::new(),
        }
    }

    /// `Ok` when the instance may take traffic; `Unavailable` while draining or while the
    /// database or the queue does not answer within [`PROBE_TIMEOUT`].
    pub async fn check(&self) -> Result<(), ServiceError> {
        if self.is_draining() {
            return Err(draining());
        }
        let probe = async {
            self.store.ping().await?;
            self.queue.ping().await?;
            Ok::<(), ServiceError>(())
        };
        tokio::select! {
            // A drain that starts mid-probe wins at once: the answer must not lag the drain.
            _ = self.draining.cancelled() => Err(draining()),
            answer = tokio::time::timeout(PROBE_TIMEOUT, probe) => match answer {
                Ok(answer) => answer,
                Err(_) => Err(ServiceError::Unavailable(
                    "the database or the queue did not answer in time".into(),
                )),
            },
        }
    }

    /// Whether the graceful shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves when the graceful shutdown begins.
    pub async fn drained(&self) {
        self.draining.cancelled().await;
    }
}

fn draining() -> ServiceError {
    ServiceError::Unavailable("shutting down".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::Readiness;
    use crate::queue::MemoryQueue;
    use crate::service::ServiceError;
    use crate::store::SqliteTaskStore;

    #[tokio::test]
    async fn ready_until_the_drain_starts_then_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteTaskStore::open(dir.path()).await.unwrap());
        let draining = CancellationToken::new();
        let readiness = Readiness::new(store, Arc::new(MemoryQueue::new()), draining.clone());
        assert_eq!(readiness.check().await, Ok(()));
        assert!(!readiness.is_draining());

        draining.cancel();
        assert!(readiness.is_draining());
        assert!(matches!(
            readiness.check().await,
            Err(ServiceError::Unavailable(_))
        ));
        // Resolves at once now.
        readiness.drained().await;
    }
}
