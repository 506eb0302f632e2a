//! Dead letters: an operator's requeue of failed tasks, and their purge.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, IN_CHUNK, NewEvent, RowsAffected, Sql, push_ids};
use crate::domain::{Task, TaskId};
use crate::store::StoreError;
use crate::store::row::{TASK_COLUMNS, TaskRow, into_tasks};

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
    /// [`TaskStore::requeue_failed`](crate::store::TaskStore::requeue_failed).
    pub(crate) async fn requeue_failed(
        &self,
        ids: &[TaskId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        let mut tx = self.writes.begin().await?;
        let mut requeued = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "UPDATE tasks SET status = 'pending', retry_count = 0, \
                 completed_at = NULL, worker_id = NULL, lease_expires_at = NULL, \
                 run_after = ",
            );
            qb.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE status = 'failed' AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(format!(") RETURNING {TASK_COLUMNS}"));
            let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
            requeued.extend(into_tasks(rows)?);
        }
        let events = requeued
            .iter()
            .map(|t| NewEvent::requeued_dead_letter(t, now))
            .collect();
        let stored = DB::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        Ok(requeued)
    }

    /// [`TaskStore::purge_failed`](crate::store::TaskStore::purge_failed).
    pub(crate) async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64, StoreError> {
        let mut tx = self.writes.begin().await?;
        let mut purged = 0;
        for chunk in ids.chunks(IN_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "DELETE FROM task_events WHERE task_id IN \
                 (SELECT id FROM tasks WHERE status = 'failed' AND id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push("))");
            qb.build().execute(&mut *tx).await?;
            let mut qb =
                QueryBuilder::<DB>::new("DELETE FROM tasks WHERE status = 'failed' AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(")");
            purged += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(purged)
    }
}
