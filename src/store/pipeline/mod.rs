//! Pipeline sessions' storage (seed 004), one SQL implementation for PostgreSQL and SQLite:
//! sessions, their items, one row per item and stage with its status, task, result and error.
//!
//! Every change of a session runs in one transaction that first locks the session's row
//! (PostgreSQL `FOR UPDATE`; SQLite has one writer), so the instances that observe the same
//! task's end, or fill the same session's free slots, take turns: each stage change is a
//! compare-and-set (`WHERE status = 'running' AND task_id = ...`), applied once, and the cap
//! on running stages holds across instances. Its events (`Pipeline*`, numbered in the owner's
//! gapless sequence like task events) are written in the same transaction and published
//! after commit.
//!
//! Files: `sessions.rs` creates, reads, lists and cancels sessions; `schedule.rs` starts
//! ready stages and applies ends; `sweep.rs` finds what a dead instance left (ends not
//! applied, submits not made, idle sessions, heartbeats due); `rows.rs` decodes rows.

mod rows;
mod schedule;
mod sessions;
mod sql;
mod sweep;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::pipeline::{ItemStatus, NewItem, PipelineDef, SessionStatus, StageStatus};
use crate::domain::{Page, PageRequest, StoredEvent, TaskId, UserId};

use super::StoreError;

/// A session's id (time-ordered, like a task's).
pub type SessionId = TaskId;

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub id: SessionId,
    /// Its owner.
    pub user_id: UserId,
    /// The definition it runs, kept with it.
    pub definition: PipelineDef,
    /// Its first items.
    pub items: Vec<NewItem>,
    /// Now.
    pub at: DateTime<Utc>,
}

/// A stored session, without its items.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// Its owner.
    pub user_id: UserId,
    /// The definition it runs.
    pub definition: PipelineDef,
    /// Where it is.
    pub status: SessionStatus,
    /// Items so far.
    pub item_count: u64,
    /// Why it was cancelled (by its owner, or expired).
    pub error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One stage of one item, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRecord {
    /// The stage's name.
    pub stage: String,
    /// Where it is.
    pub status: StageStatus,
    /// The task that runs (ran) it.
    pub task_id: Option<TaskId>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

/// One item with its stages, in the definition's stage order.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    /// Its place in the session (0-based, in the order items were sent).
    pub position: u64,
    /// The caller's id.
    pub id: String,
    /// Its fields as sent.
    pub data: Value,
    /// Where it is.
    pub status: ItemStatus,
    /// Its stages.
    pub stages: Vec<StageRecord>,
}

/// A stage whose task is to be submitted: everything its payload is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRun {
    /// The session.
    pub session_id: SessionId,
    /// Its owner, who owns the task.
    pub user_id: UserId,
    /// The item's position.
    pub position: u64,
    /// The stage's index in the definition.
    pub stage_index: usize,
    /// The id its task gets (chosen when it started, so a submit repeated after a crash finds
    /// the same task).
    pub task_id: TaskId,
    /// The item's fields.
    pub item: Value,
    /// The results of the item's completed stages, by name.
    pub inputs: Vec<(String, Value)>,
    /// The session's definition.
    pub definition: PipelineDef,
}

/// How a stage's task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// Completed with this result.
    Completed(Value),
    /// Failed for good (or could not be submitted), with this message.
    Failed(String),
}

/// A stage's task ended: apply it to the stage, if that task still runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEnd {
    /// The task.
    pub task_id: TaskId,
    /// How it ended.
    pub outcome: StageOutcome,
}

/// What adding items did.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    /// Stored; the session now has this many items.
    Items(u64),
    /// The session has finished; nothing was stored.
    Finished(SessionStatus),
    /// An item with this id is already in the session; nothing was stored.
    Duplicate(String),
}

/// Pipeline sessions, items and stages.
#[async_trait]
pub trait PipelineStore: Send + Sync + 'static {
    /// Stores a new session with its items, each stage `ready` or `waiting`.
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// Adds items to an unfinished session.
    async fn add_items(
        &self,
        id: SessionId,
        items: Vec<NewItem>,
        at: DateTime<Utc>,
    ) -> Result<Added, StoreError>;

    /// One session.
    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// A user's sessions, newest first.
    async fn list_sessions(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<SessionRecord>, StoreError>;

    /// Up to `limit` items of a session after position `after` (exclusive), with stages.
    async fn items(
        &self,
        id: SessionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ItemRecord>, StoreError>;

    /// Starts ready stages of a session, in item order, until its definition's
    /// `max_parallel_tasks` (else `max_running`) of its stages run: each becomes `running`
    /// with a new task id and a `PipelineStageStarted` event. Returns them, to be submitted.
    async fn start_ready(
        &self,
        id: SessionId,
        max_running: u32,
        at: DateTime<Utc>,
    ) -> Result<Vec<StageRun>, StoreError>;

    /// Applies ends of stage tasks (those whose stage that task no longer runs are ignored):
    /// results stored, dependents made ready or skipped, items and sessions finished, events
    /// written. Returns the sessions whose stages changed.
    async fn finish_stages(
        &self,
        ends: Vec<StageEnd>,
        at: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// Of running stages whose task has ended (of `tasks` only, when given): the ends to
    /// apply, at most `limit`.
    async fn ended_stage_tasks(
        &self,
        tasks: Option<&[TaskId]>,
        limit: u32,
    ) -> Result<Vec<StageEnd>, StoreError>;

    /// Running stages started before `before` whose task does not exist (the instance died
    /// between starting the stage and submitting its task), to submit again.
    async fn unsubmitted(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StageRun>, StoreError>;

    /// Unfinished sessions, oldest activity first.
    async fn open_sessions(&self, limit: u32) -> Result<Vec<SessionId>, StoreError>;

    /// Cancels an unfinished session: its unfinished stages and items become `cancelled`, a
    /// `PipelineSessionDone` event is written. Returns the session as it is now, whether this
    /// call cancelled it, and the tasks of the stages that were running (to cancel them).
    async fn cancel_session(
        &self,
        id: SessionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(SessionRecord, bool, Vec<TaskId>)>, StoreError>;

    /// Unfinished sessions without activity since `before` (expired).
    async fn idle_sessions(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// For each processing session whose last heartbeat is before `due`, records one now
    /// (compare-and-set, so one instance sends it) and writes a `PipelineHeartbeat` event
    /// with its counts. Returns the events written.
    async fn heartbeats(
        &self,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}
