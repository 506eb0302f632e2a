//! The pipeline scheduler: turns stored stage states into tasks and task ends into stage
//! states.
//!
//! Fast path: a stage task's end arrives from [`StageEndTee`](super::StageEndTee); the end is
//! applied (result stored, dependents made ready), then the session's free slots are filled
//! with ready stages, each submitted as an ordinary task through [`TaskService`]. Slow path,
//! every [`SWEEP_INTERVAL`] and at start: ends nobody applied, stages started but never
//! submitted, free slots of every unfinished session (a restart continues here), expiry and
//! heartbeats. Every step is idempotent in the store, so instances that race apply each
//! change once.
//!
//! Fairness: a session never has more than its `max_parallel_tasks` tasks queued or running,
//! so the queue (FIFO within a priority) interleaves sessions: a session started after a
//! 10,000-item one waits for at most the tasks already queued, not for that session's items.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, Role};
use crate::clock;
use crate::config::PipelineSettings;
use crate::domain::pipeline::template;
use crate::domain::{NewTask, Submitter, TaskId, TaskRequest, Tier};
use crate::service::{ServiceError, TaskService};
use crate::store::pipeline::{PipelineStore, SessionId, StageEnd, StageOutcome, StageRun};

/// How often the sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A stage started this long ago whose task does not exist was never submitted.
const UNSUBMITTED_AFTER: Duration = Duration::from_secs(2);
/// Rows one sweep step handles at most.
const SWEEP_LIMIT: u32 = 1000;

/// Starts stages and applies their ends; shared by the API and the loop.
#[derive(Clone)]
pub struct Scheduler {
    store: Arc<dyn PipelineStore>,
    tasks: TaskService,
    settings: Arc<PipelineSettings>,
}

impl Scheduler {
    /// A scheduler over `store`, submitting through `tasks`.
    pub fn new(
        store: Arc<dyn PipelineStore>,
        tasks: TaskService,
        settings: PipelineSettings,
    ) -> Self {
        Self {
            store,
            tasks,
            settings: Arc::new(settings),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// Fills a session's free slots with its ready stages and submits their tasks.
    pub async fn fill(&self, session: SessionId) -> Result<(), ServiceError> {
        let runs = self
            .store
            .start_ready(session, self.settings.max_parallel_tasks, clock::now())
            .await?;
        self.submit(runs).await;
        Ok(())
    }

    /// Submits the tasks of started stages, all at once (they share a group commit). A task
    /// the service refuses as invalid fails its stage; any other refusal (a full queue) is
    /// tried again by the sweep.
    async fn submit(&self, runs: Vec<StageRun>) {
        let submits = runs.into_iter().map(|run| async move {
            let task_id = run.task_id;
            match self.submit_one(run).await {
                Ok(()) => None,
                Err(ServiceError::Invalid(m) | ServiceError::TooLarge(m)) => Some(StageEnd {
                    task_id,
                    outcome: StageOutcome::Failed(format!("the stage's task was refused: {m}")),
                }),
                Err(e) => {
                    tracing::warn!(%task_id, error = %e, "stage task not submitted; the sweep retries");
                    None
                }
            }
        });
        let refused: Vec<StageEnd> = futures::future::join_all(submits)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !refused.is_empty() {
            // Boxed: applying ends fills sessions, which submits again.
            Box::pin(self.apply_ends(refused)).await;
        }
    }

    async fn submit_one(&self, run: StageRun) -> Result<(), ServiceError> {
        let stage = &run.definition.stages[run.stage_index];
        let lookup = |root: &str| -> Option<Value> {
            if root == template::ITEM {
                return Some(run.item.clone());
            }
            run.inputs
                .iter()
                .find(|(name, _)| name == root)
                .map(|(_, v)| v.clone())
        };
        let payload = template::render(&stage.payload, &lookup);
        let request = TaskRequest {
            priority: stage.priority,
            // The same key for a repeated submit: the store returns the first task.
            idempotency_key: Some(format!("pipeline:{}", run.task_id)),
            related_entity: Some(("pipeline_session".into(), run.session_id.to_string())),
            ..TaskRequest::new(stage.task_type.as_str(), payload)
        };
        let submitter = Submitter {
            user_id: run.user_id.clone(),
            tier: Tier::Free,
            admin: false,
        };
        let new = NewTask::parse(&submitter, request, self.tasks.policy())?;
        self.tasks.submit_as(vec![(new, Some(run.task_id))]).await?;
        Ok(())
    }

    /// Applies task ends, then fills the sessions they touched.
    pub async fn apply_ends(&self, ends: Vec<StageEnd>) {
        if ends.is_empty() {
            return;
        }
        let touched = match self.store.finish_stages(ends, clock::now()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "stage ends not applied; the sweep retries");
                return;
            }
        };
        for session in touched {
            if let Err(e) = self.fill(session).await {
                tracing::warn!(%session, error = %e, "session not filled; the sweep retries");
            }
        }
    }

    /// The ends of these tasks, where they are stage tasks.
    pub async fn tasks_ended(&self, tasks: &[TaskId]) {
        match self.store.ended_stage_tasks(Some(tasks), SWEEP_LIMIT).await {
            Ok(ends) => self.apply_ends(ends).await,
            Err(e) => tracing::warn!(error = %e, "stage ends not read; the sweep retries"),
        }
    }

    /// Cancels a session: its unfinished stages never run, its running tasks are cancelled.
    pub async fn cancel(
        &self,
        session: SessionId,
        reason: &str,
    ) -> Result<Option<(crate::store::pipeline::SessionRecord, bool)>, ServiceError> {
        let Some((record, now, running)) = self
            .store
            .cancel_session(session, reason, clock::now())
            .await?
        else {
            return Ok(None);
        };
        let owner = Caller {
            user_id: record.user_id.clone(),
            role: Role::User,
            tier: Tier::Free,
        };
        for task in running {
            // A task that finished meanwhile cannot be cancelled: nothing to do.
            if let Err(e) = self.tasks.cancel(&owner, task).await {
                tracing::debug!(%task, error = %e, "stage task not cancelled");
            }
        }
        Ok(Some((record, now)))
    }

    /// One sweep: see the module docs.
    pub async fn sweep(&self) -> Result<(), ServiceError> {
        let now = clock::now();
        let ends = self.store.ended_stage_tasks(None, SWEEP_LIMIT).await?;
        self.apply_ends(ends).await;
        let before = now - TimeDelta::from_std(UNSUBMITTED_AFTER).unwrap_or_default();
        let lost = self.store.unsubmitted(before, SWEEP_LIMIT).await?;
        self.submit(lost).await;
        for session in self.store.open_sessions(SWEEP_LIMIT).await? {
            self.fill(session).await?;
        }
        let ttl = self.settings.session_ttl;
        let idle_since = now - TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
        for session in self.store.idle_sessions(idle_since, SWEEP_LIMIT).await? {
            let reason = format!("expired: no activity for {}s", ttl.as_secs_f64());
            self.cancel(session, &reason).await?;
        }
        let due = now - TimeDelta::from_std(self.settings.progress_interval).unwrap_or_default();
        self.store.heartbeats(due, now).await?;
        Ok(())
    }
}

/// The scheduler's loop: ends as they arrive, a sweep every [`SWEEP_INTERVAL`].
pub struct SchedulerLoop {
    /// What it drives.
    pub scheduler: Scheduler,
    /// Ended tasks, from the tee.
    pub ends: mpsc::Receiver<TaskId>,
    /// Between sweeps.
    pub interval: Duration,
}

impl SchedulerLoop {
    /// Runs until `cancel`; the first sweep at once (a restart continues its sessions).
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(1000);
        loop {
            tokio::select! {
                n = self.ends.recv_many(&mut batch, 1000) => {
                    if n == 0 {
                        break;
                    }
                    self.scheduler.tasks_ended(&batch).await;
                    batch.clear();
                }
                _ = ticks.tick() => {
                    if let Err(e) = self.scheduler.sweep().await {
                        tracing::warn!(error = %e, "pipeline sweep failed");
                    }
                }
                () = cancel.cancelled() => break,
            }
        }
    }
}
