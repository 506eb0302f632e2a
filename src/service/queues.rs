//! Named queues for operators and callers of seed 000's TaskQueueRepository: list with
//! statistics, pause, resume, enqueue, dequeue.

use std::sync::Arc;
use std::time::Duration;

use super::ServiceError;
use crate::clock;
use crate::domain::{Priority, QueueKind, QueueName, Task, TaskId, WorkerId};
use crate::queue::{PopRequest, QueueEntry, QueueSpec, QueueStates, TaskQueue};
use crate::store::{QueueStore, TaskStats, TaskStore};
use crate::worker::{PoolSnapshot, Slots};

/// One queue as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    /// Its configuration.
    pub spec: QueueSpec,
    /// Whether it is paused (as this instance last read it).
    pub paused: bool,
    /// Its tasks in the database: counts per status, mean wait and processing times.
    pub tasks: TaskStats,
    /// Ids waiting in it (ready and delayed retries).
    pub depth: u64,
    /// Its tasks running on this instance now.
    pub running: usize,
}

/// The named queues, their paused flags and this instance's pool.
#[derive(Clone)]
pub struct QueueService {
    store: Arc<dyn TaskStore>,
    queues: Arc<dyn QueueStore>,
    queue: Arc<dyn TaskQueue>,
    states: Arc<QueueStates>,
    slots: Arc<Slots>,
}

impl QueueService {
    /// Serves the queues of `states`.
    pub fn new(
        store: Arc<dyn TaskStore>,
        queues: Arc<dyn QueueStore>,
        queue: Arc<dyn TaskQueue>,
        states: Arc<QueueStates>,
        slots: Arc<Slots>,
    ) -> Self {
        Self {
            store,
            queues,
            queue,
            states,
            slots,
        }
    }

    /// This instance's worker pool: its current (adaptive) limit and what runs.
    pub fn pool(&self) -> PoolSnapshot {
        self.slots.snapshot()
    }

    /// Every configured queue with its statistics over tasks created in the last `window`.
    pub async fn list(&self, window: Duration) -> Result<Vec<QueueView>, ServiceError> {
        let stats = self.queues.queue_task_stats(clock::now() - window).await?;
        let pool = self.slots.snapshot();
        let mut out = Vec::new();
        for (i, spec) in self.states.set().specs().iter().enumerate() {
            let tasks = stats
                .iter()
                .find(|(q, _)| *q == spec.name)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            out.push(QueueView {
                spec: spec.clone(),
                paused: self.states.is_paused(i),
                tasks,
                depth: self.queue.depth(spec.name).await?,
                running: pool.per_queue.get(i).map_or(0, |(_, n)| *n),
            });
        }
        Ok(out)
    }

    /// Pauses (or resumes) a configured queue on every instance: written to the database,
    /// applied here at once and by the other instances within their next sync.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ServiceError> {
        let name = self.configured(name)?;
        if !self
            .queues
            .set_queue_paused(name, paused, clock::now())
            .await?
        {
            // Configured but not stored (the row was deleted by hand): store it again.
            self.queues
                .sync_queues(self.states.set().specs(), clock::now())
                .await?;
            self.queues
                .set_queue_paused(name, paused, clock::now())
                .await?;
        }
        self.states.set_paused(name, paused);
        tracing::info!(queue = %name, paused, "queue state changed");
        Ok(())
    }

    /// The configured queues of one type (seed: find_by_type).
    pub fn find_by_type(&self, kind: QueueKind) -> Vec<QueueSpec> {
        self.states
            .set()
            .specs()
            .iter()
            .filter(|s| s.kind == kind)
            .cloned()
            .collect()
    }

    /// The configured queues that are not paused (seed: find_active_queues).
    pub fn find_active_queues(&self) -> Vec<QueueSpec> {
        let specs = self.states.set().specs();
        specs
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.states.is_paused(*i))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Puts a pending task's id in `queue` (seed: enqueue_task).
    pub async fn enqueue_task(
        &self,
        queue: &str,
        task_id: TaskId,
        priority: Priority,
    ) -> Result<(), ServiceError> {
        let queue = self.configured(queue)?;
        self.queue
            .push(&[QueueEntry::new(task_id, priority).in_queue(queue)])
            .await?;
        Ok(())
    }

    /// Takes the next task of `queue` for `worker` and claims it with a lease (seed:
    /// dequeue_task_with_priority). `None` when the queue has nothing ready or is paused.
    pub async fn dequeue_task_with_priority(
        &self,
        queue: &str,
        worker: &WorkerId,
        lease: Duration,
    ) -> Result<Option<Task>, ServiceError> {
        let queue = self.configured(queue)?;
        if self.states.is_paused_name(queue) {
            return Ok(None);
        }
        loop {
            let popped = self
                .queue
                .pop_from(&[PopRequest { queue, max: 1 }], 1, Duration::ZERO)
                .await?;
            let Some(p) = popped.first() else {
                return Ok(None);
            };
            let now = clock::now();
            // A stale id (cancelled, claimed elsewhere) is skipped; the next one is tried.
            if let Some(task) = self
                .store
                .claim(&[p.task_id], worker, now + lease, now)
                .await?
                .pop()
            {
                return Ok(Some(task));
            }
        }
    }

    /// `name` if it is a configured queue, else NotFound.
    fn configured(&self, name: &str) -> Result<QueueName, ServiceError> {
        QueueName::parse(name)
            .ok()
            .filter(|q| self.states.set().index_of(*q).is_some())
            .ok_or_else(|| ServiceError::Missing(format!("no queue named {name:?} is configured")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewTask, SubmitPolicy, Submitter, TaskRequest, UserId};
    use crate::queue::{MemoryQueue, QueueSet};
    use crate::store::SqliteTaskStore;

    #[tokio::test]
    async fn enqueue_and_dequeue_with_priority_claim_from_one_queue() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(SqliteTaskStore::open(dir.path()).await.unwrap());
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::with_queues(QueueSet::single(2)));
        let states = Arc::new(QueueStates::new(QueueSet::single(2)));
        let slots = Slots::new(&states, 1, 2, false);
        let svc = QueueService::new(db.clone(), db.clone(), queue, states, slots);
        let new = |p: i64| {
            let n = NewTask::parse(
                &Submitter::user(UserId::parse("u").unwrap()),
                TaskRequest::new("echo", serde_json::json!({})).with_priority(p),
                &SubmitPolicy::default(),
            )
            .unwrap();
            Task::create(n, 3, Duration::from_secs(5), clock::now())
        };
        let (low, high) = (new(2), new(9));
        db.insert_tasks(vec![low.clone(), high.clone()])
            .await
            .unwrap();
        svc.enqueue_task("default", low.id, low.priority)
            .await
            .unwrap();
        svc.enqueue_task("default", high.id, high.priority)
            .await
            .unwrap();
        assert!(matches!(
            svc.enqueue_task("nope", low.id, low.priority).await,
            Err(ServiceError::Missing(_))
        ));

        let worker = WorkerId::generate("test");
        let lease = Duration::from_secs(30);
        let first = svc
            .dequeue_task_with_priority("default", &worker, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, high.id, "highest priority first");
        assert_eq!(first.worker_id.as_ref(), Some(&worker));

        svc.set_paused("default", true).await.unwrap();
        assert!(svc.find_active_queues().is_empty());
        assert!(
            svc.dequeue_task_with_priority("default", &worker, lease)
                .await
                .unwrap()
                .is_none(),
            "paused"
        );
        svc.set_paused("default", false).await.unwrap();
        let second = svc
            .dequeue_task_with_priority("default", &worker, lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.id, low.id);
        assert!(
            svc.dequeue_task_with_priority("default", &worker, lease)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(svc.find_by_type(QueueKind::Priority).len(), 1);
        assert!(svc.find_by_type(QueueKind::Standard).is_empty());
    }
}
