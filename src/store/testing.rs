//! What only tests call: writes that skip the state machine, one-task shorthands and seed
//! 000's finders that the service itself never needs (its paths use [`TaskStore`]).
//!
//! A trait of its own, so the port the service depends on stays the set of calls it makes,
//! while the conformance suite still checks that every backend answers these alike. Every
//! store implements it (public, for the integration tests).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{StoreError, TaskFilter, TaskStore};
use crate::domain::{Page, PageRequest, Task, TaskId, TaskStatus, TaskType, UserId, WorkerId};

/// [`TaskStore`] plus what only tests call.
#[async_trait]
pub trait TaskStoreTesting: TaskStore {
    /// Writes the whole task (insert or replace), with no event and no guard: a test's way to
    /// set a task up in any state. The service changes tasks only by the guarded transitions
    /// of [`TaskStore`].
    async fn save(&self, task: &Task) -> Result<(), StoreError>;

    /// Deletes a task and its events. Returns whether it existed.
    async fn delete(&self, id: TaskId) -> Result<bool, StoreError>;

    /// [`record_progress_many`](TaskStore::record_progress_many) for one task: whether it was
    /// recorded.
    async fn record_progress(
        &self,
        task_id: TaskId,
        progress: Option<u8>,
        data: Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let applied = self
            .record_progress_many(vec![(task_id, progress, data)], now)
            .await?;
        Ok(applied.first() == Some(&true))
    }

    /// Tasks being processed, optionally only those last tried on `provider`.
    async fn find_processing_tasks(&self, provider: Option<&str>) -> Result<Vec<Task>, StoreError>;

    /// Failed tasks with fewer than `max_retries` retries, last changed before `older_than`.
    async fn find_failed_tasks(
        &self,
        max_retries: u32,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Processing tasks whose lease ended before `now`: their worker is gone or stuck.
    async fn find_timed_out_tasks(&self, now: DateTime<Utc>) -> Result<Vec<Task>, StoreError>;

    /// Tasks of `user`, newest first, one page.
    async fn find_by_user(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let filter = TaskFilter {
            user_id: Some(user.clone()),
            ..TaskFilter::default()
        };
        self.list(&filter, page).await
    }

    /// Tasks of one type, optionally with one status, newest first.
    async fn find_by_type(
        &self,
        task_type: TaskType,
        status: Option<TaskStatus>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Tasks linked to one entity of the calling application.
    async fn find_by_related_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Vec<Task>, StoreError>;

    /// Tasks a worker holds.
    async fn find_tasks_by_worker(&self, worker: &WorkerId) -> Result<Vec<Task>, StoreError>;
}
