//! [`PipelineStore`] for every [`SqlStore`]: each method is the shared SQL of `sessions.rs`,
//! `schedule.rs` or `sweep.rs` (methods of [`Sql`](crate::store::sql::Sql) named `pipeline_*`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, Postgres, Sqlite};
use uuid::Uuid;

use super::{
    Added, ItemRecord, NewSession, PipelineStore, SessionId, SessionRecord, StageEnd, StageRun,
};
use crate::domain::pipeline::NewItem;
use crate::domain::{Page, PageRequest, StoredEvent, TaskId, UserId};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, Dialect, SqlStore};

/// What the pipeline SQL needs of a database beyond [`Dialect`].
pub(crate) trait PipelineDialect: Dialect {
    /// Appended to the `SELECT` of a session's row that opens each change of the session: a
    /// row lock where writers run concurrently (PostgreSQL), nothing where one writer runs at
    /// a time (SQLite).
    const LOCK_SESSION: &'static str;
}

impl PipelineDialect for Postgres {
    const LOCK_SESSION: &'static str = " FOR UPDATE";
}

impl PipelineDialect for Sqlite {
    const LOCK_SESSION: &'static str = "";
}

#[async_trait]
impl<S, DB> PipelineStore for S
where
    S: SqlStore<Db = DB>,
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
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.sql().pipeline_create(session).await
    }

    async fn add_items(
        &self,
        id: SessionId,
        items: Vec<NewItem>,
        at: DateTime<Utc>,
    ) -> Result<Added, StoreError> {
        self.sql().pipeline_add_items(id, items, at).await
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.sql().pipeline_session(id).await
    }

    async fn list_sessions(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.sql().pipeline_list(user, page).await
    }

    async fn items(
        &self,
        id: SessionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        self.sql().pipeline_items(id, after, limit).await
    }

    async fn start_ready(
        &self,
        id: SessionId,
        max_running: u32,
        at: DateTime<Utc>,
    ) -> Result<Vec<StageRun>, StoreError> {
        self.sql().pipeline_start_ready(id, max_running, at).await
    }

    async fn finish_stages(
        &self,
        ends: Vec<StageEnd>,
        at: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.sql().pipeline_finish_stages(ends, at).await
    }

    async fn ended_stage_tasks(
        &self,
        tasks: Option<&[TaskId]>,
        limit: u32,
    ) -> Result<Vec<StageEnd>, StoreError> {
        self.sql().pipeline_ended_stage_tasks(tasks, limit).await
    }

    async fn unsubmitted(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StageRun>, StoreError> {
        self.sql().pipeline_unsubmitted(before, limit).await
    }

    async fn open_sessions(&self, limit: u32) -> Result<Vec<SessionId>, StoreError> {
        self.sql().pipeline_open_sessions(None, limit).await
    }

    async fn cancel_session(
        &self,
        id: SessionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(SessionRecord, bool, Vec<TaskId>)>, StoreError> {
        self.sql().pipeline_cancel(id, reason, at).await
    }

    async fn idle_sessions(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.sql().pipeline_open_sessions(Some(before), limit).await
    }

    async fn heartbeats(
        &self,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.sql().pipeline_heartbeats(due, at).await
    }
}
