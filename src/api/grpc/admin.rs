//! `ai.integration.v1.AdminService`.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, admin_service_server::AdminService};
use crate::service::{QueueStats, ServiceError};

/// Default window of the averages.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The gRPC face of the admin service.
pub struct AdminApi {
    state: AppState,
}

impl AdminApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The protobuf form of the statistics; shared with the HTTP route, which serialises it as JSON.
pub fn stats_to_proto(s: QueueStats) -> proto::QueueStats {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    proto::QueueStats {
        pending_count: n(s.tasks.pending),
        processing_count: n(s.tasks.processing),
        completed_count: n(s.tasks.completed),
        failed_count: n(s.tasks.failed),
        cancelled_count: n(s.tasks.cancelled),
        queue_depth: n(s.queue_depth),
        average_wait_time_ms: n(s.tasks.average_wait_ms),
        average_processing_time_ms: n(s.tasks.average_processing_ms),
        sample_size: n(s.tasks.sample_size),
        window_seconds: n(s.window.as_secs()),
    }
}

/// A client's window in seconds: 0 means the default; negative is an error.
pub fn window(seconds: i64) -> Result<Duration, ServiceError> {
    match seconds {
        0 => Ok(DEFAULT_WINDOW),
        s if s > 0 => Ok(Duration::from_secs(s as u64)),
        _ => Err(ServiceError::Invalid(
            "window_seconds must not be negative".into(),
        )),
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_queue_stats(
        &self,
        request: Request<proto::GetQueueStatsRequest>,
    ) -> Result<Response<proto::QueueStats>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let window = window(request.get_ref().window_seconds).map_err(ApiError::from)?;
        let stats = self
            .state
            .admin
            .queue_stats(&caller, window)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(stats_to_proto(stats)))
    }
}
