//! [`TaskStore`] for every [`SqlStore`]: the hot paths are the store's own, the rest is the
//! shared SQL of the files beside this one (each method names where it lives).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor};
use uuid::Uuid;

use super::{Bind, Column, Dialect, SqlStore};
use crate::domain::{Page, PageRequest, Task, TaskEvent, TaskId, UserId, WorkerId};
use crate::store::{Finish, Inserted, StoreError, TaskFilter, TaskStats, TaskStore};

#[async_trait]
impl<S, DB> TaskStore for S
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
    async fn insert_tasks(&self, tasks: Vec<Task>) -> Result<Vec<Inserted>, StoreError> {
        self.hot_insert_tasks(tasks).await
    }

    async fn find_by_id(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.sql().find_by_id(id).await // queries.rs
    }

    async fn claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        self.hot_claim(ids, worker, lease_until, now).await
    }

    async fn finish(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        self.hot_finish(finishes).await
    }

    async fn cancel(
        &self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Task, bool)>, StoreError> {
        self.sql().cancel(id, now).await // tasks.rs
    }

    async fn record_progress_many(
        &self,
        updates: Vec<(TaskId, Option<u8>, serde_json::Value)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.sql().record_progress_many(updates, now).await // outcomes.rs
    }

    async fn find_pending_tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError> {
        self.sql().find_pending_tasks(limit).await // queries.rs
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        self.sql().list(filter, page).await // queries.rs
    }

    async fn count_active_by_user(&self, user: &UserId) -> Result<u64, StoreError> {
        self.sql().count_active_by_user(user).await // queries.rs
    }

    async fn events_for_task(&self, id: TaskId) -> Result<Vec<TaskEvent>, StoreError> {
        self.sql().events_for_task(id).await // queries.rs
    }

    async fn register_worker(
        &self,
        worker: &WorkerId,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.sql().register_worker(worker, instance, now).await // claims.rs
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        running: &[TaskId],
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.sql()
            .heartbeat(worker, running, lease_until, now)
            .await // claims.rs
    }

    async fn unregister_worker(
        &self,
        worker: &WorkerId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.sql().unregister_worker(worker, now).await // claims.rs
    }

    async fn reap_stale_workers(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError> {
        self.sql().reap_stale_workers(older_than).await // claims.rs
    }

    async fn requeue_expired(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        self.sql().requeue_expired(now, limit).await // claims.rs
    }

    async fn still_held(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.sql().still_held(ids, worker).await // claims.rs
    }

    async fn release(
        &self,
        worker: &WorkerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        self.sql().release(worker, now).await // claims.rs
    }

    async fn requeue_failed(
        &self,
        ids: &[TaskId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        self.sql().requeue_failed(ids, now).await // dead_letters.rs
    }

    async fn purge_failed(&self, ids: &[TaskId]) -> Result<u64, StoreError> {
        self.sql().purge_failed(ids).await // dead_letters.rs
    }

    async fn task_stats(&self, since: DateTime<Utc>) -> Result<TaskStats, StoreError> {
        self.sql().task_stats(since).await // queries.rs
    }

    async fn count_dead_letters(&self, cap: u64) -> Result<u64, StoreError> {
        self.sql().count_dead_letters(cap).await // queries.rs
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql().ping().await // queries.rs
    }
}
