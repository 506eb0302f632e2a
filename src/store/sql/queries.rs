//! Reads of tasks: by id, pages of a filtered list, the queue's pending order, counts and
//! statistics, and a task's events.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, Sql, select_tasks};
use crate::domain::{Page, PageRequest, Task, TaskEvent, TaskId, UserId, encode_token};
use crate::store::row::{EventRow, TaskRow, into_tasks};
use crate::store::{StoreError, TaskFilter, TaskStats};

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
    /// The tasks `qb` selects, read on the read pool.
    pub(crate) async fn fetch_tasks(
        &self,
        mut qb: QueryBuilder<DB>,
    ) -> Result<Vec<Task>, StoreError> {
        let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(self.reads).await?;
        into_tasks(rows)
    }

    /// [`TaskStore::find_by_id`](crate::store::TaskStore::find_by_id).
    pub(crate) async fn find_by_id(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        let mut qb = select_tasks::<DB>();
        qb.push(" AND id = ").push_bind(id.as_uuid());
        Ok(self.fetch_tasks(qb).await?.pop())
    }

    /// [`TaskStore::find_pending_tasks`](crate::store::TaskStore::find_pending_tasks).
    pub(crate) async fn find_pending_tasks(&self, limit: u32) -> Result<Vec<Task>, StoreError> {
        let mut qb = select_tasks::<DB>();
        qb.push(" AND status = 'pending' ORDER BY priority DESC, created_at LIMIT ")
            .push_bind(i64::from(limit));
        self.fetch_tasks(qb).await
    }

    /// [`TaskStore::list`](crate::store::TaskStore::list).
    pub(crate) async fn list(
        &self,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let mut qb = select_tasks::<DB>();
        if let Some(user) = &filter.user_id {
            qb.push(" AND user_id = ")
                .push_bind(user.as_str().to_owned());
        }
        if let Some(status) = filter.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(t) = filter.task_type {
            qb.push(" AND task_type = ").push_bind(t.as_str());
        }
        if let Some(class) = filter.error_class {
            qb.push(" AND ")
                .push(DB::ERROR_CLASS)
                .push(" = ")
                .push_bind(class.as_str());
        }
        if let Some((at, id)) = page.after {
            qb.push(" AND (created_at < ")
                .push_bind(at)
                .push(" OR (created_at = ")
                .push_bind(at)
                .push(" AND id < ")
                .push_bind(id.as_uuid())
                .push("))");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(page.size) + 1);
        let mut items = self.fetch_tasks(qb).await?;
        let next_page_token = if items.len() > page.size as usize {
            items.truncate(page.size as usize);
            items.last().map(|t| encode_token(t.created_at, t.id))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// [`TaskStore::count_active_by_user`](crate::store::TaskStore::count_active_by_user).
    pub(crate) async fn count_active_by_user(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing') \
             AND user_id = ",
        );
        qb.push_bind(user.as_str().to_owned());
        let n: i64 = qb.build_query_scalar().fetch_one(self.reads).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// [`TaskStore::events_for_task`](crate::store::TaskStore::events_for_task).
    pub(crate) async fn events_for_task(&self, id: TaskId) -> Result<Vec<TaskEvent>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT task_id, user_id, event_type, data, created_at FROM task_events \
             WHERE task_id = ",
        );
        qb.push_bind(id.as_uuid()).push(" ORDER BY id");
        let rows: Vec<EventRow> = qb.build_query_as().fetch_all(self.reads).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// [`TaskStore::task_stats`](crate::store::TaskStore::task_stats).
    pub(crate) async fn task_stats(&self, since: DateTime<Utc>) -> Result<TaskStats, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM tasks GROUP BY status")
                .fetch_all(self.reads)
                .await?;
        let mut stats = TaskStats::default();
        for (status, n) in counts {
            let n = u64::try_from(n).unwrap_or(0);
            match status.as_str() {
                "pending" => stats.pending = n,
                "processing" => stats.processing = n,
                "completed" => stats.completed = n,
                "failed" => stats.failed = n,
                "cancelled" => stats.cancelled = n,
                _ => {}
            }
        }
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT created_at, started_at, completed_at FROM tasks \
             WHERE status IN ('completed', 'failed') AND created_at >= ",
        );
        qb.push_bind(since).push(
            " AND started_at IS NOT NULL AND completed_at IS NOT NULL \
             ORDER BY created_at DESC LIMIT 10000",
        );
        type Times = (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);
        let rows: Vec<Times> = qb.build_query_as().fetch_all(self.reads).await?;
        if !rows.is_empty() {
            let ms = |d: TimeDelta| d.num_milliseconds().max(0) as u64;
            let n = rows.len() as u64;
            let wait: u64 = rows.iter().map(|(c, s, _)| ms(*s - *c)).sum();
            let busy: u64 = rows.iter().map(|(_, s, f)| ms(*f - *s)).sum();
            stats.average_wait_ms = wait / n;
            stats.average_processing_ms = busy / n;
            stats.sample_size = n;
        }
        Ok(stats)
    }

    /// [`TaskStore::count_dead_letters`](crate::store::TaskStore::count_dead_letters).
    pub(crate) async fn count_dead_letters(&self, cap: u64) -> Result<u64, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE status = 'failed' LIMIT ",
        );
        qb.push_bind(i64::try_from(cap).unwrap_or(i64::MAX))
            .push(") AS capped");
        let n: i64 = qb.build_query_scalar().fetch_one(self.reads).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// [`TaskStore::ping`](crate::store::TaskStore::ping).
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.reads).await?;
        Ok(())
    }
}
