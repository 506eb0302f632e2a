//! `/api/v1/admin/*` handlers: admin-only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::api::grpc::admin::window;
use crate::service::{QueueStats, ServiceError};

/// `GET /api/v1/admin/queue/stats` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    #[serde(default)]
    window_seconds: i64,
}

/// Queue statistics as JSON.
#[derive(Debug, Serialize)]
pub struct StatsBody {
    pending_count: u64,
    processing_count: u64,
    completed_count: u64,
    failed_count: u64,
    cancelled_count: u64,
    queue_depth: u64,
    average_wait_time_ms: u64,
    average_processing_time_ms: u64,
    sample_size: u64,
    window_seconds: u64,
}

impl From<QueueStats> for StatsBody {
    fn from(s: QueueStats) -> Self {
        Self {
            pending_count: s.tasks.pending,
            processing_count: s.tasks.processing,
            completed_count: s.tasks.completed,
            failed_count: s.tasks.failed,
            cancelled_count: s.tasks.cancelled,
            queue_depth: s.queue_depth,
            average_wait_time_ms: s.tasks.average_wait_ms,
            average_processing_time_ms: s.tasks.average_processing_ms,
            sample_size: s.tasks.sample_size,
            window_seconds: s.window.as_secs(),
        }
    }
}

/// `GET /api/v1/admin/queue/stats?window_seconds=3600`.
pub async fn queue_stats(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<StatsBody>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let stats = state
        .admin
        .queue_stats(&caller, window(q.window_seconds)?)
        .await?;
    Ok(Json(stats.into()))
}
