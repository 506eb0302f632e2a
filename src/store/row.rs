//! The shape of a `tasks` row, shared by both databases, and its conversion to a [`Task`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::StoreError;
use super::notifications::{NotificationSession, Transport};
use crate::domain::{
    Priority, QueueName, RelatedEntity, StoredEvent, Task, TaskError, TaskEvent, TaskEventType,
    TaskId, TraceContext, UserId, WorkerId,
};

/// Every column of `tasks`, in the order of [`TASK_COLUMNS`].
pub const TASK_COLUMNS: &str = "id, user_id, task_type, status, priority, payload, result, error, \
     progress, retry_count, attempts, max_retries, idempotency_key, related_entity_type, related_entity_id, \
     provider, worker_id, lease_expires_at, timeout_ms, run_after, created_at, updated_at, \
     started_at, completed_at, queue, trace_context";

/// A `tasks` row as the database returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct TaskRow {
    id: Uuid,
    user_id: String,
    task_type: String,
    status: String,
    priority: i32,
    payload: Json<Value>,
    result: Option<Json<Value>>,
    error: Option<Json<Value>>,
    progress: i32,
    retry_count: i32,
    attempts: i32,
    max_retries: i32,
    idempotency_key: Option<String>,
    related_entity_type: Option<String>,
    related_entity_id: Option<String>,
    provider: Option<String>,
    worker_id: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    timeout_ms: i64,
    run_after: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    queue: String,
    trace_context: Option<String>,
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(r: TaskRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("task {}: bad {what}", r.id));
        let error = match r.error {
            Some(Json(v)) => {
                Some(serde_json::from_value::<TaskError>(v).map_err(|_| corrupt("error"))?)
            }
            None => None,
        };
        let related_entity = match (r.related_entity_type.clone(), r.related_entity_id.clone()) {
            (Some(entity_type), Some(entity_id)) => Some(RelatedEntity {
                entity_type,
                entity_id,
            }),
            _ => None,
        };
        Ok(Task {
            id: TaskId::from_uuid(r.id),
            user_id: UserId::parse(&r.user_id).map_err(|_| corrupt("user_id"))?,
            task_type: r.task_type.parse().map_err(|_| corrupt("task_type"))?,
            status: r.status.parse().map_err(|_| corrupt("status"))?,
            priority: Priority::new(i64::from(r.priority)).map_err(|_| corrupt("priority"))?,
            payload: r.payload.0,
            result: r.result.map(|j| j.0),
            error,
            progress: u8::try_from(r.progress.clamp(0, 100)).unwrap_or(0),
            retry_count: u32::try_from(r.retry_count).map_err(|_| corrupt("retry_count"))?,
            attempts: u32::try_from(r.attempts).map_err(|_| corrupt("attempts"))?,
            max_retries: u32::try_from(r.max_retries).map_err(|_| corrupt("max_retries"))?,
            idempotency_key: r.idempotency_key,
            related_entity,
            provider: r.provider,
            worker_id: r.worker_id.map(WorkerId::from_stored),
            lease_expires_at: r.lease_expires_at,
            timeout: Duration::from_millis(u64::try_from(r.timeout_ms).unwrap_or(0)),
            run_after: r.run_after,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            queue: QueueName::parse(&r.queue).map_err(|_| corrupt("queue"))?,
            // Only ever written from a parsed value; one that no longer parses loses the link
            // to its trace, never the task.
            trace_context: r
                .trace_context
                .as_deref()
                .and_then(|t| TraceContext::parse(t).ok()),
        })
    }
}

/// Converts rows, failing on the first corrupt one.
pub fn into_tasks(rows: Vec<TaskRow>) -> Result<Vec<Task>, StoreError> {
    rows.into_iter().map(Task::try_from).collect()
}

/// A `task_events` row.
#[derive(Debug, sqlx::FromRow)]
pub struct EventRow {
    task_id: Uuid,
    user_id: String,
    event_type: String,
    data: Json<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for TaskEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let kind = TaskEventType::parse(&r.event_type)
            .ok_or_else(|| StoreError::Corrupt(format!("event type {:?}", r.event_type)))?;
        Ok(TaskEvent {
            task_id: TaskId::from_uuid(r.task_id),
            user_id: UserId::parse(&r.user_id)
                .map_err(|_| StoreError::Corrupt("event user_id".into()))?,
            kind,
            data: r.data.0,
            created_at: r.created_at,
        })
    }
}

/// Millisecond timeout as stored.
pub fn timeout_ms(t: &Task) -> i64 {
    i64::try_from(t.timeout.as_millis()).unwrap_or(i64::MAX)
}

/// Columns of a [`StoredEventRow`].
pub const STORED_EVENT_COLUMNS: &str = "user_seq, task_id, user_id, event_type, data, created_at";

/// A `task_events` row with its per-user id.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredEventRow {
    user_seq: i64,
    #[sqlx(flatten)]
    event: EventRow,
}

impl TryFrom<StoredEventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(r: StoredEventRow) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            id: u64::try_from(r.user_seq)
                .map_err(|_| StoreError::Corrupt("event user_seq".into()))?,
            event: r.event.try_into()?,
        })
    }
}

/// Converts event rows, failing on the first corrupt one.
pub fn into_stored_events(rows: Vec<StoredEventRow>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter().map(StoredEvent::try_from).collect()
}

/// Columns of a [`SessionRow`].
pub const SESSION_COLUMNS: &str =
    "id, user_id, instance, transport, connected_at, last_seen, last_delivered_id";

/// A `notification_sessions` row.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    id: Uuid,
    user_id: String,
    instance: String,
    transport: String,
    connected_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_delivered_id: i64,
}

impl TryFrom<SessionRow> for NotificationSession {
    type Error = StoreError;

    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        Ok(NotificationSession {
            id: r.id,
            user_id: UserId::parse(&r.user_id)
                .map_err(|_| StoreError::Corrupt("session user_id".into()))?,
            instance: r.instance,
            transport: Transport::parse(&r.transport)
                .ok_or_else(|| StoreError::Corrupt(format!("transport {:?}", r.transport)))?,
            connected_at: r.connected_at,
            last_seen: r.last_seen,
            last_delivered_id: u64::try_from(r.last_delivered_id).unwrap_or(0),
        })
    }
}
