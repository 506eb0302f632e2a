//! Rows of the pipeline tables, decoded into the port's records.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use super::{SessionRecord, StageRecord};
use crate::domain::pipeline::PipelineDef;
use crate::domain::{TaskId, UserId};
use crate::store::StoreError;
use crate::store::sql::Bind;

/// The columns of [`SessionRow`], in order.
pub(super) const SESSION_COLUMNS: &str = "id, user_id, definition, status, item_count, error, \
     created_at, updated_at, finished_at";

/// A `pipeline_sessions` row.
pub(super) type SessionRow = (
    Uuid,
    String,
    Json<Value>,
    String,
    i64,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// A session from its row.
pub(super) fn session(r: SessionRow) -> Result<SessionRecord, StoreError> {
    let (id, user, Json(definition), status, count, error, created, updated, finished) = r;
    Ok(SessionRecord {
        id: TaskId::from_uuid(id),
        user_id: UserId::parse(&user)
            .map_err(|_| StoreError::Corrupt(format!("session {id}: user id")))?,
        definition: definition_of(id, definition)?,
        status: status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("session {id}: status {status:?}")))?,
        item_count: u64::try_from(count).unwrap_or(0),
        error,
        created_at: created,
        updated_at: updated,
        finished_at: finished,
    })
}

/// A session's stored definition.
pub(super) fn definition_of(id: Uuid, v: Value) -> Result<PipelineDef, StoreError> {
    serde_json::from_value(v)
        .map_err(|e| StoreError::Corrupt(format!("session {id}: definition: {e}")))
}

/// A `pipeline_stages` row: position, stage index, status, task, result, error.
pub(super) type StageRow = (
    i64,
    i64,
    String,
    Option<Uuid>,
    Option<Json<Value>>,
    Option<String>,
);

/// A stage from its row, named from the definition.
pub(super) fn stage(def: &PipelineDef, r: StageRow) -> Result<StageRecord, StoreError> {
    let (_, index, status, task, result, error) = r;
    let name = usize::try_from(index)
        .ok()
        .and_then(|i| def.stages.get(i))
        .map(|s| s.name.clone())
        .ok_or_else(|| StoreError::Corrupt(format!("stage index {index}")))?;
    Ok(StageRecord {
        stage: name,
        status: status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("stage status {status:?}")))?,
        task_id: task.map(TaskId::from_uuid),
        result: result.map(|Json(v)| v),
        error,
    })
}

/// A stored count or position (never negative).
pub(super) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A count or position as stored.
pub(super) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Appends positions as bound parameters, for an `IN (...)` list.
pub(super) fn push_positions<DB: sqlx::Database>(qb: &mut QueryBuilder<DB>, positions: &[u64])
where
    i64: Bind<DB>,
{
    let mut list = qb.separated(", ");
    for p in positions {
        list.push_bind(signed(*p));
    }
}
