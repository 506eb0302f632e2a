//! The scheduler's writes: ready stages started under the session's cap, and stage ends
//! applied (results stored, dependents made ready or skipped, items and sessions finished).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::rows::{push_positions, signed, unsigned};
use super::sql::PipelineDialect;
use super::{SessionId, SessionRecord, StageEnd, StageOutcome, StageRun};
use crate::domain::pipeline::{ItemStatus, StageStatus, finish, finished_session, item_status};
use crate::domain::{NewEvent, TaskEventType, TaskId};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, Sql};

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
    /// [`PipelineStore::start_ready`](super::PipelineStore::start_ready).
    pub(crate) async fn pipeline_start_ready(
        &self,
        id: SessionId,
        max_running: u32,
        at: DateTime<Utc>,
    ) -> Result<Vec<StageRun>, StoreError> {
        let mut tx = self.writes.begin().await?;
        let Some(session) = Self::lock(&mut tx, id).await? else {
            return Ok(Vec::new());
        };
        if session.status.is_final() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT COUNT(*) FROM pipeline_stages WHERE status = 'running' AND session_id = ",
        );
        qb.push_bind(id.as_uuid());
        let running: i64 = qb.build_query_scalar().fetch_one(&mut *tx).await?;
        let cap = session.definition.max_parallel_tasks.unwrap_or(max_running);
        let slots = i64::from(cap) - running;
        if slots <= 0 {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT position, stage_index FROM pipeline_stages WHERE status = 'ready' \
             AND session_id = ",
        );
        qb.push_bind(id.as_uuid())
            .push(" ORDER BY position, stage_index LIMIT ")
            .push_bind(slots);
        let ready: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let mut started = Vec::with_capacity(ready.len());
        for (pos, index) in &ready {
            let task = TaskId::new();
            let mut qb = QueryBuilder::<DB>::new(
                "UPDATE pipeline_stages SET status = 'running', task_id = ",
            );
            qb.push_bind(task.as_uuid())
                .push(", updated_at = ")
                .push_bind(at)
                .push(" WHERE session_id = ")
                .push_bind(id.as_uuid())
                .push(" AND position = ")
                .push_bind(*pos)
                .push(" AND stage_index = ")
                .push_bind(*index);
            qb.build().execute(&mut *tx).await?;
            started.push((unsigned(*pos), unsigned(*index) as usize, task));
        }
        let positions: Vec<u64> = started.iter().map(|s| s.0).collect();
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE pipeline_items SET status = 'processing' WHERE status = 'pending' \
             AND session_id = ",
        );
        qb.push_bind(id.as_uuid()).push(" AND position IN (");
        push_positions(&mut qb, &positions);
        qb.push(")");
        qb.build().execute(&mut *tx).await?;
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE pipeline_sessions SET status = 'processing', updated_at = ",
        );
        qb.push_bind(at)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        let runs = Self::runs(&mut tx, &session, started).await?;
        let events = runs
            .iter()
            .map(|r| {
                let item_id = r.item.get("id").cloned().unwrap_or(Value::Null);
                NewEvent::pipeline(
                    id,
                    session.user_id.clone(),
                    TaskEventType::PipelineStageStarted,
                    json!({
                        "item_id": item_id,
                        "stage": session.definition.stages[r.stage_index].name,
                        "status": "running",
                        "task_id": r.task_id,
                    }),
                    at,
                )
            })
            .collect();
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(runs)
    }

    /// The inputs of stages `(position, stage index, task)` of `session`: each item's fields
    /// and its completed stages' results.
    pub(super) async fn runs(
        conn: &mut DB::Connection,
        session: &SessionRecord,
        stages: Vec<(u64, usize, TaskId)>,
    ) -> Result<Vec<StageRun>, StoreError> {
        let mut positions: Vec<u64> = stages.iter().map(|s| s.0).collect();
        positions.dedup();
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT position, data FROM pipeline_items WHERE session_id = ",
        );
        qb.push_bind(session.id.as_uuid())
            .push(" AND position IN (");
        push_positions(&mut qb, &positions);
        qb.push(")");
        let items: Vec<(i64, Json<Value>)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        let items: BTreeMap<u64, Value> = items
            .into_iter()
            .map(|(p, Json(v))| (unsigned(p), v))
            .collect();
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT position, stage_index, result FROM pipeline_stages \
             WHERE status = 'completed' AND session_id = ",
        );
        qb.push_bind(session.id.as_uuid())
            .push(" AND position IN (");
        push_positions(&mut qb, &positions);
        qb.push(")");
        let done: Vec<(i64, i64, Option<Json<Value>>)> =
            qb.build_query_as().fetch_all(&mut *conn).await?;
        let def = &session.definition;
        let mut inputs: BTreeMap<u64, Vec<(String, Value)>> = BTreeMap::new();
        for (pos, index, result) in done {
            if let (Some(stage), Some(Json(v))) = (def.stages.get(unsigned(index) as usize), result)
            {
                inputs
                    .entry(unsigned(pos))
                    .or_default()
                    .push((stage.name.clone(), v));
            }
        }
        Ok(stages
            .into_iter()
            .map(|(pos, stage_index, task_id)| StageRun {
                session_id: session.id,
                user_id: session.user_id.clone(),
                position: pos,
                stage_index,
                task_id,
                item: items.get(&pos).cloned().unwrap_or(Value::Null),
                inputs: inputs.get(&pos).cloned().unwrap_or_default(),
                definition: def.clone(),
            })
            .collect())
    }

    /// [`PipelineStore::finish_stages`](super::PipelineStore::finish_stages).
    pub(crate) async fn pipeline_finish_stages(
        &self,
        ends: Vec<StageEnd>,
        at: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        // Which session each end belongs to, so sessions are locked in one order (no
        // deadlock between instances applying overlapping batches).
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT task_id, session_id FROM pipeline_stages WHERE status = 'running' \
             AND task_id IN (",
        );
        let mut list = qb.separated(", ");
        for e in &ends {
            list.push_bind(e.task_id.as_uuid());
        }
        qb.push(")");
        let found: Vec<(Option<Uuid>, Uuid)> = qb.build_query_as().fetch_all(self.reads).await?;
        let mut by_session: BTreeMap<Uuid, Vec<&StageEnd>> = BTreeMap::new();
        for (task, session) in found {
            if let Some(end) = ends.iter().find(|e| Some(e.task_id.as_uuid()) == task) {
                by_session.entry(session).or_default().push(end);
            }
        }
        if by_session.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writes.begin().await?;
        let mut events = Vec::new();
        let mut touched = Vec::new();
        for (session_id, ends) in by_session {
            let id = TaskId::from_uuid(session_id);
            let Some(session) = Self::lock(&mut tx, id).await? else {
                continue;
            };
            if session.status.is_final() {
                continue;
            }
            let mut item_finished = false;
            for end in ends {
                item_finished |= Self::apply_end(&mut tx, &session, end, at, &mut events).await?;
            }
            if item_finished {
                Self::maybe_finish_session(&mut tx, &session, at, &mut events).await?;
            }
            let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_sessions SET updated_at = ");
            qb.push_bind(at).push(" WHERE id = ").push_bind(session_id);
            qb.build().execute(&mut *tx).await?;
            touched.push(id);
        }
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(touched)
    }

    /// Applies one end to its item; whether the item finished.
    async fn apply_end(
        conn: &mut DB::Connection,
        session: &SessionRecord,
        end: &StageEnd,
        at: DateTime<Utc>,
        events: &mut Vec<NewEvent>,
    ) -> Result<bool, StoreError> {
        let sid = session.id.as_uuid();
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT s.position, s.stage_index, i.item_id FROM pipeline_stages s \
             JOIN pipeline_items i ON i.session_id = s.session_id AND i.position = s.position \
             WHERE s.status = 'running' AND s.session_id = ",
        );
        qb.push_bind(sid)
            .push(" AND s.task_id = ")
            .push_bind(end.task_id.as_uuid());
        let row: Option<(i64, i64, String)> =
            qb.build_query_as().fetch_optional(&mut *conn).await?;
        let Some((pos, index, item_id)) = row else {
            return Ok(false); // applied already, or cancelled
        };
        let mut qb =
            QueryBuilder::<DB>::new("SELECT status FROM pipeline_stages WHERE session_id = ");
        qb.push_bind(sid)
            .push(" AND position = ")
            .push_bind(pos)
            .push(" ORDER BY stage_index");
        let raw: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
        let mut statuses = raw
            .iter()
            .map(|s| s.parse::<StageStatus>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let def = &session.definition;
        let stage = unsigned(index) as usize;
        let ok = matches!(end.outcome, StageOutcome::Completed(_));
        let changed = finish(def, &mut statuses, stage, ok)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for &c in &changed {
            let name = &def.stages[c].name;
            let (result, error, mut data) = if c == stage {
                match &end.outcome {
                    StageOutcome::Completed(v) => (
                        Some(v.clone()),
                        None,
                        json!({"result": v, "task_id": end.task_id}),
                    ),
                    StageOutcome::Failed(m) => (
                        None,
                        Some(m.clone()),
                        json!({"error": m, "task_id": end.task_id}),
                    ),
                }
            } else if statuses[c] == StageStatus::Skipped {
                let why = format!(
                    "skipped: a stage it needs failed ({})",
                    def.stages[stage].name
                );
                (None, Some(why.clone()), json!({"error": why}))
            } else {
                (None, None, json!({}))
            };
            let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_stages SET status = ");
            qb.push_bind(statuses[c].as_str())
                .push(", result = ")
                .push_bind(result.map(Json))
                .push(", error = ")
                .push_bind(error)
                .push(", updated_at = ")
                .push_bind(at)
                .push(" WHERE session_id = ")
                .push_bind(sid)
                .push(" AND position = ")
                .push_bind(pos)
                .push(" AND stage_index = ")
                .push_bind(signed(c as u64));
            qb.build().execute(&mut *conn).await?;
            if statuses[c] != StageStatus::Ready {
                data["item_id"] = json!(item_id);
                data["stage"] = json!(name);
                data["status"] = json!(statuses[c]);
                events.push(NewEvent::pipeline(
                    session.id,
                    session.user_id.clone(),
                    TaskEventType::PipelineStageResult,
                    data,
                    at,
                ));
            }
        }
        let item = item_status(&statuses);
        if !matches!(item, ItemStatus::Completed | ItemStatus::PartiallyFailed) {
            return Ok(false);
        }
        let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_items SET status = ");
        qb.push_bind(item.as_str())
            .push(" WHERE session_id = ")
            .push_bind(sid)
            .push(" AND position = ")
            .push_bind(pos);
        qb.build().execute(&mut *conn).await?;
        events.push(NewEvent::pipeline(
            session.id,
            session.user_id.clone(),
            TaskEventType::PipelineItemDone,
            json!({"item_id": item_id, "status": item}),
            at,
        ));
        Ok(true)
    }

    /// Finishes the session when no item is left unfinished.
    async fn maybe_finish_session(
        conn: &mut DB::Connection,
        session: &SessionRecord,
        at: DateTime<Utc>,
        events: &mut Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let sid = session.id.as_uuid();
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT status, COUNT(*) FROM pipeline_items WHERE session_id = ",
        );
        qb.push_bind(sid).push(" GROUP BY status");
        let counts: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        let open = counts
            .iter()
            .any(|(s, _)| s == "pending" || s == "processing");
        if open {
            return Ok(());
        }
        let statuses = counts
            .iter()
            .filter_map(|(s, _)| s.parse::<ItemStatus>().ok());
        let status = finished_session(statuses);
        let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_sessions SET status = ");
        qb.push_bind(status.as_str())
            .push(", finished_at = ")
            .push_bind(at)
            .push(" WHERE id = ")
            .push_bind(sid);
        qb.build().execute(&mut *conn).await?;
        let tally: serde_json::Map<String, Value> =
            counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
        events.push(NewEvent::pipeline(
            session.id,
            session.user_id.clone(),
            TaskEventType::PipelineSessionDone,
            json!({"status": status, "items": tally}),
            at,
        ));
        Ok(())
    }
}
