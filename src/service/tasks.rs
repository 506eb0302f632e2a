//! The task service: accepts, reads and cancels tasks for authenticated callers. Validates
//! limits, stores through the group commit, queues, and starts what may skip the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::auth::Caller;
use crate::clock;
use crate::domain::{
    NewTask, Page, PageRequest, SubmitPolicy, Task, TaskId, TaskStatus, TaskType, UserId,
};
use crate::group_commit::{Batcher, Gather};
use crate::queue::{TaskQueue, push_or_defer};
use crate::ratelimit::{Decision, Rate, RateLimiter};
use crate::store::{Inserted, StoreError, TaskFilter, TaskStore};
use crate::telemetry::live::LiveCounters;
use crate::telemetry::{metrics, traces};
use crate::worker::{DirectStarts, Dispatch};

use super::ServiceError;
use super::queue_depth::QueueDepth;

/// One group commit: inserts every task, then pushes the new pending ones to the queue.
async fn insert_then_queue(
    store: &dyn TaskStore,
    queue: &dyn TaskQueue,
    tasks: Vec<Task>,
) -> Result<Vec<Inserted>, StoreError> {
    let inserted = store.insert_tasks(tasks).await?;
    let queued: Vec<&Task> = inserted
        .iter()
        .filter(|i| i.created && i.task.status == TaskStatus::Pending)
        .map(|i| &i.task)
        .collect();
    if !queued.is_empty() {
        push_or_defer(queue, queued).await;
    }
    Ok(inserted)
}

/// Most tasks in one `SubmitTasks` call.
pub const MAX_BATCH: usize = 1000;
/// Most tasks one group commit writes in one transaction.
const MAX_GROUP: usize = 1000;

/// Limits that apply to submits.
#[derive(Debug, Clone)]
pub struct SubmitLimits {
    /// Refuse submits while this many tasks wait (`MAX_QUEUE_SIZE`).
    pub max_queue_size: u64,
    /// Retries allowed per task (`JOB_QUEUE_MAX_RETRIES`).
    pub max_retries: u32,
    /// Per-attempt timeout (`TASK_TIMEOUT`).
    pub task_timeout: Duration,
    /// Per-type overrides of `task_timeout` (`TASK_TIMEOUT_<TYPE>`).
    pub type_timeouts: std::collections::HashMap<TaskType, Duration>,
    /// What a submit may ask for: timeouts, echo, priorities.
    pub policy: SubmitPolicy,
    /// Per-user submit rate (`USER_SUBMIT_RATE`).
    pub user_submit_rate: Option<Rate>,
    /// Pending plus processing tasks per user (`MAX_ACTIVE_TASKS_PER_USER`); 0 = no limit.
    pub max_active_per_user: u64,
}

/// Accepts, reads and cancels tasks on behalf of authenticated callers.
#[derive(Clone)]
pub struct TaskService {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    /// Group commit of submits: concurrent requests share a transaction.
    inserts: Batcher<Task, Inserted, StoreError>,
    /// Starts new tasks on this instance's pool when they may skip the queue.
    dispatch: Option<Arc<Dispatch>>,
    limits: SubmitLimits,
    /// Queue depth for the MAX_QUEUE_SIZE check, measured at most every 50 ms.
    depth: Arc<QueueDepth>,
    /// Enforces `USER_SUBMIT_RATE` across instances.
    limiter: Arc<dyn RateLimiter>,
    /// The dashboard's counters, told of each accepted task.
    live: Arc<LiveCounters>,
}

impl TaskService {
    /// Builds the service and starts its group-commit loops on `tracker`. `commit_loops`
    /// transactions may be in flight at once (1 for SQLite, which has one writer). With
    /// `dispatch`, a new task that may skip the queue starts on this instance's pool at once.
    pub fn new(
        store: Arc<dyn TaskStore>,
        queue: Arc<dyn TaskQueue>,
        limiter: Arc<dyn RateLimiter>,
        limits: SubmitLimits,
        tracker: &TaskTracker,
        commits: Gather,
        dispatch: Option<Arc<Dispatch>>,
    ) -> Self {
        let (s, q) = (store.clone(), queue.clone());
        let inserts =
            Batcher::spawn_gathering(tracker, commits, MAX_GROUP, move |tasks: Vec<Task>| {
                let (store, queue) = (s.clone(), q.clone());
                async move { insert_then_queue(&*store, &*queue, tasks).await }
            });
        Self {
            store,
            queue,
            inserts,
            dispatch,
            limits,
            depth: Arc::new(QueueDepth::new()),
            limiter,
            live: Arc::new(LiveCounters::new()),
        }
    }

    /// Counts each accepted task in `live`, for the dashboard.
    pub fn with_live_counters(mut self, live: Arc<LiveCounters>) -> Self {
        self.live = live;
        self
    }

    /// Stores and queues `requests` (all or none) and returns the tasks in request order. A
    /// request whose idempotency key was seen before returns the earlier task.
    pub async fn submit(&self, requests: Vec<NewTask>) -> Result<Vec<Task>, ServiceError> {
        self.submit_as(requests.into_iter().map(|r| (r, None)).collect())
            .await
    }

    /// [`submit`](Self::submit), each task with the id given where one is: a pipeline
    /// stage's task id is chosen when the stage starts, so a submit repeated after a crash
    /// (with the same idempotency key) is the same task.
    pub async fn submit_as(
        &self,
        requests: Vec<(NewTask, Option<TaskId>)>,
    ) -> Result<Vec<Task>, ServiceError> {
        if requests.is_empty() {
            return Err(ServiceError::Invalid("no tasks to submit".into()));
        }
        if requests.len() > MAX_BATCH {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_BATCH} tasks per batch, got {}",
                requests.len()
            )));
        }
        let owner = requests[0].0.user_id.clone();
        self.check_user_limits(&owner, requests.len()).await?;
        let waiting = self.depth.get(&*self.queue).await?;
        if waiting + requests.len() as u64 > self.limits.max_queue_size {
            return Err(ServiceError::Busy {
                message: format!(
                    "queue is full ({waiting} tasks waiting, MAX_QUEUE_SIZE {})",
                    self.limits.max_queue_size
                ),
                retry_after: Duration::from_secs(1),
            });
        }
        let now = clock::now();
        // Every attempt of these tasks, wherever it runs, continues the submit's trace.
        let trace = traces::current_context();
        let mut tasks: Vec<Task> = requests
            .into_iter()
            .map(|(r, id)| {
                let timeout = self.limits.type_timeouts.get(&r.task_type).copied();
                let timeout = timeout.unwrap_or(self.limits.task_timeout);
                let mut task = Task::create(r, self.limits.max_retries, timeout, now);
                if let Some(id) = id {
                    task.id = id;
                }
                task.queue = self.queue.queues().route(task.task_type);
                task.trace_context = trace.clone();
                task
            })
            .collect();
        // Before the group commit, not in it: a task that starts here starts now, not after
        // the transaction ahead of its own. On an error the starts drop, which stops the
        // calls already started.
        let starts = DirectStarts::begin(self.dispatch.as_deref(), &mut tasks);
        let inserted = self.inserts.call(owner, tasks).await?;
        starts.committed(&inserted);
        for i in inserted.iter().filter(|i| i.created) {
            metrics::tasks_submitted(i.task.task_type, i.task.queue, 1);
            self.live.submitted(i.task.queue, i.task.task_type, 1);
            // The payload is the user's text: the log output masks PII in it.
            tracing::debug!(
                task_id = %i.task.id,
                task_type = i.task.task_type.as_str(),
                payload = %i.task.payload,
                "task submitted"
            );
        }
        let queued = inserted
            .iter()
            .filter(|i| i.created && i.task.status == TaskStatus::Pending)
            .count();
        self.depth.add(queued as u64);
        Ok(inserted.into_iter().map(|i| i.task).collect())
    }

    /// What a submit may ask for here; the edges parse requests under it.
    pub fn policy(&self) -> &SubmitPolicy {
        &self.limits.policy
    }

    /// The per-user submit rate and active-task cap. Every request of one call has the same
    /// owner: the caller.
    async fn check_user_limits(&self, user: &UserId, n: usize) -> Result<(), ServiceError> {
        if let Some(rate) = self.limits.user_submit_rate {
            let cost = u32::try_from(n).unwrap_or(u32::MAX);
            match self
                .limiter
                .check(&format!("submit:{user}"), rate, cost)
                .await
            {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Limited { retry_after }) => {
                    return Err(ServiceError::Busy {
                        message: format!("submit rate limit of {rate} per user exceeded"),
                        retry_after,
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "rate limiter unavailable");
                    return Err(ServiceError::Unavailable("rate limiter unavailable".into()));
                }
            }
        }
        let cap = self.limits.max_active_per_user;
        if cap > 0 {
            let active = self.store.count_active_by_user(user).await?;
            if active + n as u64 > cap {
                return Err(ServiceError::Busy {
                    message: format!(
                        "too many active tasks ({active} pending or running; the limit is {cap} per user)"
                    ),
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        Ok(())
    }

    /// One task the caller may see.
    pub async fn get(&self, caller: &Caller, id: TaskId) -> Result<Task, ServiceError> {
        match self.store.find_by_id(id).await? {
            Some(t) if caller.may_access(&t.user_id) => Ok(t),
            _ => Err(ServiceError::NotFound(id.to_string())),
        }
    }

    /// The caller's tasks (an admin's: everyone's), newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        status: Option<TaskStatus>,
        task_type: Option<TaskType>,
        page: PageRequest,
    ) -> Result<Page<Task>, ServiceError> {
        let user_id = match caller.role {
            crate::auth::Role::Admin => None,
            crate::auth::Role::User | crate::auth::Role::Service => Some(caller.user_id.clone()),
        };
        let filter = TaskFilter {
            user_id,
            status,
            task_type,
            error_class: None,
        };
        Ok(self.store.list(&filter, &page).await?)
    }

    /// Cancels a pending or running task of the caller's.
    pub async fn cancel(&self, caller: &Caller, id: TaskId) -> Result<Task, ServiceError> {
        // Check ownership first so a stranger's cancel changes nothing.
        self.get(caller, id).await?;
        match self.store.cancel(id, clock::now()).await? {
            None => Err(ServiceError::NotFound(id.to_string())),
            Some((task, true)) => {
                metrics::task_cancelled(task.task_type, task.queue);
                if let Err(e) = self.queue.remove(id).await {
                    // Harmless: a claim of a cancelled task finds it not pending and skips it.
                    tracing::warn!(task_id = %id, error = %e, "could not drop cancelled task from queue");
                }
                Ok(task)
            }
            Some((task, false)) => Err(ServiceError::Conflict(format!(
                "task {id} is already {} and cannot be cancelled",
                task.status
            ))),
        }
    }
}
