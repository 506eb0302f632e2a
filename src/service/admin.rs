//! Operator views: admin-only.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::ServiceError;
use super::audit::AuditLog;
use super::queues::{QueueService, QueueView};
use crate::auth::{Caller, Role};
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::{
    ErrorClass, Page, PageRequest, Task, TaskEvent, TaskEventType, TaskId, TaskStatus, TaskType,
};
use crate::queue::{TaskQueue, push_or_defer};
use crate::store::{TaskFilter, TaskStats, TaskStore};
use crate::worker::PoolSnapshot;

/// Most dead letters one requeue or purge by filter touches.
const MAX_SELECTED: usize = 100_000;

/// Longest window the averages may cover.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Queue statistics, named queues, dead letters.
#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    queues: QueueService,
    /// Where every change an admin makes is recorded.
    audit: AuditLog,
}

/// Statistics of the whole service.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    /// Counts per status and recent timings, from the database.
    pub tasks: TaskStats,
    /// Ids in the queue: ready plus delayed retries.
    pub queue_depth: u64,
    /// The window the averages cover.
    pub window: Duration,
    /// The worker pool of the instance that answered: its adaptive limit and what runs.
    pub pool: PoolSnapshot,
}

impl AdminService {
    /// Reads from `store` and `queue`; named queues through `queues`; changes recorded in
    /// `audit`.
    pub fn new(
        store: Arc<dyn TaskStore>,
        queue: Arc<dyn TaskQueue>,
        queues: QueueService,
        audit: AuditLog,
    ) -> Self {
        Self {
            store,
            queue,
            queues,
            audit,
        }
    }

    /// The named queues (for callers of seed 000's repository operations).
    pub fn queues(&self) -> &QueueService {
        &self.queues
    }

    /// Every queue with its configuration, paused flag and statistics over tasks created in
    /// the last `window`, and this instance's pool.
    pub async fn list_queues(
        &self,
        caller: &Caller,
        window: Duration,
    ) -> Result<(Vec<QueueView>, PoolSnapshot), ServiceError> {
        require_admin(caller)?;
        check_window(window)?;
        Ok((self.queues.list(window).await?, self.queues.pool()))
    }

    /// Pauses (`true`) or resumes a queue on every instance; NotFound for an unknown queue.
    pub async fn set_queue_paused(
        &self,
        caller: &Caller,
        name: &str,
        paused: bool,
    ) -> Result<(), ServiceError> {
        require_admin(caller)?;
        let outcome = self.queues.set_paused(name, paused).await;
        let action = if paused {
            AuditAction::PauseQueue
        } else {
            AuditAction::ResumeQueue
        };
        self.audit
            .record(caller, action, name, outcome, |()| Value::Null)
            .await
    }

    /// Counts, queue depth and mean wait and processing times of tasks created in the last
    /// `window` that have finished.
    pub async fn queue_stats(
        &self,
        caller: &Caller,
        window: Duration,
    ) -> Result<QueueStats, ServiceError> {
        require_admin(caller)?;
        check_window(window)?;
        let since = clock::now() - window;
        let tasks = self.store.task_stats(since).await?;
        let queue_depth = self.queue.len().await?;
        Ok(QueueStats {
            tasks,
            queue_depth,
            window,
            pool: self.queues.pool(),
        })
    }
}

fn check_window(window: Duration) -> Result<(), ServiceError> {
    if window.is_zero() || window > MAX_WINDOW {
        return Err(ServiceError::Invalid(format!(
            "window must be between 1 s and {} s",
            MAX_WINDOW.as_secs()
        )));
    }
    Ok(())
}

/// A failed task with the history of its failed attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The task, with its last error.
    pub task: Task,
    /// Its `TaskRetrying` and `TaskFailed` events, oldest first: one per failed attempt, each
    /// with its error.
    pub history: Vec<TaskEvent>,
}

/// Which dead letters to list, requeue or purge.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this task type.
    pub task_type: Option<TaskType>,
    /// Only this class of last error.
    pub error_class: Option<ErrorClass>,
}

/// The dead letters an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These tasks (ids that are not dead letters are skipped).
    Ids(Vec<TaskId>),
    /// Every dead letter matching the filter.
    Matching(DeadLetterFilter),
}

/// As the audit log names it: `tasks <id>, …` (up to 10 named), or the filter.
impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ids(ids) => {
                let shown: Vec<String> = ids.iter().take(10).map(ToString::to_string).collect();
                write!(f, "tasks {}", shown.join(", "))?;
                if ids.len() > 10 {
                    write!(f, " and {} more", ids.len() - 10)?;
                }
                Ok(())
            }
            Self::Matching(filter) => {
                let kind = filter.task_type.map_or("any", |t| t.as_str());
                let class = filter.error_class.map_or("any", |c| c.as_str());
                write!(f, "dead letters of type {kind}, error class {class}")
            }
        }
    }
}

impl AdminService {
    /// Failed tasks (the dead-letter queue), newest first, with their failure history.
    pub async fn list_dead_letters(
        &self,
        caller: &Caller,
        filter: DeadLetterFilter,
        page: PageRequest,
    ) -> Result<Page<DeadLetter>, ServiceError> {
        require_admin(caller)?;
        let page = self.store.list(&dead_letters(&filter), &page).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for task in page.items {
            let history = self
                .store
                .events_for_task(task.id)
                .await?
                .into_iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        TaskEventType::TaskRetrying | TaskEventType::TaskFailed
                    )
                })
                .collect();
            items.push(DeadLetter { task, history });
        }
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// Puts dead letters back in the queue with their attempts reset. Returns how many.
    pub async fn requeue_dead_letters(
        &self,
        caller: &Caller,
        selection: Selection,
    ) -> Result<u64, ServiceError> {
        require_admin(caller)?;
        let target = selection.to_string();
        let outcome = async {
            let ids = self.select(selection).await?;
            let requeued = self.store.requeue_failed(&ids, clock::now()).await?;
            push_or_defer(&*self.queue, &requeued).await;
            Ok(requeued.len() as u64)
        }
        .await;
        let action = AuditAction::RequeueDeadLetters;
        self.audit
            .record(caller, action, &target, outcome, |n| json!({ "count": n }))
            .await
    }

    /// Deletes dead letters and their events. Returns how many.
    pub async fn purge_dead_letters(
        &self,
        caller: &Caller,
        selection: Selection,
    ) -> Result<u64, ServiceError> {
        require_admin(caller)?;
        let target = selection.to_string();
        let outcome = async {
            let ids = self.select(selection).await?;
            Ok(self.store.purge_failed(&ids).await?)
        }
        .await;
        let action = AuditAction::PurgeDeadLetters;
        self.audit
            .record(caller, action, &target, outcome, |n| json!({ "count": n }))
            .await
    }

    async fn select(&self, selection: Selection) -> Result<Vec<TaskId>, ServiceError> {
        let filter = match selection {
            Selection::Ids(ids) if ids.len() > MAX_SELECTED => {
                return Err(ServiceError::Invalid(format!(
                    "at most {MAX_SELECTED} task ids"
                )));
            }
            Selection::Ids(ids) => return Ok(ids),
            Selection::Matching(filter) => dead_letters(&filter),
        };
        let mut ids = Vec::new();
        let mut page = PageRequest {
            size: PageRequest::MAX_SIZE,
            after: None,
        };
        loop {
            let found = self.store.list(&filter, &page).await?;
            ids.extend(found.items.iter().map(|t| t.id));
            match found.items.last() {
                Some(last) if found.next_page_token.is_some() && ids.len() < MAX_SELECTED => {
                    page.after = Some((last.created_at, last.id));
                }
                _ => return Ok(ids),
            }
        }
    }
}

fn dead_letters(filter: &DeadLetterFilter) -> TaskFilter {
    TaskFilter {
        user_id: None,
        status: Some(TaskStatus::Failed),
        task_type: filter.task_type,
        error_class: filter.error_class,
    }
}

pub(super) fn require_admin(caller: &Caller) -> Result<(), ServiceError> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::User | Role::Service => Err(ServiceError::Forbidden(
            "this call needs an admin token".into(),
        )),
    }
}
