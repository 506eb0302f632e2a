//! The operator dashboard's live view: one aggregator per instance computes the cluster's
//! figures once a second (see `aggregator.rs`), and every open dashboard shares its frames,
//! so an extra dashboard costs a copy of one small JSON message a second.

mod aggregator;
mod point;
mod ring;
mod state;
mod sum;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use aggregator::{Aggregator, Identity};
pub use point::{Point, ProviderPoint, SeriesPoint};
pub use ring::HISTORY_SECONDS;
pub use state::{State, StateSources};

use super::ServiceError;
use super::admin::require_admin;
use crate::auth::Caller;
use crate::telemetry::live::LiveCounters;
use crate::telemetry::live::board::SampleBoard;
use crate::worker::Slots;
use aggregator::Frames;
use ring::Ring;
use state::StateReader;
use sum::ClusterSummer;

/// How often the aggregator ticks: the charts' resolution.
pub const TICK: Duration = Duration::from_secs(1);

/// What one open dashboard receives.
pub struct DashboardFeed {
    /// The last 15 minutes, then the latest frame if there is one, as one JSON object:
    /// `{"points": [Point], "latest": Frame | null}`.
    pub history: String,
    /// Each new frame (`{"point", "state"}`), shared with every other dashboard; `None` once
    /// the aggregator stops.
    pub frames: watch::Receiver<Option<Arc<str>>>,
    /// Cancelled at shutdown: the stream ends.
    pub shutdown: CancellationToken,
}

/// Opens dashboard feeds (admin only).
#[derive(Clone)]
pub struct DashboardService {
    ring: Arc<Mutex<Ring>>,
    frames: Arc<Frames>,
    shutdown: CancellationToken,
}

/// What the dashboard is built from.
pub struct DashboardParts {
    /// This instance on the board.
    pub me: Identity,
    /// This instance's counters.
    pub live: Arc<LiveCounters>,
    /// Where instances share them.
    pub board: Arc<dyn SampleBoard>,
    /// This instance's pool.
    pub slots: Arc<Slots>,
    /// Queues, providers, dead letters, instances.
    pub sources: StateSources,
    /// How often to tick ([`TICK`] outside tests).
    pub interval: Duration,
}

impl DashboardService {
    /// The service and its aggregator, which the caller runs until `shutdown`.
    pub fn new(parts: DashboardParts, shutdown: CancellationToken) -> (Self, Aggregator) {
        let ring = Arc::new(Mutex::new(Ring::new()));
        let frames = Arc::new(watch::Sender::new(None));
        let aggregator = Aggregator {
            me: parts.me,
            live: parts.live,
            board: parts.board,
            slots: parts.slots,
            state: StateReader::new(parts.sources),
            summer: ClusterSummer::new(),
            ring: ring.clone(),
            frames: frames.clone(),
            interval: parts.interval,
        };
        let service = Self {
            ring,
            frames,
            shutdown,
        };
        (service, aggregator)
    }

    /// A live feed for `caller`, who must be an admin.
    pub fn subscribe(&self, caller: &Caller) -> Result<DashboardFeed, ServiceError> {
        require_admin(caller)?;
        let mut frames = self.frames.subscribe();
        let latest = frames.borrow_and_update().clone();
        let points = {
            let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            let points: Vec<&Point> = ring.points().collect();
            serde_json::to_string(&points)
        }
        .map_err(|e| {
            tracing::error!(error = %e, "dashboard history not serialised");
            ServiceError::Internal
        })?;
        let latest = latest.as_deref().unwrap_or("null");
        Ok(DashboardFeed {
            history: format!("{{\"points\":{points},\"latest\":{latest}}}"),
            frames,
            shutdown: self.shutdown.clone(),
        })
    }

    /// Dashboards open on this instance now.
    pub fn watchers(&self) -> usize {
        self.frames.receiver_count()
    }
}

#[cfg(test)]
mod tests;
