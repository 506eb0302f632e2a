//! JSON request and response bodies.

use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::auth::Caller;
use crate::domain::{NewTask, SubmitPolicy, Task, TaskError, TaskRequest};
use crate::service::ServiceError;

/// `Json` whose rejections (malformed JSON, wrong content type, body too large) answer in our
/// error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let msg = r.body_text();
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ServiceError::TooLarge(msg).into(),
            _ => ServiceError::Invalid(msg).into(),
        }
    }
}

/// `POST /api/v1/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub payload: Value,
    pub priority: Option<i64>,
    pub idempotency_key: Option<String>,
    pub related_entity_type: Option<String>,
    pub related_entity_id: Option<String>,
    pub timeout_seconds: Option<u64>,
}

impl SubmitRequest {
    /// Validates into a domain request owned by `caller` under `policy`.
    pub fn into_new_task(
        self,
        caller: &Caller,
        policy: &SubmitPolicy,
    ) -> Result<NewTask, ApiError> {
        let related_entity = match (self.related_entity_type, self.related_entity_id) {
            (None, None) => None,
            (t, i) => Some((t.unwrap_or_default(), i.unwrap_or_default())),
        };
        let request = TaskRequest {
            task_type: self.task_type,
            payload: self.payload,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            related_entity,
            timeout_seconds: self.timeout_seconds,
        };
        Ok(NewTask::parse(&caller.submitter(), request, policy)?)
    }
}

/// `POST /api/v1/tasks/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchRequest {
    pub tasks: Vec<SubmitRequest>,
}

impl SubmitBatchRequest {
    /// Validates every task, in order; an error names the index of the bad one.
    pub fn into_new_tasks(
        self,
        caller: &Caller,
        policy: &SubmitPolicy,
    ) -> Result<Vec<NewTask>, ApiError> {
        self.tasks
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.into_new_task(caller, policy).map_err(|e| match e {
                    ApiError::Service(ServiceError::Invalid(m)) => {
                        ServiceError::Invalid(format!("tasks[{i}]: {m}")).into()
                    }
                    other => other,
                })
            })
            .collect()
    }
}

/// A task as HTTP clients see it (seed 003's job shape).
#[derive(Debug, Serialize)]
pub struct TaskBody {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: &'static str,
    pub status: &'static str,
    pub priority: u8,
    /// The named queue it was routed to.
    pub queue: &'static str,
    pub progress: u8,
    pub result: Option<Value>,
    pub error: Option<TaskError>,
    pub retry_count: u32,
    pub attempts: u32,
    pub max_retries: u32,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_entity_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_entity_id: Option<String>,
    pub timeout_ms: u64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<Task> for TaskBody {
    fn from(t: Task) -> Self {
        let (related_entity_type, related_entity_id) = match t.related_entity {
            Some(r) => (Some(r.entity_type), Some(r.entity_id)),
            None => (None, None),
        };
        Self {
            task_id: t.id.to_string(),
            task_type: t.task_type.as_str(),
            status: t.status.as_str(),
            priority: t.priority.value(),
            queue: t.queue.as_str(),
            progress: t.progress,
            result: t.result,
            error: t.error,
            retry_count: t.retry_count,
            attempts: t.attempts,
            max_retries: t.max_retries,
            user_id: t.user_id.to_string(),
            idempotency_key: t.idempotency_key,
            related_entity_type,
            related_entity_id,
            timeout_ms: u64::try_from(t.timeout.as_millis()).unwrap_or(u64::MAX),
            created_at: t.created_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
        }
    }
}

/// `GET /api/v1/tasks` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub page_size: u32,
    #[serde(default)]
    pub page_token: String,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize)]
pub struct ListResponse {
    pub tasks: Vec<TaskBody>,
    pub next_page_token: Option<String>,
}

/// A batch's tasks in request order.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    pub tasks: Vec<TaskBody>,
}
