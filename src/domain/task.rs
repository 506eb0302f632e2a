//! The AIGenerationTask aggregate (seed 000) and its state machine.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    DomainError, NewTask, Priority, QueueName, TaskError, TaskId, TaskStatus, TaskType,
    TraceContext, UserId, WorkerId,
};

/// A link from a task to an entity of the calling application (seed 000's RelatedEntityType).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedEntity {
    /// e.g. `vocabulary_item`, `learning_session`.
    pub entity_type: String,
    /// The entity's id in the calling application.
    pub entity_id: String,
}

/// An AI generation task: what was asked, by whom, and where it is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Time-ordered unique id.
    pub id: TaskId,
    /// Owner; only they (and admins) may see or change it.
    pub user_id: UserId,
    /// Kind of work.
    pub task_type: TaskType,
    /// Current status; changes only along [`TaskStatus::can_become`].
    pub status: TaskStatus,
    /// 1-10, higher first.
    pub priority: Priority,
    /// The named queue it waits in, chosen by its type when it is submitted.
    pub queue: QueueName,
    /// The request body.
    pub payload: Value,
    /// The provider's answer once completed.
    pub result: Option<Value>,
    /// The last failure, kept after a retry succeeds for the record.
    pub error: Option<TaskError>,
    /// 0-100.
    pub progress: u8,
    /// Failed attempts so far (reset when a dead letter is requeued).
    pub retry_count: u32,
    /// Attempts ever started, the running one included; never reset.
    pub attempts: u32,
    /// Attempts allowed after the first.
    pub max_retries: u32,
    /// Per-user deduplication key.
    pub idempotency_key: Option<String>,
    /// Optional link to a caller's entity.
    pub related_entity: Option<RelatedEntity>,
    /// Provider that produced the result (or last failed).
    pub provider: Option<String>,
    /// Worker holding the task while it is processing.
    pub worker_id: Option<WorkerId>,
    /// The worker's lease ends here unless renewed; past it the task may be reclaimed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Longest one attempt may run.
    pub timeout: Duration,
    /// A pending task is not run before this time (retry backoff).
    pub run_after: DateTime<Utc>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the current (or last) attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    /// The trace its submit belonged to, when traces are exported: every attempt, on whichever
    /// instance, continues it.
    #[serde(default)]
    pub trace_context: Option<TraceContext>,
}

#[cfg(test)]
impl Task {
    /// A fresh pending `echo` task of `user` with an empty payload (2 retries, 300 s), for
    /// tests.
    pub(crate) fn echo_for_test(user: &str) -> Self {
        let user = UserId::parse(user).expect("test user id");
        let new = NewTask::parse(
            &super::Submitter::user(user),
            super::TaskRequest::new("echo", serde_json::json!({})),
            &super::SubmitPolicy::default(),
        )
        .expect("an echo task");
        Self::create(new, 2, Duration::from_secs(300), Utc::now())
    }
}

impl Task {
    /// A fresh pending task from a validated request. `timeout` applies unless the request
    /// set its own.
    pub fn create(new: NewTask, max_retries: u32, timeout: Duration, now: DateTime<Utc>) -> Self {
        let timeout = new.timeout.unwrap_or(timeout);
        Self {
            id: TaskId::new(),
            user_id: new.user_id,
            task_type: new.task_type,
            status: TaskStatus::Pending,
            priority: new.priority,
            queue: QueueName::default_queue(),
            payload: new.payload,
            result: None,
            error: None,
            progress: 0,
            retry_count: 0,
            attempts: 0,
            max_retries,
            idempotency_key: new.idempotency_key,
            related_entity: new.related_entity,
            provider: None,
            worker_id: None,
            lease_expires_at: None,
            timeout,
            run_after: now,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            trace_context: None,
        }
    }

    fn transition(&mut self, to: TaskStatus, now: DateTime<Utc>) -> Result<(), DomainError> {
        if !self.status.can_become(to) {
            return Err(DomainError::InvalidTransition {
                from: self.status,
                to,
            });
        }
        self.status = to;
        self.updated_at = now;
        if to.is_terminal() {
            self.completed_at = Some(now);
            self.worker_id = None;
            self.lease_expires_at = None;
        }
        Ok(())
    }

    /// A worker claims the task with a lease until `lease_until`.
    pub fn start(
        &mut self,
        worker: WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.transition(TaskStatus::Processing, now)?;
        self.attempts += 1;
        self.worker_id = Some(worker);
        self.lease_expires_at = Some(lease_until);
        self.started_at = Some(now);
        Ok(())
    }

    /// The provider answered.
    pub fn complete(
        &mut self,
        result: Value,
        provider: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.transition(TaskStatus::Completed, now)?;
        self.result = Some(result);
        self.provider = provider;
        self.progress = 100;
        Ok(())
    }

    /// Whether a failure of this class still leaves an attempt.
    pub fn can_retry(&self, error: &TaskError) -> bool {
        error.class != super::ErrorClass::NonRetryable && self.retry_count < self.max_retries
    }

    /// The attempt failed: back to pending until `run_after` when retries remain, else failed.
    /// Returns the new status.
    pub fn fail(
        &mut self,
        error: TaskError,
        run_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TaskStatus, DomainError> {
        let next = if self.can_retry(&error) {
            TaskStatus::Pending
        } else {
            TaskStatus::Failed
        };
        self.transition(next, now)?;
        self.provider = error.provider.clone();
        self.error = Some(error);
        if next == TaskStatus::Pending {
            self.retry_count += 1;
            self.run_after = run_after;
            self.worker_id = None;
            self.lease_expires_at = None;
        }
        Ok(next)
    }

    /// Stop the task on request.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        self.transition(TaskStatus::Cancelled, now)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::ErrorClass;

    fn task() -> Task {
        Task::echo_for_test("u1")
    }

    #[test]
    fn happy_path() {
        let now = Utc::now();
        let mut t = task();
        t.start(WorkerId::from_stored("w".into()), now, now)
            .unwrap();
        assert_eq!(t.status, TaskStatus::Processing);
        t.complete(json!({"ok": true}), Some("echo".into()), now)
            .unwrap();
        assert_eq!((t.status, t.progress), (TaskStatus::Completed, 100));
        assert!(t.worker_id.is_none() && t.completed_at.is_some());
        assert!(t.cancel(now).is_err(), "terminal status must not change");
    }

    #[test]
    fn retries_then_fails() {
        let now = Utc::now();
        let mut t = task();
        let err = TaskError::new(ErrorClass::Retryable, "boom");
        for attempt in 1..=2 {
            t.start(WorkerId::from_stored("w".into()), now, now)
                .unwrap();
            assert_eq!(t.fail(err.clone(), now, now).unwrap(), TaskStatus::Pending);
            assert_eq!(t.retry_count, attempt);
        }
        t.start(WorkerId::from_stored("w".into()), now, now)
            .unwrap();
        assert_eq!(t.fail(err, now, now).unwrap(), TaskStatus::Failed);
    }

    #[test]
    fn non_retryable_fails_at_once() {
        let now = Utc::now();
        let mut t = task();
        t.start(WorkerId::from_stored("w".into()), now, now)
            .unwrap();
        let err = TaskError::new(ErrorClass::NonRetryable, "bad request");
        assert_eq!(t.fail(err, now, now).unwrap(), TaskStatus::Failed);
    }

    #[test]
    fn cannot_complete_pending() {
        let mut t = task();
        assert!(matches!(
            t.complete(json!(1), None, Utc::now()),
            Err(DomainError::InvalidTransition { .. })
        ));
    }
}
