//! Projections (seed 002's ProjectionManager): background runners that fold the event
//! store's global stream into read models, and what admins see and do with them.
//!
//! - One runner per projection per instance ([`ProjectionManager`]); only the holder of the
//!   projection's lease works, so in clustered mode exactly one instance runs each projection
//!   and another takes over within a lease period when it dies (`runner.rs`).
//! - Batches of events, each applied with its checkpoint in one transaction (see
//!   [`crate::store::progress`]): resumed after a restart from the checkpoint, delivered at
//!   least once, applied once.
//! - Woken by the store's head ([`StoreHead`]) as soon as an append commits here, or within a
//!   poll interval when it commits on another instance.
//! - Rebuilds from position 0 into a new generation while the old one keeps serving, swapped
//!   in once caught up ([`ProjectionsService::rebuild`]).
//! - The lag monitor: events behind the head, age of the oldest unfolded event, last
//!   heartbeat, parks ([`ProjectionsService::overview`]); the same figures feed `/metrics` and
//!   `/readyz`.

mod handler;
mod head;
mod runner;
pub mod task_feed;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use serde_json::json;

use super::ServiceError;
use super::admin::require_admin;
use super::audit::AuditLog;
use crate::auth::Caller;
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::projection::{Lag, ProjectionName, ProjectionStatus};
use crate::store::eventstore::EventStore;
use crate::store::progress::ProjectionStore;
use crate::telemetry::metrics;

pub use handler::{Unfoldable, work};
pub use head::StoreHead;
use runner::Runner;
pub use runner::RunnerSettings;
pub use task_feed::{FeedingPublisher, Finish, TaskFeed};

/// Starts the projection runners of this instance.
pub struct ProjectionManager {
    /// Where events are read.
    pub events: Arc<dyn EventStore>,
    /// Checkpoints, leases and read models.
    pub store: Arc<dyn ProjectionStore>,
    /// Wakes the runners when events are appended.
    pub head: StoreHead,
    /// This instance's name as a lease owner (unique per process).
    pub owner: String,
    /// Batches, leases, parks.
    pub settings: RunnerSettings,
}

impl ProjectionManager {
    /// Spawns one runner per projection on `tracker`; they stop (releasing their leases) when
    /// `cancel` is cancelled.
    pub fn spawn(&self, tracker: &TaskTracker, cancel: &CancellationToken) {
        for name in ProjectionName::ALL {
            let runner = Runner {
                name,
                events: self.events.clone(),
                store: self.store.clone(),
                head: self.head.clone(),
                owner: self.owner.clone(),
                settings: self.settings,
            };
            tracker.spawn(runner.run(cancel.child_token()));
        }
    }
}

/// A projection as admins see it: where it stands, how far behind, and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionView {
    /// As stored.
    pub status: ProjectionStatus,
    /// Behind the head.
    pub lag: Lag,
    /// `running`, `rebuilding`, `parked` or `stopped`.
    pub state: &'static str,
}

/// The lag monitor and the admin calls.
#[derive(Clone)]
pub struct ProjectionsService {
    events: Arc<dyn EventStore>,
    store: Arc<dyn ProjectionStore>,
    /// Past this, a projection is reported as lagging by `/readyz`.
    lag_threshold: Duration,
    /// Where rebuilds and resumes are recorded.
    audit: AuditLog,
}

impl ProjectionsService {
    /// The monitor over `events` and `store`.
    pub fn new(
        events: Arc<dyn EventStore>,
        store: Arc<dyn ProjectionStore>,
        lag_threshold: Duration,
        audit: AuditLog,
    ) -> Self {
        Self {
            events,
            store,
            lag_threshold,
            audit,
        }
    }

    /// Every projection with its lag (no caller check: for readiness and metrics).
    pub async fn overview(&self) -> Result<Vec<ProjectionView>, ServiceError> {
        let statuses = self.store.statuses().await?;
        let head = self.events.last_position().await.map_err(store_failed)?;
        let now = clock::now();
        let mut views = Vec::with_capacity(statuses.len());
        for status in statuses {
            let oldest = if status.position < head {
                self.events
                    .read_all_events(status.position + 1, 1)
                    .await
                    .map_err(store_failed)?
                    .first()
                    .map(|e| e.created_at)
            } else {
                None
            };
            let lag = Lag::of(status.position, head, oldest, status.heartbeat_at, now);
            let state = status.state(now);
            views.push(ProjectionView { status, lag, state });
        }
        Ok(views)
    }

    /// [`Self::overview`], for admins.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<ProjectionView>, ServiceError> {
        require_admin(caller)?;
        self.overview().await
    }

    /// Starts rebuilding `name` from position 0 beside the model readers see, which stays
    /// until the rebuild has caught up. A rebuild already under way starts over. Clears a park.
    pub async fn rebuild(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<ProjectionView, ServiceError> {
        require_admin(caller)?;
        let outcome = async {
            let name = ProjectionName::parse(name)?;
            let generation = self.store.start_rebuild(name, clock::now()).await?;
            tracing::info!(projection = %name, generation, by = %caller.user_id, "projection rebuild started");
            self.view(name).await
        }
        .await;
        let detail = |v: &ProjectionView| json!({ "generation": v.status.rebuild.map(|r| r.0) });
        self.audit
            .record(
                caller,
                AuditAction::RebuildProjection,
                name,
                outcome,
                detail,
            )
            .await
    }

    /// Clears a park: the runner tries the event it stopped on again.
    pub async fn resume(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<ProjectionView, ServiceError> {
        require_admin(caller)?;
        let outcome = async {
            let name = ProjectionName::parse(name)?;
            self.store.unpark(name).await?;
            tracing::info!(projection = %name, by = %caller.user_id, "projection resumed");
            self.view(name).await
        }
        .await;
        let action = AuditAction::ResumeProjection;
        self.audit
            .record(caller, action, name, outcome, |_| serde_json::Value::Null)
            .await
    }

    async fn view(&self, name: ProjectionName) -> Result<ProjectionView, ServiceError> {
        self.overview()
            .await?
            .into_iter()
            .find(|v| v.status.name == name)
            .ok_or(ServiceError::Internal)
    }

    /// Projections whose oldest unfolded event has waited past the threshold, or parked.
    pub async fn lagging(&self) -> Result<Vec<ProjectionView>, ServiceError> {
        Ok(self
            .overview()
            .await?
            .into_iter()
            .filter(|v| v.lag.is_lagging(self.lag_threshold) || v.status.parked.is_some())
            .collect())
    }

    /// The lag threshold of `/readyz`.
    pub fn lag_threshold(&self) -> Duration {
        self.lag_threshold
    }

    /// Sets the projection gauges (at scrape time).
    pub async fn export_metrics(&self) {
        match self.overview().await {
            Ok(views) => {
                for v in views {
                    metrics::set_projection_lag(
                        v.status.name.as_str(),
                        v.lag.events_behind,
                        v.lag.oldest_unprocessed_age,
                        v.lag.heartbeat_age,
                        v.status.parked.is_some(),
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "projection lag unread"),
        }
    }
}

fn store_failed(e: crate::store::eventstore::EventStoreError) -> ServiceError {
    match e {
        crate::store::eventstore::EventStoreError::Store(s) => s.into(),
        crate::store::eventstore::EventStoreError::Rejected(r) => {
            ServiceError::Invalid(r.to_string())
        }
    }
}

#[cfg(test)]
mod tests;
