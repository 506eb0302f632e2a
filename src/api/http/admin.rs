//! `/api/v1/admin/*` handlers: admin-only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::json::{Body, TaskBody};
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::api::grpc::admin::{dead_letter_filter, selection, window};
use crate::domain::PageRequest;
use crate::service::{QueueStats, ServiceError};

/// `GET /api/v1/admin/queue/stats` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window of finished tasks the averages cover, in seconds (0: 3600).
    #[serde(default)]
    #[param(minimum = 0, maximum = 604800)]
    window_seconds: i64,
}

/// Queue statistics as JSON.
#[derive(Debug, Serialize, ToSchema)]
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
    /// The answering instance's worker pool, with its current adaptive limit.
    pool: super::queues::PoolBody,
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
            pool: s.pool.into(),
        }
    }
}

/// `GET /api/v1/admin/queue/stats?window_seconds=3600`.
#[utoipa::path(get, path = "/api/v1/admin/queue/stats", tag = "admin", params(StatsQuery),
    responses((status = 200, description = "Counts, depth, averages and the pool", body = StatsBody)))]
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

/// `GET /api/v1/admin/dead-letters` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Dead letters per page (0: the default).
    #[serde(default)]
    #[param(maximum = 1000)]
    page_size: u32,
    /// The `next_page_token` of the previous page.
    #[serde(default)]
    page_token: String,
    /// Only this task type.
    #[serde(default, rename = "type")]
    task_type: String,
    /// Only this error class: `retryable`, `non_retryable` or `rate_limited` (empty: any).
    #[serde(default)]
    #[param(pattern = "^(|retryable|non_retryable|rate_limited)$")]
    error_class: String,
}

/// One failed attempt of a dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedAttemptBody {
    #[serde(rename = "type")]
    event_type: &'static str,
    error: Option<serde_json::Value>,
    at: chrono::DateTime<chrono::Utc>,
}

/// A dead letter: the task and its failure history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterBody {
    #[serde(flatten)]
    task: TaskBody,
    history: Vec<FailedAttemptBody>,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersBody {
    dead_letters: Vec<DeadLetterBody>,
    next_page_token: Option<String>,
}

/// `GET /api/v1/admin/dead-letters?page_size&page_token&type&error_class`.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "admin", params(DeadLetterQuery),
    responses((status = 200, description = "Failed tasks, newest first", body = DeadLettersBody)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<DeadLettersBody>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let page = PageRequest::parse(q.page_size, &q.page_token)?;
    let filter = dead_letter_filter(&q.task_type, &q.error_class)?;
    let page = state.admin.list_dead_letters(&caller, filter, page).await?;
    let dead_letters = page
        .items
        .into_iter()
        .map(|d| DeadLetterBody {
            task: d.task.into(),
            history: d
                .history
                .into_iter()
                .map(|e| FailedAttemptBody {
                    event_type: e.kind.as_str(),
                    error: e.data.get("error").cloned(),
                    at: e.created_at,
                })
                .collect(),
        })
        .collect();
    Ok(Json(DeadLettersBody {
        dead_letters,
        next_page_token: page.next_page_token,
    }))
}

/// Body of requeue and purge: ids, or a filter, or `all`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectionBody {
    /// These tasks (UUIDs).
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    task_ids: Vec<String>,
    #[serde(default, rename = "type")]
    task_type: String,
    #[serde(default)]
    error_class: String,
    #[serde(default)]
    all: bool,
}

/// `POST /api/v1/admin/dead-letters/requeue` → `{"requeued": n}`.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/requeue", tag = "admin", request_body = SelectionBody,
    responses((status = 200, description = "How many went back to the queue", body = Requeued)))]
pub async fn requeue(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(b): Body<SelectionBody>,
) -> Result<Json<Requeued>, ApiError> {
    let sel = selection(&b.task_ids, &b.task_type, &b.error_class, b.all)?;
    let requeued = state.admin.requeue_dead_letters(&caller, sel).await?;
    Ok(Json(Requeued { requeued }))
}

/// `POST /api/v1/admin/dead-letters/purge` → `{"purged": n}`.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/purge", tag = "admin", request_body = SelectionBody,
    responses((status = 200, description = "How many were deleted", body = Purged)))]
pub async fn purge(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(b): Body<SelectionBody>,
) -> Result<Json<Purged>, ApiError> {
    let sel = selection(&b.task_ids, &b.task_type, &b.error_class, b.all)?;
    let purged = state.admin.purge_dead_letters(&caller, sel).await?;
    Ok(Json(Purged { purged }))
}

/// `{"requeued": n}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    requeued: u64,
}

/// `{"purged": n}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    purged: u64,
}
