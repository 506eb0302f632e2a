//! Claims and leases: the general claim (SQLite's write loop runs it; PostgreSQL has a
//! one-statement claim of its own), workers and their heartbeats, and recovery of tasks
//! whose worker died or stopped.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, IN_CHUNK, Lead, NewEvent, RowsAffected, Sql, push_ids};
use crate::domain::{ErrorClass, Task, TaskError, TaskId, TaskStatus, WorkerId};
use crate::store::StoreError;
use crate::store::row::{TASK_COLUMNS, TaskRow, into_tasks};

/// Claims those of `ids` still pending for `worker` and returns them, plus the `TaskStarted`
/// events to write.
pub(crate) async fn claim_in_tx<DB>(
    tx: &mut DB::Connection,
    ids: &[TaskId],
    worker: &WorkerId,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    lead: &mut Lead,
) -> Result<(Vec<Task>, Vec<NewEvent>), StoreError>
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
    let mut claimed = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(lead.take());
        qb.push("UPDATE tasks SET status = 'processing', attempts = attempts + 1, worker_id = ");
        qb.push_bind(worker.as_str().to_owned())
            .push(", lease_expires_at = ")
            .push_bind(lease_until)
            .push(", started_at = ")
            .push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE status = 'pending' AND id IN (");
        push_ids(&mut qb, chunk);
        qb.push(format!(") RETURNING {TASK_COLUMNS}"));
        let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
        claimed.extend(into_tasks(rows)?);
    }
    let events = claimed.iter().filter_map(NewEvent::started).collect();
    Ok((claimed, events))
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
    /// [`TaskStore::register_worker`](crate::store::TaskStore::register_worker).
    pub(crate) async fn register_worker(
        &self,
        worker: &WorkerId,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO workers (id, instance, status, started_at, last_heartbeat) ",
        );
        qb.push_values(std::iter::once(()), |mut b, ()| {
            b.push_bind(worker.as_str().to_owned())
                .push_bind(instance.to_owned())
                .push_bind("active")
                .push_bind(now)
                .push_bind(now);
        });
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET status = 'active', \
             last_heartbeat = excluded.last_heartbeat",
        );
        qb.build().execute(self.writes).await?;
        Ok(())
    }

    /// [`TaskStore::heartbeat`](crate::store::TaskStore::heartbeat).
    pub(crate) async fn heartbeat(
        &self,
        worker: &WorkerId,
        running: &[TaskId],
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new("UPDATE workers SET last_heartbeat = ");
        qb.push_bind(now)
            .push(" WHERE id = ")
            .push_bind(worker.as_str().to_owned());
        qb.build().execute(&mut *tx).await?;
        let mut renewed = 0;
        for chunk in running.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("UPDATE tasks SET lease_expires_at = ");
            qb.push_bind(lease_until)
                .push(" WHERE status = 'processing' AND worker_id = ")
                .push_bind(worker.as_str().to_owned())
                .push(" AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(")");
            renewed += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(renewed)
    }

    /// [`TaskStore::unregister_worker`](crate::store::TaskStore::unregister_worker).
    pub(crate) async fn unregister_worker(
        &self,
        worker: &WorkerId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut qb =
            QueryBuilder::<DB>::new("UPDATE workers SET status = 'stopped', last_heartbeat = ");
        qb.push_bind(now)
            .push(" WHERE id = ")
            .push_bind(worker.as_str().to_owned());
        qb.build().execute(self.writes).await?;
        Ok(())
    }

    /// [`TaskStore::reap_stale_workers`](crate::store::TaskStore::reap_stale_workers).
    pub(crate) async fn reap_stale_workers(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE workers SET status = 'dead' WHERE status = 'active' \
             AND last_heartbeat < ",
        );
        qb.push_bind(older_than).push(" RETURNING id");
        let ids: Vec<String> = qb.build_query_scalar().fetch_all(self.writes).await?;
        Ok(ids.into_iter().map(WorkerId::from_stored).collect())
    }

    /// [`TaskStore::requeue_expired`](crate::store::TaskStore::requeue_expired).
    pub(crate) async fn requeue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let error = TaskError::new(
            ErrorClass::Retryable,
            "worker lost: its lease expired before the attempt finished",
        );
        let mut tx = self.writes.begin().await?;
        // SET expressions see the row as it was, so every CASE tests the old count.
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE tasks SET \
             status = CASE WHEN retry_count < max_retries THEN 'pending' ELSE 'failed' END, \
             retry_count = CASE WHEN retry_count < max_retries THEN retry_count + 1 \
               ELSE retry_count END, \
             completed_at = CASE WHEN retry_count < max_retries THEN NULL ELSE ",
        );
        qb.push_bind(now)
            .push(" END, worker_id = NULL, lease_expires_at = NULL, error = ")
            .push_bind(Json(serde_json::json!(error)))
            .push(", run_after = ")
            .push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(
                " WHERE id IN (SELECT id FROM tasks WHERE status = 'processing' \
                 AND lease_expires_at < ",
            )
            .push_bind(now)
            .push(" ORDER BY lease_expires_at LIMIT ")
            .push_bind(i64::from(limit))
            .push(") AND status = 'processing' AND lease_expires_at < ")
            .push_bind(now)
            .push(format!(" RETURNING {TASK_COLUMNS}"));
        let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
        let tasks = into_tasks(rows)?;
        let events = tasks
            .iter()
            .map(|t| NewEvent::lease_expired(t, &error, now))
            .collect();
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(tasks
            .into_iter()
            .filter(|t| t.status == TaskStatus::Pending)
            .collect())
    }

    /// [`TaskStore::still_held`](crate::store::TaskStore::still_held).
    pub(crate) async fn still_held(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut held = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT id FROM tasks WHERE status = 'processing' AND worker_id = ",
            );
            qb.push_bind(worker.as_str().to_owned())
                .push(" AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(")");
            let rows: Vec<Uuid> = qb.build_query_scalar().fetch_all(self.reads).await?;
            held.extend(rows.into_iter().map(TaskId::from_uuid));
        }
        Ok(held)
    }

    /// [`TaskStore::release`](crate::store::TaskStore::release).
    pub(crate) async fn release(
        &self,
        worker: &WorkerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        let mut tx = self.writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE tasks SET status = 'pending', worker_id = NULL, \
             lease_expires_at = NULL, run_after = ",
        );
        qb.push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE status = 'processing' AND worker_id = ")
            .push_bind(worker.as_str().to_owned())
            .push(format!(" RETURNING {TASK_COLUMNS}"));
        let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
        let tasks = into_tasks(rows)?;
        let events = tasks
            .iter()
            .map(|t| NewEvent::handed_back(t, now))
            .collect();
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(tasks)
    }
}
