//! The worker pool: claims tasks from the named queues in batches and runs up to its (adaptive)
//! limit at once, each queue up to its own concurrency, skipping paused queues.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{Dispatch, Dispatched};
use super::progress::{StreamingAttempts, publish_progress};
use super::retry_delay;
use super::slots::{SlotGuard, Slots};
use crate::batch::{BatchError, Batcher, Gather};
use crate::clock;
use crate::domain::{ErrorClass, Task, TaskError, TaskId, TaskType, WorkerId};
use crate::queue::{PopRequest, QueueEntry, QueueStates, TaskQueue, push_or_defer};
use crate::store::{Finish, Outcome, StoreError, TaskStore};
use crate::tasks::{TaskRunner, TokenCollector};

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
}

/// What one running task needs, shared by all of them.
struct Shared {
    id: WorkerId,
    /// The attempts running now, each with the token that stops it.
    attempts: RunningAttempts,
    queue: Arc<dyn TaskQueue>,
    /// Collectors of streamed text, published by the progress loop.
    streaming: StreamingAttempts,
    runner: TaskRunner,
    finishes: Batcher<Finish, bool, StoreError>,
    retry_base_delay: Duration,
    retry_wake: Arc<Notify>,
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

/// Tries to write an outcome while the database is unreachable, and the pause before the
/// second (doubling after): about 6 s in all.
const OUTCOME_TRIES: u32 = 6;
const OUTCOME_RETRY_FIRST: Duration = Duration::from_millis(200);

/// How often running attempts are checked against the database.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Stop tokens of the attempts running in this pool.
#[derive(Clone, Default)]
struct RunningAttempts(Arc<std::sync::Mutex<HashMap<TaskId, CancellationToken>>>);

impl RunningAttempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, CancellationToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stored task's attempt, stopped by `stop`, until the guard drops: from then
    /// on heartbeats renew its lease and the watch stops it if the task is taken from it.
    fn register(&self, id: TaskId, stop: &CancellationToken) -> AttemptGuard<'_> {
        self.lock().insert(id, stop.clone());
        AttemptGuard { attempts: self, id }
    }
}

/// Unregisters an attempt when it ends, however it ends.
struct AttemptGuard<'a> {
    attempts: &'a RunningAttempts,
    id: TaskId,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        self.attempts.lock().remove(&self.id);
    }
}

/// Stops attempts whose task is no longer processing under this worker: cancelled (from any
/// instance) or taken over after a lost lease. One query per [`WATCH_INTERVAL`] while tasks
/// run, so a cancel reaches the provider call within about half a second, with no pub/sub.
async fn watch_attempts(
    store: Arc<dyn TaskStore>,
    id: WorkerId,
    attempts: RunningAttempts,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let ids: Vec<TaskId> = attempts.lock().keys().copied().collect();
        if ids.is_empty() {
            continue;
        }
        match store.still_held(&ids, &id).await {
            Ok(held) => {
                let held: HashSet<TaskId> = held.into_iter().collect();
                let asked: HashSet<TaskId> = ids.into_iter().collect();
                for (task_id, token) in attempts.lock().iter() {
                    if asked.contains(task_id) && !held.contains(task_id) {
                        tracing::info!(task_id = %task_id, "task cancelled or taken over; stopping its attempt");
                        token.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check running tasks"),
        }
    }
}

/// Renews this pool's leases every third of the lease, so a live worker never loses a task
/// however long its attempt runs, and a dead one loses them within one lease.
async fn heartbeat_loop(
    store: Arc<dyn TaskStore>,
    id: WorkerId,
    attempts: RunningAttempts,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let running: Vec<TaskId> = attempts.lock().keys().copied().collect();
        let now = clock::now();
        if let Err(e) = store.heartbeat(&id, &running, now + lease, now).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// Runs the tasks that submits started directly, until shutdown. Tasks still in the channel
/// then are dropped with their slots: they are `processing` under this pool, so its hand-back
/// returns them to the queue.
async fn run_dispatched(
    mut started: mpsc::UnboundedReceiver<Dispatched>,
    shared: Arc<Shared>,
    running: TaskTracker,
    abort: CancellationToken,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            d = started.recv() => d,
            _ = shutdown.cancelled() => None,
        };
        let Some(Dispatched {
            task,
            slot,
            committed,
        }) = next
        else {
            break;
        };
        let stop = abort.child_token();
        running.spawn(run_task(shared.clone(), task, slot, stop, committed));
    }
    // Later submits see the channel closed and queue their tasks instead.
    started.close();
}

/// Whether the insert of a task handed over before its commit stored it; false too when the
/// attempt is stopped first.
async fn is_stored(committed: oneshot::Receiver<()>, stop: &CancellationToken) -> bool {
    tokio::select! {
        stored = committed => stored.is_ok(),
        _ = stop.cancelled() => false,
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Runs one attempt and records its outcome. The pool slot bounds provider calls, so it is
/// released as soon as the call ends; the write of the outcome joins a group commit whose
/// bounded channel keeps the pool from running far ahead of the database. `stop` ends the
/// attempt (shutdown past its grace period, or the task cancelled or taken over). A task handed
/// over before its insert committed comes with `committed` (see [`Dispatch`]): its call runs
/// meanwhile, but nothing about it is written, renewed or watched until the task is stored,
/// and if it is not, the call is dropped.
async fn run_task(
    shared: Arc<Shared>,
    task: Task,
    slot: SlotGuard,
    stop: CancellationToken,
    committed: Option<oneshot::Receiver<()>>,
) {
    // Echo streams nothing; it skips the registry (the benchmarks' hot path).
    let streaming = (task.task_type != TaskType::Echo).then(|| shared.streaming.prepare(task.id));
    let unwatched = TokenCollector::default();
    let tokens = streaming.as_ref().map_or(&unwatched, |s| s.collector());
    let _registered;
    let attempt = {
        let call = tokio::time::timeout(task.timeout, shared.runner.execute(&task, tokens));
        tokio::pin!(call);
        // The answer of a call that ended before its task was stored.
        let mut early = None;
        if let Some(committed) = committed {
            let stored = is_stored(committed, &stop);
            tokio::pin!(stored);
            loop {
                tokio::select! {
                    ok = &mut stored => if ok { break } else { return },
                    r = &mut call, if early.is_none() => early = Some(r),
                }
            }
        }
        _registered = shared.attempts.register(task.id, &stop);
        if let Some(s) = &streaming {
            s.publish();
        }
        match early {
            Some(r) => r,
            None => tokio::select! {
                r = &mut call => r,
                _ = stop.cancelled() => return,
            },
        }
    };
    drop(streaming);
    drop(slot);
    let now = clock::now();
    let outcome = match attempt {
        Ok(Ok(out)) => Outcome::Completed {
            result: out.result,
            provider: Some(out.provider),
        },
        Ok(Err(e)) => failure(&shared, &task, e.to_task_error(), e.retry_after, now),
        Err(_) => {
            let msg = format!(
                "attempt timed out after {}",
                humantime::format_duration(task.timeout)
            );
            failure(
                &shared,
                &task,
                TaskError::new(ErrorClass::Retryable, msg),
                None,
                now,
            )
        }
    };
    let retry_at = match &outcome {
        Outcome::Retry { run_after, .. } => Some(*run_after),
        _ => None,
    };
    let finish = Finish {
        task_id: task.id,
        worker_id: shared.id.clone(),
        outcome,
        at: now,
    };
    match record_outcome(&shared, &task, finish).await {
        Ok(applied) if applied.first() == Some(&true) => {
            if let Some(due) = retry_at {
                match shared
                    .queue
                    .push_delayed(&[QueueEntry::of(&task)], due)
                    .await
                {
                    Ok(()) => shared.retry_wake.notify_one(),
                    Err(e) => tracing::warn!(
                        task_id = %task.id, error = %e,
                        "could not schedule retry; reconciler will"
                    ),
                }
            }
        }
        // Cancelled or reclaimed meanwhile: the database kept the other outcome.
        Ok(_) => tracing::debug!(task_id = %task.id, "outcome discarded: task no longer ours"),
        Err(e) => tracing::error!(task_id = %task.id, error = %e, "could not record outcome"),
    }
}

/// Writes an attempt's outcome, trying again for a while when the database is unreachable: a
/// lost outcome means the task runs again (and pays its provider again) once its lease lapses.
/// The attempt stays registered meanwhile, so heartbeats keep its lease.
async fn record_outcome(
    shared: &Shared,
    task: &Task,
    finish: Finish,
) -> Result<Vec<bool>, BatchError<StoreError>> {
    let mut delay = OUTCOME_RETRY_FIRST;
    let mut tries = 1;
    loop {
        match shared
            .finishes
            .call(&task.user_id, vec![finish.clone()])
            .await
        {
            Err(BatchError::Failed(e))
                if matches!(*e, StoreError::Unavailable(_)) && tries < OUTCOME_TRIES =>
            {
                tracing::warn!(task_id = %task.id, error = %e, "could not record outcome; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                tries += 1;
            }
            result => return result,
        }
    }
}

fn failure(
    shared: &Shared,
    task: &Task,
    error: TaskError,
    retry_after: Option<Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Outcome {
    if !task.can_retry(&error) {
        return Outcome::Failed { error };
    }
    let delay = match (error.class, retry_after) {
        (ErrorClass::RateLimited, Some(d)) => d,
        _ => retry_delay(shared.retry_base_delay, task.retry_count + 1),
    };
    Outcome::Retry {
        error,
        run_after: now + delay,
    }
}
