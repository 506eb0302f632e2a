//! Task events (seed 000's TaskEventType), stored with every state change.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Task, TaskError, TaskId, TaskStatus, UserId};

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskEventType {
    /// Accepted and stored.
    TaskCreated,
    /// Claimed by a worker.
    TaskStarted,
    /// Progress or streamed output while running.
    TaskProgress,
    /// Finished with a result.
    TaskCompleted,
    /// Finished without a result.
    TaskFailed,
    /// Failed and will run again after a delay.
    TaskRetrying,
    /// Stopped on request.
    TaskCancelled,
    /// A piece of a chat answer being written (live only, never stored: id 0; its
    /// `task_id` is the chat session's id).
    ChatDelta,
    /// A chat answer ended: stored, or failed (live only, like [`Self::ChatDelta`]).
    ChatDone,
    /// A pipeline stage's task was submitted (its `task_id` is the session's id; see
    /// `domain/pipeline`).
    PipelineStageStarted,
    /// A pipeline stage ended: its result, or its error, or skipped.
    PipelineStageResult,
    /// Every stage of a pipeline item has ended.
    PipelineItemDone,
    /// Every item of a pipeline session has ended, or the session was cancelled.
    PipelineSessionDone,
    /// A running session's counts, every `PIPELINE_PROGRESS_INTERVAL`.
    PipelineHeartbeat,
}

impl TaskEventType {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreated => "TaskCreated",
            Self::TaskStarted => "TaskStarted",
            Self::TaskProgress => "TaskProgress",
            Self::TaskCompleted => "TaskCompleted",
            Self::TaskFailed => "TaskFailed",
            Self::TaskRetrying => "TaskRetrying",
            Self::TaskCancelled => "TaskCancelled",
            Self::ChatDelta => "ChatDelta",
            Self::ChatDone => "ChatDone",
            Self::PipelineStageStarted => "PipelineStageStarted",
            Self::PipelineStageResult => "PipelineStageResult",
            Self::PipelineItemDone => "PipelineItemDone",
            Self::PipelineSessionDone => "PipelineSessionDone",
            Self::PipelineHeartbeat => "PipelineHeartbeat",
        }
    }
}

/// One event of one task, as written to the database in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// The task it is about.
    pub task_id: TaskId,
    /// The task's owner; events are only ever shown to them (and admins).
    pub user_id: UserId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: TaskEventType,
    /// Details (status, attempt, error, ...), shaped per kind.
    pub data: Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl TaskEventType {
    /// Every kind, for parsing stored names.
    pub const ALL: [TaskEventType; 14] = [
        Self::TaskCreated,
        Self::TaskStarted,
        Self::TaskProgress,
        Self::TaskCompleted,
        Self::TaskFailed,
        Self::TaskRetrying,
        Self::TaskCancelled,
        Self::ChatDelta,
        Self::ChatDone,
        Self::PipelineStageStarted,
        Self::PipelineStageResult,
        Self::PipelineItemDone,
        Self::PipelineSessionDone,
        Self::PipelineHeartbeat,
    ];

    /// The kind with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether nothing follows this event for its task (short of an operator's requeue), or,
    /// for a pipeline session's events, for its session.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::TaskCompleted
                | Self::TaskFailed
                | Self::TaskCancelled
                | Self::PipelineSessionDone
        )
    }
}

impl StoredEvent {
    /// A live-only event: published to the user's streams as it happens, never stored, so it
    /// has no per-user id (0), is not replayed on resume and does not move a client's cursor.
    pub fn live(event: TaskEvent) -> Self {
        Self { id: 0, event }
    }

    /// Whether this is a live-only event (see [`Self::live`]).
    pub fn is_live_only(&self) -> bool {
        self.id == 0
    }
}

/// A committed event with its per-user id: the unit of notification.
///
/// `id` counts one user's events 1, 2, 3, ... in commit order with no holes (short of deleted
/// tasks and retention), so "every event after N" is a complete answer at any moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Per-user id (`task_events.user_seq`).
    pub id: u64,
    /// The event.
    pub event: TaskEvent,
}

/// Largest event sent to a client, as JSON: larger data is replaced by a note to fetch the task.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A task event about to be written: its kind and its `data`, shaped here for every store.
///
/// Each constructor is one kind of change, so every path that makes that change (and every
/// database) writes the same `data`. PostgreSQL's one-trip statements (submit, claim, complete)
/// build the `TaskCreated`, `TaskStarted` and `TaskCompleted` shapes in SQL as well: keep them
/// in step with [`created`](Self::created), [`started`](Self::started) and
/// [`completed`](Self::completed).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The task it is about.
    pub task_id: TaskId,
    /// The task's owner, whose counter numbers the event.
    pub user_id: UserId,
    /// What happened.
    pub kind: TaskEventType,
    /// Details, shaped per kind.
    pub data: Value,
    /// When it happened (stored to the microsecond).
    pub at: DateTime<Utc>,
}

impl NewEvent {
    fn of(
        task_id: TaskId,
        user_id: UserId,
        kind: TaskEventType,
        data: Value,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            task_id,
            user_id,
            kind,
            data,
            at,
        }
    }

    /// This event as stored with per-user id `id`.
    pub fn stored(self, id: u64) -> StoredEvent {
        StoredEvent {
            id,
            event: TaskEvent {
                task_id: self.task_id,
                user_id: self.user_id,
                kind: self.kind,
                data: self.data,
                // As stored: PostgreSQL keeps microseconds.
                created_at: self.at.trunc_subsecs(6),
            },
        }
    }

    /// The `TaskCreated` event of a new task.
    pub fn created(t: &Task) -> Self {
        let data = json!({
            "status": "pending",
            "task_type": t.task_type,
            "priority": t.priority.value(),
        });
        Self::of(
            t.id,
            t.user_id.clone(),
            TaskEventType::TaskCreated,
            data,
            t.created_at,
        )
    }

    /// The `TaskStarted` event of a task a worker holds (`None` if none does).
    pub fn started(t: &Task) -> Option<Self> {
        let worker = t.worker_id.as_ref()?;
        let data = json!({
            "status": "processing",
            "worker_id": worker.as_str(),
            "attempt": t.attempts,
        });
        let at = t.started_at.unwrap_or(t.updated_at);
        Some(Self::of(
            t.id,
            t.user_id.clone(),
            TaskEventType::TaskStarted,
            data,
            at,
        ))
    }

    /// The events new `tasks` owe: each one's `TaskCreated`, then `TaskStarted` for those a
    /// worker started directly (see worker/dispatch.rs).
    pub fn for_new_tasks<'a>(tasks: impl Iterator<Item = &'a Task> + Clone) -> Vec<Self> {
        tasks
            .clone()
            .map(Self::created)
            .chain(tasks.filter_map(Self::started))
            .collect()
    }

    /// The `TaskCompleted` event of a task `provider` completed.
    pub fn completed(
        task_id: TaskId,
        user_id: UserId,
        provider: Option<&str>,
        at: DateTime<Utc>,
    ) -> Self {
        let data = json!({"status": "completed", "provider": provider});
        Self::of(task_id, user_id, TaskEventType::TaskCompleted, data, at)
    }

    /// The `TaskRetrying` event of a failed attempt: pending again, to run at `run_after`,
    /// after `attempt` failed attempts.
    pub fn retrying(
        task_id: TaskId,
        user_id: UserId,
        error: &TaskError,
        run_after: DateTime<Utc>,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Self {
        let data = json!({
            "status": "pending",
            "error": error,
            "attempt": attempt,
            "run_after": run_after,
        });
        Self::of(task_id, user_id, TaskEventType::TaskRetrying, data, at)
    }

    /// The `TaskFailed` event of a task that will not run again.
    pub fn failed(task_id: TaskId, user_id: UserId, error: &TaskError, at: DateTime<Utc>) -> Self {
        let data = json!({"status": "failed", "error": error});
        Self::of(task_id, user_id, TaskEventType::TaskFailed, data, at)
    }

    /// The event of a task whose worker's lease ran out at `now`, as the reaper left it:
    /// `TaskRetrying` if it is pending again (the lost attempt counted), else `TaskFailed`.
    pub fn lease_expired(t: &Task, error: &TaskError, now: DateTime<Utc>) -> Self {
        if t.status == TaskStatus::Pending {
            Self::retrying(t.id, t.user_id.clone(), error, now, t.retry_count, now)
        } else {
            Self::failed(t.id, t.user_id.clone(), error, now)
        }
    }

    /// The `TaskRetrying` event of a task its worker handed back at shutdown, unfinished
    /// (the attempt does not count).
    pub fn handed_back(t: &Task, now: DateTime<Utc>) -> Self {
        let data = json!({
            "status": "pending",
            "reason": "handed back at shutdown",
            "attempt": t.retry_count,
            "run_after": now,
        });
        Self::of(
            t.id,
            t.user_id.clone(),
            TaskEventType::TaskRetrying,
            data,
            now,
        )
    }

    /// The `TaskRetrying` event of a dead letter an operator requeued (its attempts reset).
    pub fn requeued_dead_letter(t: &Task, now: DateTime<Utc>) -> Self {
        let data = json!({
            "status": "pending",
            "reason": "requeued from the dead-letter queue",
            "attempt": 0,
            "run_after": now,
        });
        Self::of(
            t.id,
            t.user_id.clone(),
            TaskEventType::TaskRetrying,
            data,
            now,
        )
    }

    /// The `TaskCancelled` event of a task cancelled at `now`.
    pub fn cancelled(t: &Task, now: DateTime<Utc>) -> Self {
        let data = json!({"status": "cancelled"});
        Self::of(
            t.id,
            t.user_id.clone(),
            TaskEventType::TaskCancelled,
            data,
            now,
        )
    }

    /// The `TaskProgress` event of a running task: `data` (replaced by a note when its JSON is
    /// over [`MAX_EVENT_BYTES`], so one event never outgrows what a client is sent), with
    /// `progress` added when given and `data` is an object that has none.
    pub fn progress(
        task_id: TaskId,
        user_id: UserId,
        progress: Option<u8>,
        mut data: Value,
        at: DateTime<Utc>,
    ) -> Self {
        let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
        if size > MAX_EVENT_BYTES {
            data = json!({ "omitted": "progress data over 1 MiB", "bytes": size });
        }
        if let (Some(p), Value::Object(map)) = (progress, &mut data) {
            map.entry("progress").or_insert(json!(p));
        }
        Self::of(task_id, user_id, TaskEventType::TaskProgress, data, at)
    }

    /// An event of pipeline session `session`: stored under the session's id as its
    /// `task_id`, so the session's own stream is a task-filtered stream, with `session_id`
    /// added to `data` (an object) for the owner's other streams. Data over
    /// [`MAX_EVENT_BYTES`] is replaced by a note to fetch the session.
    pub fn pipeline(
        session: TaskId,
        user_id: UserId,
        kind: TaskEventType,
        mut data: Value,
        at: DateTime<Utc>,
    ) -> Self {
        let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
        if size > MAX_EVENT_BYTES {
            data = json!({ "omitted": "data over 1 MiB; fetch the session", "bytes": size });
        }
        if let Value::Object(map) = &mut data {
            map.insert("session_id".into(), json!(session));
        }
        Self::of(session, user_id, kind, data, at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::domain::{ErrorClass, WorkerId};

    fn at(ns: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + TimeDelta::nanoseconds(ns.into())
    }

    fn running(worker: &str, attempts: u32) -> Task {
        let mut t = Task::echo_for_test("alice");
        t.status = TaskStatus::Processing;
        t.worker_id = Some(WorkerId::from_stored(worker.to_owned()));
        t.attempts = attempts;
        t.started_at = Some(at(0));
        t
    }

    fn error() -> TaskError {
        TaskError::new(ErrorClass::Retryable, "timeout")
    }

    #[test]
    fn a_new_task_owes_created_and_started_only_when_a_worker_holds_it() {
        let queued = Task::echo_for_test("alice");
        let started = running("w-1", 1);
        let events = NewEvent::for_new_tasks([&queued, &started].into_iter());
        let kinds: Vec<_> = events.iter().map(|e| (e.task_id, e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (queued.id, TaskEventType::TaskCreated),
                (started.id, TaskEventType::TaskCreated),
                (started.id, TaskEventType::TaskStarted),
            ]
        );
        assert_eq!(
            events[0].data,
            json!({"status": "pending", "task_type": "echo", "priority": queued.priority.value()})
        );
        assert_eq!(events[0].at, queued.created_at);
        assert_eq!(
            events[2].data,
            json!({"status": "processing", "worker_id": "w-1", "attempt": 1})
        );
        assert_eq!(events[2].at, at(0));
        assert_eq!(NewEvent::started(&queued), None);
    }

    #[test]
    fn outcomes_carry_status_provider_error_and_attempt() {
        let t = running("w-1", 2);
        let done = NewEvent::completed(t.id, t.user_id.clone(), Some("openai"), at(0));
        assert_eq!(done.kind, TaskEventType::TaskCompleted);
        assert_eq!(
            done.data,
            json!({"status": "completed", "provider": "openai"})
        );
        let none = NewEvent::completed(t.id, t.user_id.clone(), None, at(0));
        assert_eq!(none.data, json!({"status": "completed", "provider": null}));

        let retry = NewEvent::retrying(t.id, t.user_id.clone(), &error(), at(7), 2, at(0));
        assert_eq!(retry.kind, TaskEventType::TaskRetrying);
        assert_eq!(
            retry.data,
            json!({"status": "pending", "error": error(), "attempt": 2, "run_after": at(7)})
        );
        let failed = NewEvent::failed(t.id, t.user_id.clone(), &error(), at(0));
        assert_eq!(failed.kind, TaskEventType::TaskFailed);
        assert_eq!(failed.data, json!({"status": "failed", "error": error()}));
    }

    #[test]
    fn an_expired_lease_retries_while_retries_remain_and_fails_after() {
        let mut t = running("w-1", 1);
        t.status = TaskStatus::Pending;
        t.retry_count = 1;
        let retry = NewEvent::lease_expired(&t, &error(), at(3));
        assert_eq!(retry.kind, TaskEventType::TaskRetrying);
        assert_eq!(retry.data["attempt"], json!(1));
        assert_eq!(retry.data["run_after"], json!(at(3)));
        assert_eq!(retry.at, at(3));
        t.status = TaskStatus::Failed;
        let failed = NewEvent::lease_expired(&t, &error(), at(3));
        assert_eq!(failed.kind, TaskEventType::TaskFailed);
        assert_eq!(failed.data, json!({"status": "failed", "error": error()}));
    }

    #[test]
    fn hand_backs_requeues_and_cancels_say_why() {
        let mut t = running("w-1", 3);
        t.retry_count = 2;
        assert_eq!(
            NewEvent::handed_back(&t, at(1)).data,
            json!({"status": "pending", "reason": "handed back at shutdown", "attempt": 2,
                   "run_after": at(1)})
        );
        let requeued = NewEvent::requeued_dead_letter(&t, at(1));
        assert_eq!(requeued.kind, TaskEventType::TaskRetrying);
        assert_eq!(requeued.data["attempt"], json!(0));
        assert_eq!(
            requeued.data["reason"],
            "requeued from the dead-letter queue"
        );
        let cancelled = NewEvent::cancelled(&t, at(1));
        assert_eq!(cancelled.kind, TaskEventType::TaskCancelled);
        assert_eq!(cancelled.data, json!({"status": "cancelled"}));
    }

    #[test]
    fn progress_adds_the_percentage_to_objects_and_caps_the_size() {
        let t = running("w-1", 1);
        let user = || t.user_id.clone();
        let p = NewEvent::progress(t.id, user(), Some(40), json!({"tokens": "a"}), at(0));
        assert_eq!(p.kind, TaskEventType::TaskProgress);
        assert_eq!(p.data, json!({"tokens": "a", "progress": 40}));
        let own = NewEvent::progress(t.id, user(), Some(40), json!({"progress": 1}), at(0));
        assert_eq!(
            own.data,
            json!({"progress": 1}),
            "the caller's own value stays"
        );
        let list = NewEvent::progress(t.id, user(), Some(40), json!([1]), at(0));
        assert_eq!(list.data, json!([1]));
        let big = "x".repeat(MAX_EVENT_BYTES);
        let capped = NewEvent::progress(t.id, user(), Some(90), json!({ "tokens": big }), at(0));
        assert_eq!(capped.data["omitted"], "progress data over 1 MiB");
        assert_eq!(capped.data["bytes"], json!(MAX_EVENT_BYTES + 13));
        assert_eq!(capped.data["progress"], json!(90));
    }

    #[test]
    fn stored_keeps_microseconds() {
        let t = running("w-1", 1);
        let e = NewEvent::cancelled(&t, at(1_234_567)).stored(9);
        assert_eq!(e.id, 9);
        assert_eq!(e.event.created_at, at(1_234_000));
        assert_eq!(e.event.kind, TaskEventType::TaskCancelled);
    }
}
