//! The service's own task outcomes as events (`TaskFinished`, in one `tasks-<UTC day>` stream
//! a day, the task's owner in each event's metadata), and their fold into per-user, per-day
//! task statistics.
//!
//! Days are UTC days here: task statistics sit beside the billing month, which is UTC too.
//! Every count only grows, so a batch's fold is a set of increments the store adds up.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TASK_FINISHED;
use crate::domain::eventstore::{EventEnvelope, EventId, EventMetadata, EventType, StreamId};
use crate::domain::{TaskEventType, UserId};

/// The namespace of [`TaskFinished::event_id`]'s name-based ids.
const FINISHED_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("6f0d3c4e-2a51-4b8e-9d77-1c5e0b9a4f21");

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// With a result.
    Completed,
    /// Without one, retries spent or not retryable.
    Failed,
    /// On request.
    Cancelled,
}

impl TaskOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The outcome with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Completed, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|o| o.as_str() == name)
    }

    /// The outcome a terminal task event records (`None` for any other event).
    pub fn of_event(kind: TaskEventType) -> Option<Self> {
        match kind {
            TaskEventType::TaskCompleted => Some(Self::Completed),
            TaskEventType::TaskFailed => Some(Self::Failed),
            TaskEventType::TaskCancelled => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A task reached a terminal status (the payload of `TaskFinished`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFinished {
    /// The task.
    pub task_id: String,
    /// Its type (`summarize`, `chat`, …).
    pub task_type: String,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// Attempts it took.
    pub attempts: u32,
    /// Prompt tokens over every provider call of the task.
    pub input_tokens: u64,
    /// Generated tokens over every call.
    pub output_tokens: u64,
    /// What every call cost, in micro-dollars.
    pub cost_micros: u64,
}

impl TaskFinished {
    /// The event id of the finish recorded as `user`'s task event number `user_seq`: the same
    /// on every try, so an append repeated after a lost answer is not stored twice, while a
    /// dead letter requeued and finished again is a new finish.
    pub fn event_id(user: &UserId, user_seq: u64) -> EventId {
        let name = format!("{}/{user_seq}", user.as_str());
        EventId::from_uuid(uuid::Uuid::new_v5(&FINISHED_ID_NAMESPACE, name.as_bytes()))
    }

    /// The stream of the tasks that finished on UTC day `day`.
    pub fn stream(day: NaiveDate) -> StreamId {
        StreamId::parse(&format!("tasks-{day}")).expect("a date is a valid stream id")
    }

    /// This finish as the event `id` of `user`'s task, finished at `at`.
    pub fn envelope(&self, id: EventId, user: &UserId, at: DateTime<Utc>) -> EventEnvelope {
        let kind = EventType::parse(TASK_FINISHED).expect("a valid type name");
        let data = serde_json::to_value(self).expect("a TaskFinished serializes");
        let meta = EventMetadata::at(at)
            .correlated(self.task_id.clone())
            .by_user(user.clone());
        EventEnvelope::new(kind, data, meta).with_id(id)
    }

    /// Decodes the data of a `TaskFinished` event; `Ok(None)` for another type.
    pub fn decode(event_type: &str, data: &Value) -> Result<Option<Self>, String> {
        if event_type != TASK_FINISHED {
            return Ok(None);
        }
        serde_path_to_error::deserialize(data)
            .map(Some)
            .map_err(|e| format!("{TASK_FINISHED}: {}: {}", e.path(), e.inner()))
    }
}

/// One row of the task statistics: a user's tasks of one type and outcome on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskStatsKey {
    /// Whose tasks.
    pub user_id: UserId,
    /// The UTC day they finished.
    pub day: NaiveDate,
    /// Their type.
    pub task_type: String,
    /// How they ended.
    pub outcome: TaskOutcome,
}

/// The sums of one [`TaskStatsKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TaskStatsRow {
    /// Tasks.
    pub tasks: u64,
    /// Attempts.
    pub attempts: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Cost, micro-dollars.
    pub cost_micros: u64,
}

/// A batch of `TaskFinished` events, as increments per row.
#[derive(Debug, Default)]
pub struct TaskStatsFold {
    /// What to add per row.
    rows: BTreeMap<TaskStatsKey, TaskStatsRow>,
}

impl TaskStatsFold {
    /// Folds one task of `user` finished at `at`.
    pub fn apply(&mut self, user: &UserId, t: &TaskFinished, at: DateTime<Utc>) {
        let key = TaskStatsKey {
            user_id: user.clone(),
            day: at.date_naive(),
            task_type: t.task_type.clone(),
            outcome: t.outcome,
        };
        let row = self.rows.entry(key).or_default();
        row.tasks += 1;
        row.attempts += u64::from(t.attempts);
        row.input_tokens += t.input_tokens;
        row.output_tokens += t.output_tokens;
        row.cost_micros += t.cost_micros;
    }

    /// The increments, per row.
    pub fn rows(&self) -> &BTreeMap<TaskStatsKey, TaskStatsRow> {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::TaskId;

    #[test]
    fn finished_tasks_sum_per_user_day_type_and_outcome() {
        let data = json!({"task_id": "t1", "task_type": "summarize", "outcome": "completed",
            "attempts": 2, "input_tokens": 10, "output_tokens": 20, "cost_micros": 30});
        let t = TaskFinished::decode(TASK_FINISHED, &data).unwrap().unwrap();
        assert_eq!(TaskFinished::decode("Other", &data), Ok(None));
        let bad = json!({"task_id": "t1", "outcome": "exploded"});
        assert!(TaskFinished::decode(TASK_FINISHED, &bad).is_err());
        let u = UserId::parse("u").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-05T23:59:00+00:00")
            .unwrap()
            .with_timezone(&Utc);
        let mut f = TaskStatsFold::default();
        f.apply(&u, &t, at);
        f.apply(&u, &t, at);
        let (key, row) = f.rows().iter().next().unwrap();
        assert_eq!(key.day.to_string(), "2026-01-05");
        assert_eq!((row.tasks, row.attempts, row.cost_micros), (2, 4, 60));
        assert_eq!(TaskOutcome::parse("failed"), Some(TaskOutcome::Failed));
    }

    #[test]
    fn a_finish_has_one_event_id_and_round_trips() {
        let u = UserId::parse("u").unwrap();
        assert_eq!(TaskFinished::event_id(&u, 7), TaskFinished::event_id(&u, 7));
        assert_ne!(TaskFinished::event_id(&u, 7), TaskFinished::event_id(&u, 8));
        let t = TaskFinished {
            task_id: TaskId::new().to_string(),
            task_type: "echo".into(),
            outcome: TaskOutcome::Cancelled,
            attempts: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_micros: 0,
        };
        let at = Utc::now();
        let e = t.envelope(TaskFinished::event_id(&u, 1), &u, at);
        assert_eq!(e.metadata.user_id.as_ref(), Some(&u));
        assert_eq!(TaskFinished::decode(TASK_FINISHED, &e.data), Ok(Some(t)));
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(TaskFinished::stream(day).as_str(), "tasks-2026-12-03");
        assert_eq!(
            TaskOutcome::of_event(TaskEventType::TaskFailed),
            Some(TaskOutcome::Failed)
        );
        assert_eq!(TaskOutcome::of_event(TaskEventType::TaskRetrying), None);
    }
}
