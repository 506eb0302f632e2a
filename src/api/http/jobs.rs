//! Seed 003's job API, a compatibility surface over the task service: `POST /api/v1/jobs`
//! and `GET /api/v1/jobs/{job_id}` in the seed's shape. Jobs are tasks; a job id is a task id
//! and works with every task route too.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::Body;
use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::domain::{ErrorClass, NewTask, Task, TaskId, TaskRequest};
use crate::service::ServiceError;

/// `POST /api/v1/jobs`: seed 003's `{"type", "payload", "priority"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A task type (`GET /api/v1/task-types`).
    #[serde(rename = "type")]
    #[schema(example = "summarize")]
    job_type: String,
    /// The type's input, checked against its schema.
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
    priority: Option<i64>,
    idempotency_key: Option<String>,
}

/// A job as seed 003 shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobBody {
    job_id: String,
    #[serde(rename = "type")]
    job_type: &'static str,
    status: &'static str,
    priority: u8,
    progress: u8,
    result: Option<Value>,
    /// The last error's message, or `null`.
    error: Option<String>,
    /// Seed 003's error type: `retryable`, `non_retryable` or `rate_limit`.
    error_type: Option<&'static str>,
    created_at: chrono::DateTime<chrono::Utc>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Task> for JobBody {
    fn from(t: Task) -> Self {
        let (error, error_type) = match t.error {
            Some(e) => (
                Some(e.message),
                Some(match e.class {
                    ErrorClass::Retryable => "retryable",
                    ErrorClass::NonRetryable => "non_retryable",
                    ErrorClass::RateLimited => "rate_limit",
                }),
            ),
            None => (None, None),
        };
        Self {
            job_id: t.id.to_string(),
            job_type: t.task_type.as_str(),
            status: t.status.as_str(),
            priority: t.priority.value(),
            progress: t.progress,
            result: t.result,
            error,
            error_type,
            created_at: t.created_at,
            completed_at: t.completed_at,
        }
    }
}

/// `POST /api/v1/jobs`: 202 and the job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobRequest,
    responses((status = 202, description = "Stored and queued", body = JobBody)))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Body(req): Body<JobRequest>,
) -> Result<(StatusCode, Json<JobBody>), ApiError> {
    let request = TaskRequest {
        task_type: req.job_type,
        payload: req.payload,
        priority: req.priority,
        idempotency_key: req.idempotency_key,
        ..TaskRequest::default()
    };
    let new = NewTask::parse(&caller.submitter(), request, state.tasks.policy())?;
    let task = state
        .tasks
        .submit(vec![new])
        .await?
        .pop()
        .ok_or(ServiceError::Internal)?;
    Ok((StatusCode::ACCEPTED, Json(task.into())))
}

/// `GET /api/v1/jobs/{job_id}`.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "jobs",
    params(("job_id" = uuid::Uuid, Path, description = "A job (task) id, a UUID")),
    responses((status = 200, description = "The job", body = JobBody)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobBody>, ApiError> {
    let Path(raw) = path.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let id = TaskId::parse(&raw)?;
    Ok(Json(state.tasks.get(&caller, id).await?.into()))
}
