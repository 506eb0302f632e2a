//! [`QueueStore`] for every [`SqlStore`]: the named queues' rows, their statistics, and the
//! expired tasks of one queue.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, Pool, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, RowsAffected, SqlStore, select_tasks};
use crate::domain::{QueueKind, QueueName, Task};
use crate::queue::QueueSpec;
use crate::store::queues::{FinishedTimes, QUEUE_COLUMNS, QueueRow, fold_stats, into_records};
use crate::store::{QueueRecord, QueueStore, StoreError, TaskStats};

/// `SELECT <every queue column> FROM task_queues WHERE 1 = 1`, for conditions to follow.
fn select_queues<DB: Dialect>() -> QueryBuilder<DB> {
    QueryBuilder::new(format!(
        "SELECT {QUEUE_COLUMNS} FROM task_queues WHERE 1 = 1"
    ))
}

/// The queues `qb` selects, by name.
async fn queue_rows<DB>(
    reads: &Pool<DB>,
    mut qb: QueryBuilder<DB>,
) -> Result<Vec<QueueRecord>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i32: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
{
    qb.push(" ORDER BY name");
    let rows: Vec<QueueRow> = qb.build_query_as().fetch_all(reads).await?;
    into_records(rows)
}

#[async_trait]
impl<S, DB> QueueStore for S
where
    S: SqlStore<Db = DB>,
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
    bool: Column<DB>,
{
    async fn sync_queues(
        &self,
        specs: &[QueueSpec],
        now: DateTime<Utc>,
    ) -> Result<Vec<QueueRecord>, StoreError> {
        if !specs.is_empty() {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO task_queues (name, queue_type, rate, concurrency, paused, \
                 created_at, updated_at) ",
            );
            qb.push_values(specs, |mut b, s| {
                b.push_bind(s.name.as_str())
                    .push_bind(s.kind.as_str())
                    .push_bind(s.rate.map(|r| r.to_string()))
                    .push_bind(i32::try_from(s.concurrency).unwrap_or(i32::MAX))
                    .push_bind(false)
                    .push_bind(now)
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT (name) DO UPDATE SET queue_type = excluded.queue_type, \
                 rate = excluded.rate, concurrency = excluded.concurrency, \
                 updated_at = excluded.updated_at",
            );
            qb.build().execute(self.sql().writes).await?;
        }
        self.list_queues().await
    }

    async fn find_queue(&self, name: QueueName) -> Result<Option<QueueRecord>, StoreError> {
        let mut qb = select_queues::<DB>();
        qb.push(" AND name = ").push_bind(name.as_str());
        Ok(queue_rows(self.sql().reads, qb).await?.pop())
    }

    async fn list_queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        queue_rows(self.sql().reads, select_queues::<DB>()).await
    }

    async fn find_queues_by_type(&self, kind: QueueKind) -> Result<Vec<QueueRecord>, StoreError> {
        let mut qb = select_queues::<DB>();
        qb.push(" AND queue_type = ").push_bind(kind.as_str());
        queue_rows(self.sql().reads, qb).await
    }

    async fn find_active_queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        let mut qb = select_queues::<DB>();
        qb.push(" AND paused = ").push_bind(false);
        queue_rows(self.sql().reads, qb).await
    }

    async fn set_queue_paused(
        &self,
        name: QueueName,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut qb = QueryBuilder::<DB>::new("UPDATE task_queues SET paused = ");
        qb.push_bind(paused)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE name = ")
            .push_bind(name.as_str());
        Ok(qb.build().execute(self.sql().writes).await?.rows_affected() > 0)
    }

    async fn queue_task_stats(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(QueueName, TaskStats)>, StoreError> {
        let counts: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT queue, status, COUNT(*) FROM tasks GROUP BY queue, status")
                .fetch_all(self.sql().reads)
                .await?;
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT queue, created_at, started_at, completed_at FROM tasks \
             WHERE status IN ('completed', 'failed') AND created_at >= ",
        );
        qb.push_bind(since).push(
            " AND started_at IS NOT NULL AND completed_at IS NOT NULL \
             ORDER BY created_at DESC LIMIT 10000",
        );
        let times: Vec<FinishedTimes> = qb.build_query_as().fetch_all(self.sql().reads).await?;
        fold_stats(counts, times)
    }

    async fn find_expired_tasks(
        &self,
        queue: QueueName,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let mut qb = select_tasks::<DB>();
        qb.push(" AND status = 'processing' AND queue = ")
            .push_bind(queue.as_str())
            .push(" AND lease_expires_at < ")
            .push_bind(now)
            .push(" ORDER BY lease_expires_at LIMIT ")
            .push_bind(i64::from(limit));
        self.sql().fetch_tasks(qb).await
    }
}
