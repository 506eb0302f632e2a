//! Tasks: the general insert (SQLite's write loop runs it; PostgreSQL has a one-statement
//! submit of its own), the INSERT both share with `save`, and cancel.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, INSERT_CHUNK, Lead, NewEvent, Sql, at_micros, select_tasks};
use crate::domain::{Task, TaskId};
use crate::store::row::{TASK_COLUMNS, TaskRow, timeout_ms};
use crate::store::{Inserted, StoreError};

/// Inserts `tasks` (skipping any whose id or idempotency key is already stored) and returns
/// each task as stored, plus the events to write: `TaskCreated`, and `TaskStarted` for a task
/// inserted already `processing`.
pub(crate) async fn insert_tasks_in_tx<DB>(
    tx: &mut DB::Connection,
    tasks: Vec<Task>,
    lead: &mut Lead,
) -> Result<(Vec<Inserted>, Vec<NewEvent>), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
{
    if tasks.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let tasks: Vec<Task> = tasks.into_iter().map(at_micros).collect();
    let mut inserted: HashSet<Uuid> = HashSet::with_capacity(tasks.len());
    for chunk in tasks.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(lead.take());
        push_tasks_insert(&mut qb, chunk);
        // Any conflict skips the row: an idempotency key seen before, or this very id when a
        // commit whose answer was lost is retried.
        qb.push(" ON CONFLICT DO NOTHING RETURNING id");
        let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
        inserted.extend(ids);
    }
    let events =
        NewEvent::for_new_tasks(tasks.iter().filter(|t| inserted.contains(&t.id.as_uuid())));

    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        if inserted.contains(&task.id.as_uuid()) {
            out.push(Inserted {
                task,
                created: true,
            });
            continue;
        }
        // The same id already stored (an earlier commit of this very task) is the task;
        // otherwise the earlier task with the same idempotency key is.
        let mut qb = select_tasks::<DB>();
        qb.push(" AND ((id = ")
            .push_bind(task.id.as_uuid())
            .push(" AND user_id = ")
            .push_bind(task.user_id.as_str().to_owned())
            .push(") OR (user_id = ")
            .push_bind(task.user_id.as_str().to_owned())
            .push(" AND idempotency_key = ")
            .push_bind(task.idempotency_key.clone())
            .push(")) ORDER BY created_at LIMIT 1");
        let row: Option<TaskRow> = qb.build_query_as().fetch_optional(&mut *tx).await?;
        let row = row.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "task {} was neither inserted nor found by id or idempotency key",
                task.id
            ))
        })?;
        out.push(Inserted {
            task: row.try_into()?,
            created: false,
        });
    }
    Ok((out, events))
}

/// Appends `INSERT INTO tasks (...) VALUES ...` of `chunk` (at most [`INSERT_CHUNK`] rows),
/// every column, with no conflict clause.
pub(crate) fn push_tasks_insert<DB>(qb: &mut QueryBuilder<DB>, chunk: &[Task])
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
{
    qb.push(format_args!("INSERT INTO tasks ({TASK_COLUMNS}) "));
    qb.push_values(chunk, |mut b, t| {
        let rel = t.related_entity.as_ref();
        b.push_bind(t.id.as_uuid())
            .push_bind(t.user_id.as_str().to_owned())
            .push_bind(t.task_type.as_str())
            .push_bind(t.status.as_str())
            .push_bind(i32::from(t.priority.value()))
            .push_bind(Json(t.payload.clone()))
            .push_bind(t.result.clone().map(Json))
            .push_bind(t.error.as_ref().map(|e| Json(serde_json::json!(e))))
            .push_bind(i32::from(t.progress))
            .push_bind(t.retry_count as i32)
            .push_bind(t.attempts as i32)
            .push_bind(t.max_retries as i32)
            .push_bind(t.idempotency_key.clone())
            .push_bind(rel.map(|r| r.entity_type.clone()))
            .push_bind(rel.map(|r| r.entity_id.clone()))
            .push_bind(t.provider.clone())
            .push_bind(t.worker_id.as_ref().map(|w| w.as_str().to_owned()))
            .push_bind(t.lease_expires_at)
            .push_bind(timeout_ms(t))
            .push_bind(t.run_after)
            .push_bind(t.created_at)
            .push_bind(t.updated_at)
            .push_bind(t.started_at)
            .push_bind(t.completed_at)
            .push_bind(t.queue.as_str())
            .push_bind(t.trace_context.as_ref().map(|c| c.as_str().to_owned()));
    });
}

impl<DB> Sql<'_, DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
{
    /// [`TaskStore::cancel`](crate::store::TaskStore::cancel).
    pub(crate) async fn cancel(
        &self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Task, bool)>, StoreError> {
        let mut tx = self.writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE tasks SET status = 'cancelled', worker_id = NULL, \
             lease_expires_at = NULL, updated_at = ",
        );
        qb.push_bind(now)
            .push(", completed_at = ")
            .push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid())
            .push(format!(
                " AND status IN ('pending', 'processing') RETURNING {TASK_COLUMNS}"
            ));
        let row: Option<TaskRow> = qb.build_query_as().fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(self.find_by_id(id).await?.map(|t| (t, false)));
        };
        let task: Task = row.try_into()?;
        let event = NewEvent::cancelled(&task, now);
        let stored = DB::insert_events(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(Some((task, true)))
    }
}
