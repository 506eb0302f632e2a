//! The worker pool: claims tasks from the named queues in batches and runs up to its (adaptive)
//! limit at once, each queue up to its own concurrency, skipping paused queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::attempt::{Shared, run_dispatched, run_task};
use super::dispatch::{Dispatch, Dispatched};
use super::heartbeat::heartbeat_loop;
use super::progress::{StreamingAttempts, publish_progress};
use super::running::{RunningAttempts, watch_attempts};
use super::slots::{SlotGuard, Slots};
use crate::clock;
use crate::domain::{TaskId, WorkerId};
use crate::execution::TaskRunner;
use crate::group_commit::{Batcher, Gather};
use crate::queue::{PopRequest, QueueStates, TaskQueue, push_or_defer};
use crate::store::{Finish, TaskStore};
use crate::telemetry::live::LiveCounters;

/// Most finished attempts written in one transaction.
const FINISH_BATCH: usize = 1000;

/// Settings of a pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Tasks run at once (`WORKER_POOL_SIZE`) unless [`WorkerPool::with_queues`] gives slots
    /// with an adaptive limit.
    pub size: usize,
    /// How long a claim holds a task (`LEASE_DURATION`).
    pub lease: Duration,
    /// First retry delay (`RETRY_BASE_DELAY`).
    pub retry_base_delay: Duration,
    /// How long running tasks may finish after shutdown starts (`SHUTDOWN_GRACE_PERIOD`).
    pub grace_period: Duration,
    /// How outcomes are grouped into transactions (one loop for SQLite).
    pub finishes: Gather,
    /// The host this pool runs on, recorded in the worker registry.
    pub instance: String,
    /// Most ids taken from the queue and claimed in one transaction (`CLAIM_BATCH_SIZE`).
    pub claim_batch: usize,
}

/// Runs tasks: pop ids, claim them in the database (the compare-and-set decides), run each on
/// its provider under its timeout, record the outcome.
pub struct WorkerPool {
    id: WorkerId,
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn TaskQueue>,
    runner: TaskRunner,
    config: PoolConfig,
    /// Rung after a retry is parked in the delayed set (see [`DelayScheduler::waker`]).
    ///
    /// [`DelayScheduler::waker`]: super::DelayScheduler::waker
    retry_wake: Arc<Notify>,
    /// Which queues are paused.
    states: Arc<QueueStates>,
    /// Running tasks against the limit and each queue's concurrency.
    slots: Arc<Slots>,
    /// Tasks that submits started directly (see [`Dispatch`]), with the dispatch to tell what
    /// each pop found.
    dispatch: Option<(Arc<Dispatch>, mpsc::UnboundedReceiver<Dispatched>)>,
    /// The dashboard's counters, told how each attempt ended.
    live: Arc<LiveCounters>,
}

impl WorkerPool {
    /// A pool named `id`.
    pub fn new(
        id: WorkerId,
        store: Arc<dyn TaskStore>,
        queue: Arc<dyn TaskQueue>,
        runner: TaskRunner,
        config: PoolConfig,
    ) -> Self {
        let states = Arc::new(QueueStates::new(queue.queues().clone()));
        let slots = Slots::new(&states, config.size, config.size, false);
        Self {
            id,
            store,
            queue,
            runner,
            config,
            retry_wake: Arc::new(Notify::new()),
            states,
            slots,
            dispatch: None,
            live: Arc::new(LiveCounters::new()),
        }
    }

    /// Runs the tasks that submits start directly through `dispatch` (made with this pool's
    /// id, slots and queue states), and tells it what each pop found.
    pub fn with_dispatch(
        mut self,
        dispatch: Arc<Dispatch>,
        started: mpsc::UnboundedReceiver<Dispatched>,
    ) -> Self {
        self.dispatch = Some((dispatch, started));
        self
    }

    /// Serves the queues of `states` (paused ones are skipped) within `slots`, whose limit an
    /// [`AdaptiveLimit`](super::AdaptiveLimit) may move.
    pub fn with_queues(mut self, states: Arc<QueueStates>, slots: Arc<Slots>) -> Self {
        self.states = states;
        self.slots = slots;
        self
    }

    /// Rings `wake` whenever a retry is parked, so the delay scheduler promotes it on time.
    pub fn with_retry_waker(mut self, wake: Arc<Notify>) -> Self {
        self.retry_wake = wake;
        self
    }

    /// Counts each attempt's end in `live`, for the dashboard.
    pub fn with_live_counters(mut self, live: Arc<LiveCounters>) -> Self {
        self.live = live;
        self
    }

    /// This pool's worker id, recorded on the tasks it claims.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    /// Runs until `shutdown` is cancelled, then stops claiming and gives running tasks the
    /// grace period to finish. Tasks still running after it are aborted mid-call; they stay
    /// `processing` with an expiring lease for recovery to pick up.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let finish_store = self.store.clone();
        let finishes = Batcher::spawn_gathering(
            &tracker,
            self.config.finishes,
            FINISH_BATCH,
            move |batch: Vec<Finish>| {
                let store = finish_store.clone();
                async move { store.finish(&batch).await }
            },
        );
        let attempts = RunningAttempts::default();
        let streaming = StreamingAttempts::default();
        let shared = Arc::new(Shared {
            id: self.id.clone(),
            attempts: attempts.clone(),
            queue: self.queue.clone(),
            streaming: streaming.clone(),
            runner: self.runner.clone(),
            finishes,
            retry_base_delay: self.config.retry_base_delay,
            retry_wake: self.retry_wake.clone(),
            live: self.live.clone(),
        });
        let running = TaskTracker::new();
        let abort = CancellationToken::new();
        let (dispatch, direct) = match self.dispatch.take() {
            Some((dispatch, started)) => {
                let direct = tokio::spawn(run_dispatched(
                    started,
                    shared.clone(),
                    running.clone(),
                    abort.clone(),
                    shutdown.clone(),
                ));
                (Some(dispatch), Some(direct))
            }
            None => (None, None),
        };
        if let Err(e) = self
            .store
            .register_worker(&self.id, &self.config.instance, clock::now())
            .await
        {
            tracing::warn!(error = %e, "could not register worker; heartbeats will retry");
        }
        let heartbeat_stop = CancellationToken::new();
        let progress = tokio::spawn(publish_progress(
            self.store.clone(),
            streaming,
            heartbeat_stop.clone(),
        ));
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.store.clone(),
            self.id.clone(),
            attempts.clone(),
            self.config.lease,
            heartbeat_stop.clone(),
        ));
        let watcher = tokio::spawn(watch_attempts(
            self.store.clone(),
            self.id.clone(),
            attempts,
            heartbeat_stop.clone(),
        ));
        tracing::info!(
            worker_id = %self.id,
            limit = self.slots.limit(),
            queues = self.states.set().specs().len(),
            "worker pool started"
        );

        let mut rotation = 0usize;
        while let Some((requests, total)) = self.next_plan(rotation, &shutdown).await {
            rotation = rotation.wrapping_add(1);
            let popped = tokio::select! {
                r = self.queue.pop_from(&requests, total, Duration::from_secs(1)) => r,
                _ = shutdown.cancelled() => break,
            };
            if let (Some(d), Ok(p)) = (&dispatch, &popped) {
                d.popped(total, p.len());
            }
            let popped = match popped {
                Ok(p) if p.is_empty() => continue,
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "queue pop failed; retrying");
                    pause(&shutdown, Duration::from_millis(500)).await;
                    continue;
                }
            };
            // Each id holds a slot of its queue from now until its provider call ends.
            let set = self.states.set();
            let mut slots: HashMap<TaskId, SlotGuard> = popped
                .iter()
                .map(|p| {
                    let lane = set.lane_of(p.queue);
                    (p.task_id, SlotGuard::take(self.slots.clone(), lane))
                })
                .collect();
            let ids: Vec<TaskId> = popped.iter().map(|p| p.task_id).collect();
            let now = clock::now();
            let lease_until = now + self.config.lease;
            let started = std::time::Instant::now();
            let claimed = self.store.claim(&ids, &self.id, lease_until, now).await;
            tracing::debug!(
                ids = ids.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "claim"
            );
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The ids left the queue but their tasks are still pending in the database;
                    // the reconciler puts them back.
                    tracing::warn!(error = %e, count = ids.len(), "claim failed");
                    drop(slots);
                    pause(&shutdown, Duration::from_millis(500)).await;
                    continue;
                }
            };
            for task in claimed {
                let Some(slot) = slots.remove(&task.id) else {
                    continue;
                };
                let stop = abort.child_token();
                running.spawn(run_task(shared.clone(), task, slot, stop, None));
            }
            // Ids not claimed (taken elsewhere, cancelled, finished) free their slots here.
        }

        tracing::info!(worker_id = %self.id, "worker pool stopping; waiting for running tasks");
        if let Some(direct) = direct {
            let _ = direct.await;
        }
        running.close();
        if tokio::time::timeout(self.config.grace_period, running.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; aborting running tasks");
            abort.cancel();
            running.wait().await;
        }
        drop(shared);
        tracker.close();
        tracker.wait().await;
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        let _ = watcher.await;
        let _ = progress.await;
        self.hand_back().await;
        tracing::info!(worker_id = %self.id, "worker pool stopped");
    }
}

impl WorkerPool {
    /// Waits for a free slot in a queue that is not paused; returns what to pop, or `None`
    /// on shutdown.
    async fn next_plan(
        &self,
        rotation: usize,
        shutdown: &CancellationToken,
    ) -> Option<(Vec<PopRequest>, usize)> {
        loop {
            // Register interest before looking, so a change between the look and the wait is
            // seen.
            let changed = self.states.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(plan) = self
                .slots
                .plan(&self.states, rotation, self.config.claim_batch)
            {
                return Some(plan);
            }
            tokio::select! {
                _ = self.slots.freed() => {}
                _ = changed => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// Returns every task this pool still holds to the queue at once, so a clean shutdown never
    /// leaves work waiting for a lease to expire.
    async fn hand_back(&self) {
        let now = clock::now();
        match self.store.release(&self.id, now).await {
            Ok(released) if !released.is_empty() => {
                tracing::info!(count = released.len(), "handed unfinished tasks back");
                push_or_defer(&*self.queue, &released).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "hand-back failed; the reaper will requeue"),
        }
        if let Err(e) = self.store.unregister_worker(&self.id, now).await {
            tracing::warn!(error = %e, "could not unregister worker");
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}
