//! `/api/v1/admin/queues*` handlers: named queues, admin-only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::api::grpc::admin::window;
use crate::service::{QueueView, ServiceError};
use crate::worker::PoolSnapshot;

/// `GET /api/v1/admin/queues` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueuesQuery {
    /// The window of finished tasks the averages cover, in seconds (0: 3600).
    #[serde(default)]
    #[param(minimum = 0, maximum = 604800)]
    window_seconds: i64,
}

/// One queue as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueBody {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    rate: Option<String>,
    concurrency: usize,
    paused: bool,
    pending_count: u64,
    processing_count: u64,
    completed_count: u64,
    failed_count: u64,
    cancelled_count: u64,
    average_wait_time_ms: u64,
    average_processing_time_ms: u64,
    sample_size: u64,
    queue_depth: u64,
    running: usize,
}

impl From<QueueView> for QueueBody {
    fn from(q: QueueView) -> Self {
        Self {
            name: q.spec.name.as_str(),
            kind: q.spec.kind.as_str(),
            rate: q.spec.rate.map(|r| r.to_string()),
            concurrency: q.spec.concurrency,
            paused: q.paused,
            pending_count: q.tasks.pending,
            processing_count: q.tasks.processing,
            completed_count: q.tasks.completed,
            failed_count: q.tasks.failed,
            cancelled_count: q.tasks.cancelled,
            average_wait_time_ms: q.tasks.average_wait_ms,
            average_processing_time_ms: q.tasks.average_processing_ms,
            sample_size: q.tasks.sample_size,
            queue_depth: q.depth,
            running: q.running,
        }
    }
}

/// The answering instance's worker pool as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolBody {
    limit: usize,
    min: usize,
    max: usize,
    adaptive: bool,
    running: usize,
}

impl From<PoolSnapshot> for PoolBody {
    fn from(p: PoolSnapshot) -> Self {
        Self {
            limit: p.limit,
            min: p.min,
            max: p.max,
            adaptive: p.adaptive,
            running: p.running,
        }
    }
}

/// The queues and the pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuesBody {
    queues: Vec<QueueBody>,
    pool: PoolBody,
    window_seconds: u64,
}

/// `GET /api/v1/admin/queues?window_seconds=3600`.
#[utoipa::path(get, path = "/api/v1/admin/queues", tag = "admin", params(QueuesQuery),
    responses((status = 200, description = "Every named queue and the pool", body = QueuesBody)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<QueuesQuery>, QueryRejection>,
) -> Result<Json<QueuesBody>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let window = window(q.window_seconds)?;
    let (queues, pool) = state.admin.list_queues(&caller, window).await?;
    Ok(Json(QueuesBody {
        queues: queues.into_iter().map(QueueBody::from).collect(),
        pool: pool.into(),
        window_seconds: window.as_secs(),
    }))
}

/// `POST /api/v1/admin/queues/{name}/pause` → `{"name", "paused": true}`.
#[utoipa::path(post, path = "/api/v1/admin/queues/{name}/pause", tag = "admin", params(("name" = String, Path, description = "A configured queue")),
    responses((status = 200, description = "Paused on every instance", body = Paused)))]
pub async fn pause(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Paused>, ApiError> {
    state.admin.set_queue_paused(&caller, &name, true).await?;
    Ok(Json(Paused { name, paused: true }))
}

/// `POST /api/v1/admin/queues/{name}/resume` → `{"name", "paused": false}`.
#[utoipa::path(post, path = "/api/v1/admin/queues/{name}/resume", tag = "admin", params(("name" = String, Path, description = "A configured queue")),
    responses((status = 200, description = "Running again", body = Paused)))]
pub async fn resume(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Paused>, ApiError> {
    state.admin.set_queue_paused(&caller, &name, false).await?;
    Ok(Json(Paused {
        name,
        paused: false,
    }))
}

/// `{"name", "paused"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    name: String,
    paused: bool,
}
