//! The service's own task outcomes as events (`TaskFinished`, in `tasks-<user>` streams), and
//! their fold into per-user, per-day task statistics.
//!
//! Days are UTC days here: task statistics sit beside the billing month, which is UTC too.
//! Every count only grows, so a batch's fold is a set of increments the store adds up.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TASK_FINISHED;
use crate::domain::UserId;

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
}
