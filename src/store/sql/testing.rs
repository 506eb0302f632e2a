//! [`TaskStoreTesting`] for every [`SqlStore`]: writes that skip the state machine and the
//! finders only tests use.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{
    Bind, Column, Dialect, RowsAffected, SqlStore, at_micros, push_tasks_insert, select_tasks,
};
use crate::domain::{Task, TaskId, TaskStatus, TaskType, WorkerId};
use crate::store::{StoreError, TaskStoreTesting};

#[async_trait]
impl<S, DB> TaskStoreTesting for S
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
{
    async fn save(&self, t: &Task) -> Result<(), StoreError> {
        let sql = self.sql();
        let t = at_micros(t.clone());
        let mut qb = QueryBuilder::<DB>::default();
        push_tasks_insert(&mut qb, std::slice::from_ref(&t));
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
             priority = excluded.priority, payload = excluded.payload, \
             result = excluded.result, error = excluded.error, \
             progress = excluded.progress, retry_count = excluded.retry_count, \
             attempts = excluded.attempts, \
             max_retries = excluded.max_retries, provider = excluded.provider, \
             worker_id = excluded.worker_id, lease_expires_at = excluded.lease_expires_at, \
             timeout_ms = excluded.timeout_ms, run_after = excluded.run_after, \
             queue = excluded.queue, \
             updated_at = excluded.updated_at, started_at = excluded.started_at, \
             completed_at = excluded.completed_at",
        );
        qb.build().execute(sql.writes).await?;
        Ok(())
    }

    async fn delete(&self, id: TaskId) -> Result<bool, StoreError> {
        let sql = self.sql();
        let mut tx = sql.writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM task_events WHERE task_id = ");
        qb.push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM tasks WHERE id = ");
        qb.push_bind(id.as_uuid());
        let n = qb.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn find_processing_tasks(&self, provider: Option<&str>) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND status = 'processing'");
        if let Some(p) = provider {
            qb.push(" AND provider = ").push_bind(p.to_owned());
        }
        qb.push(" ORDER BY started_at");
        sql.fetch_tasks(qb).await
    }

    async fn find_failed_tasks(
        &self,
        max_retries: u32,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND status = 'failed' AND retry_count < ")
            .push_bind(max_retries as i32)
            .push(" AND updated_at < ")
            .push_bind(older_than)
            .push(" ORDER BY updated_at LIMIT ")
            .push_bind(i64::from(limit));
        sql.fetch_tasks(qb).await
    }

    async fn find_timed_out_tasks(&self, now: DateTime<Utc>) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND status = 'processing' AND lease_expires_at < ")
            .push_bind(now)
            .push(" ORDER BY lease_expires_at");
        sql.fetch_tasks(qb).await
    }

    async fn find_by_type(
        &self,
        task_type: TaskType,
        status: Option<TaskStatus>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND task_type = ").push_bind(task_type.as_str());
        if let Some(s) = status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY created_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        sql.fetch_tasks(qb).await
    }

    async fn find_by_related_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND related_entity_type = ")
            .push_bind(entity_type.to_owned())
            .push(" AND related_entity_id = ")
            .push_bind(entity_id.to_owned())
            .push(" ORDER BY created_at DESC");
        sql.fetch_tasks(qb).await
    }

    async fn find_tasks_by_worker(&self, worker: &WorkerId) -> Result<Vec<Task>, StoreError> {
        let sql = self.sql();
        let mut qb = select_tasks::<DB>();
        qb.push(" AND worker_id = ")
            .push_bind(worker.as_str().to_owned())
            .push(" AND status = 'processing' ORDER BY started_at");
        sql.fetch_tasks(qb).await
    }
}
