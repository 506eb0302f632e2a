//! JSON request and response bodies.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::json_depth::too_deep;
use crate::api::error::ApiError;
use crate::api::limits::{BodyLimit, BodyTimeout, MAX_JSON_DEPTH};
use crate::auth::Caller;
use crate::domain::{NewTask, SubmitPolicy, Task, TaskError, TaskRequest};
use crate::service::ServiceError;

/// A JSON request body, read within `BODY_READ_TIMEOUT` and the route's size limit, checked
/// for nesting deeper than [`MAX_JSON_DEPTH`] before it is deserialised, and refusing the NUL
/// character (`\u0000`) anywhere in the document: PostgreSQL can store it neither in `jsonb`
/// nor in `text`, so it would fail as a 503 in clustered mode (found by schemathesis); both
/// modes refuse it alike, up front. Every refusal answers in our error format and names the
/// limit.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ServiceError::Invalid(
                "Expected request with `Content-Type: application/json`".into(),
            )
            .into());
        }
        let limit = req.extensions().get::<BodyLimit>().copied();
        let timeout = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        let bytes = match tokio::time::timeout(timeout, Bytes::from_request(req, state)).await {
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
            Ok(Err(rejection)) => return Err(body_refused(&rejection, limit)),
            Ok(Ok(bytes)) => bytes,
        };
        if let Some(depth) = too_deep(&bytes, MAX_JSON_DEPTH) {
            return Err(ServiceError::Invalid(format!(
                "JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"
            ))
            .into());
        }
        if has_escaped_nul(&bytes) {
            return Err(ServiceError::Invalid(
                "the body contains the NUL character (\\u0000), which cannot be stored".into(),
            )
            .into());
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// Used when no [`BodyTimeout`] is set (routers built without the edge limits).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// `application/json`, or any `application/*+json`, as axum's `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why the body could not be read: over the size limit (413, naming it) or cut off (400).
fn body_refused(rejection: &BytesRejection, limit: Option<BodyLimit>) -> ApiError {
    if rejection.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return ServiceError::Invalid(rejection.body_text()).into();
    }
    let msg = match limit {
        Some(BodyLimit(n)) => format!(
            "request body is over this endpoint's limit of {n} bytes ({} MiB)",
            n >> 20
        ),
        None => "request body is over this endpoint's size limit".to_owned(),
    };
    ServiceError::TooLarge(msg).into()
}

/// Whether JSON text holds the escape `\u0000` (unescaped NUL is not valid JSON): a backslash
/// that starts an escape is preceded by an even number of backslashes.
fn has_escaped_nul(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A task type (`GET /api/v1/task-types` lists them).
    #[serde(rename = "type")]
    #[schema(example = "summarize")]
    pub task_type: String,
    /// The type's input, checked against its schema (unknown fields are refused).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// 0 (lowest) to 10; users up to `MAX_USER_PRIORITY`; the type's default when absent.
    pub priority: Option<i64>,
    /// A retry with the same key returns the task the first submit stored.
    pub idempotency_key: Option<String>,
    /// What the task is about, with `related_entity_id`.
    pub related_entity_type: Option<String>,
    /// What the task is about, with `related_entity_type`.
    pub related_entity_id: Option<String>,
    /// This task's attempt timeout, at most `MAX_TASK_TIMEOUT`.
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchRequest {
    /// Up to 1,000 tasks, stored in one transaction.
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
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskBody {
    /// A UUID.
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: &'static str,
    /// `pending`, `processing`, `completed`, `failed` or `cancelled`.
    #[schema(example = "pending")]
    pub status: &'static str,
    pub priority: u8,
    /// The named queue it was routed to.
    pub queue: &'static str,
    pub progress: u8,
    /// The type's result once completed.
    pub result: Option<Value>,
    /// The last failure.
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
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Tasks per page (0: the default).
    #[serde(default)]
    #[param(maximum = 1000)]
    pub page_size: u32,
    /// The `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: String,
    /// Only tasks with this status.
    #[param(pattern = "^(pending|processing|completed|failed|cancelled)$")]
    pub status: Option<String>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    pub task_type: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    pub tasks: Vec<TaskBody>,
    pub next_page_token: Option<String>,
}

/// A batch's tasks in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub tasks: Vec<TaskBody>,
}

#[cfg(test)]
mod tests {
    use super::has_escaped_nul;

    #[test]
    fn finds_an_escaped_nul_and_not_an_escaped_backslash() {
        assert!(has_escaped_nul(br#"{"a": "x\u0000"}"#));
        assert!(has_escaped_nul(br#"{"\u0000": 1}"#));
        assert!(has_escaped_nul(br#"["\\\u0000"]"#));
        assert!(!has_escaped_nul(br#"{"a": "\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a": "\u0001"}"#));
    }
}
