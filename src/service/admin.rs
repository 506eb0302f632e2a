//! Operator views: admin-only.

use std::sync::Arc;
use std::time::Duration;

use super::ServiceError;
use crate::auth::{Caller, Role};
use crate::clock;
use crate::queue::TaskQueue;
use crate::store::{TaskStats, TaskStore};

/// Longest window the averages may cover.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Queue statistics and, later, dead letters and provider health.
#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
}

/// Statistics of the whole service.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    /// Counts per status and recent timings, from the database.
    pub tasks: TaskStats,
    /// Ids in the queue: ready plus delayed retries.
    pub queue_depth: u64,
    /// The window the averages cover.
    pub window: Duration,
}

impl AdminService {
    /// Reads from `store` and `queue`.
    pub fn new(store: Arc<dyn TaskStore>, queue: Arc<dyn TaskQueue>) -> Self {
        Self { store, queue }
    }

    /// Counts, queue depth and mean wait and processing times of tasks created in the last
    /// `window` that have finished.
    pub async fn queue_stats(
        &self,
        caller: &Caller,
        window: Duration,
    ) -> Result<QueueStats, ServiceError> {
        require_admin(caller)?;
        if window.is_zero() || window > MAX_WINDOW {
            return Err(ServiceError::Invalid(format!(
                "window must be between 1 s and {} s",
                MAX_WINDOW.as_secs()
            )));
        }
        let since = clock::now() - window;
        let tasks = self.store.task_stats(since).await?;
        let queue_depth = self.queue.len().await?;
        Ok(QueueStats {
            tasks,
            queue_depth,
            window,
        })
    }
}

fn require_admin(caller: &Caller) -> Result<(), ServiceError> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::User => Err(ServiceError::Forbidden(
            "this call needs an admin token".into(),
        )),
    }
}
