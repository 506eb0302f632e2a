//! Wiring of the operator dashboard: its aggregator, started on the background tracker.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::domain::WorkerId;
use crate::service::DashboardService;
use crate::service::dashboard::{DashboardParts, Identity, StateSources, TICK};
use crate::telemetry::live::LiveCounters;
use crate::telemetry::live::board::SampleBoard;
use crate::worker::Slots;

/// The dashboard service; its aggregator runs on `background` until `shutdown`.
pub fn start(
    worker_id: &WorkerId,
    live: Arc<LiveCounters>,
    board: Arc<dyn SampleBoard>,
    slots: Arc<Slots>,
    sources: StateSources,
    background: &TaskTracker,
    shutdown: &CancellationToken,
) -> DashboardService {
    let parts = DashboardParts {
        me: Identity {
            id: worker_id.as_str().to_owned(),
            boot: rand::random(),
            started_ms: clock::now().timestamp_millis(),
        },
        live,
        board,
        slots,
        sources,
        interval: TICK,
    };
    let (service, aggregator) = DashboardService::new(parts, shutdown.child_token());
    background.spawn(aggregator.run(shutdown.child_token()));
    service
}
