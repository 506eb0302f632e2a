//! Task events (seed 000's TaskEventType), stored with every state change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{TaskId, UserId};

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
    pub const ALL: [TaskEventType; 7] = [
        Self::TaskCreated,
        Self::TaskStarted,
        Self::TaskProgress,
        Self::TaskCompleted,
        Self::TaskFailed,
        Self::TaskRetrying,
        Self::TaskCancelled,
    ];

    /// The kind with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether nothing follows this event for its task (short of an operator's requeue).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::TaskCompleted | Self::TaskFailed | Self::TaskCancelled
        )
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
