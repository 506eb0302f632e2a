//! What the scheduler's periodic sweep reads and writes: stage tasks that ended without their
//! end being applied (the instance that saw it died, or never saw it), stages started but
//! never submitted, unfinished and idle sessions, and heartbeats.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::rows::unsigned;
use super::sql::PipelineDialect;
use super::{SessionId, StageEnd, StageOutcome, StageRun};
use crate::domain::{NewEvent, StoredEvent, TaskEventType, TaskId, UserId};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, RowsAffected, Sql};

/// An ended stage task: id, status, result, error.
type EndedRow = (Uuid, String, Option<Json<Value>>, Option<Json<Value>>);

impl<DB> Sql<'_, DB>
where
    DB: PipelineDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<Value>: Column<DB>,
    Option<String>: Column<DB>,
    Option<Uuid>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
    Option<Json<Value>>: Column<DB>,
{
    /// [`PipelineStore::ended_stage_tasks`](super::PipelineStore::ended_stage_tasks).
    pub(crate) async fn pipeline_ended_stage_tasks(
        &self,
        tasks: Option<&[TaskId]>,
        limit: u32,
    ) -> Result<Vec<StageEnd>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT t.id, t.status, t.result, t.error FROM pipeline_stages s \
             JOIN tasks t ON t.id = s.task_id WHERE s.status = 'running' \
             AND t.status IN ('completed', 'failed', 'cancelled')",
        );
        if let Some(tasks) = tasks {
            if tasks.is_empty() {
                return Ok(Vec::new());
            }
            qb.push(" AND s.task_id IN (");
            crate::store::sql::push_ids(&mut qb, tasks);
            qb.push(")");
        }
        qb.push(" LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<EndedRow> = qb.build_query_as().fetch_all(self.reads).await?;
        Ok(rows
            .into_iter()
            .map(|(id, status, result, error)| {
                let outcome = match (status.as_str(), result) {
                    ("completed", Some(Json(v))) => StageOutcome::Completed(v),
                    ("completed", None) => StageOutcome::Completed(Value::Null),
                    ("cancelled", _) => {
                        StageOutcome::Failed("the stage's task was cancelled".into())
                    }
                    _ => StageOutcome::Failed(
                        error
                            .and_then(|Json(e)| {
                                e.get("message").and_then(Value::as_str).map(str::to_owned)
                            })
                            .unwrap_or_else(|| "the stage's task failed".into()),
                    ),
                };
                StageEnd {
                    task_id: TaskId::from_uuid(id),
                    outcome,
                }
            })
            .collect())
    }

    /// [`PipelineStore::unsubmitted`](super::PipelineStore::unsubmitted).
    pub(crate) async fn pipeline_unsubmitted(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StageRun>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT s.session_id, s.position, s.stage_index, s.task_id FROM pipeline_stages s \
             LEFT JOIN tasks t ON t.id = s.task_id \
             WHERE s.status = 'running' AND t.id IS NULL AND s.updated_at < ",
        );
        qb.push_bind(before)
            .push(" LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<(Uuid, i64, i64, Option<Uuid>)> =
            qb.build_query_as().fetch_all(self.reads).await?;
        let mut by_session: BTreeMap<Uuid, Vec<(u64, usize, TaskId)>> = BTreeMap::new();
        for (session, pos, index, task) in rows {
            if let Some(task) = task {
                by_session.entry(session).or_default().push((
                    unsigned(pos),
                    unsigned(index) as usize,
                    TaskId::from_uuid(task),
                ));
            }
        }
        let mut runs = Vec::new();
        let mut conn = self.reads.acquire().await?;
        for (session, stages) in by_session {
            if let Some(s) = self.pipeline_session(TaskId::from_uuid(session)).await? {
                runs.extend(Self::runs(&mut conn, &s, stages).await?);
            }
        }
        Ok(runs)
    }

    /// Unfinished sessions, oldest activity first; only those idle since `before` when given.
    pub(crate) async fn pipeline_open_sessions(
        &self,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT id FROM pipeline_sessions WHERE status IN ('pending', 'processing')",
        );
        if let Some(before) = before {
            qb.push(" AND updated_at < ").push_bind(before);
        }
        qb.push(" ORDER BY updated_at LIMIT ")
            .push_bind(i64::from(limit));
        let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(self.reads).await?;
        Ok(ids.into_iter().map(TaskId::from_uuid).collect())
    }

    /// [`PipelineStore::heartbeats`](super::PipelineStore::heartbeats).
    pub(crate) async fn pipeline_heartbeats(
        &self,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT id, user_id FROM pipeline_sessions WHERE status = 'processing' \
             AND heartbeat_at < ",
        );
        qb.push_bind(due).push(" LIMIT 1000");
        let due_now: Vec<(Uuid, String)> = qb.build_query_as().fetch_all(self.reads).await?;
        if due_now.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writes.begin().await?;
        let mut events = Vec::new();
        for (id, user) in due_now {
            let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_sessions SET heartbeat_at = ");
            qb.push_bind(at)
                .push(" WHERE status = 'processing' AND id = ")
                .push_bind(id)
                .push(" AND heartbeat_at < ")
                .push_bind(due);
            let done = qb.build().execute(&mut *tx).await?;
            if RowsAffected::rows_affected(&done) != 1 {
                continue; // another instance sent it
            }
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT status, COUNT(*) FROM pipeline_stages WHERE session_id = ",
            );
            qb.push_bind(id).push(" GROUP BY status");
            let counts: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let stages: serde_json::Map<String, Value> =
                counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
            let Ok(user) = UserId::parse(&user) else {
                continue;
            };
            events.push(NewEvent::pipeline(
                TaskId::from_uuid(id),
                user,
                TaskEventType::PipelineHeartbeat,
                json!({"status": "processing", "stages": stages}),
                at,
            ));
        }
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored.clone());
        Ok(stored)
    }
}
