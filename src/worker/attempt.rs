//! One attempt of a task on this pool: run it under its timeout and stop token, then write
//! its outcome (retried while the database is away), and the tasks submits started directly.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::dispatch::Dispatched;
use super::progress::StreamingAttempts;
use super::retry_delay;
use super::running::RunningAttempts;
use super::slots::SlotGuard;
use crate::clock;
use crate::domain::{ErrorClass, Task, TaskError, TaskType, WorkerId};
use crate::execution::{TaskRunner, TokenCollector};
use crate::group_commit::{BatchError, Batcher};
use crate::queue::{QueueEntry, TaskQueue};
use crate::store::{Finish, Outcome, StoreError};
use crate::telemetry::live::LiveCounters;
use crate::telemetry::metrics::{self, AttemptEnd};
use crate::telemetry::traces;

/// What one running task needs, shared by all of them.
pub(super) struct Shared {
    pub(super) id: WorkerId,
    /// The attempts running now, each with the token that stops it.
    pub(super) attempts: RunningAttempts,
    pub(super) queue: Arc<dyn TaskQueue>,
    /// Collectors of streamed text, published by the progress loop.
    pub(super) streaming: StreamingAttempts,
    pub(super) runner: TaskRunner,
    pub(super) finishes: Batcher<Finish, bool, StoreError>,
    pub(super) retry_base_delay: Duration,
    pub(super) retry_wake: Arc<Notify>,
    /// The dashboard's counters.
    pub(super) live: Arc<LiveCounters>,
}

/// Tries to write an outcome while the database is unreachable, and the pause before the
/// second (doubling after): about 6 s in all.
const OUTCOME_TRIES: u32 = 6;
const OUTCOME_RETRY_FIRST: Duration = Duration::from_millis(200);

/// Runs the tasks that submits started directly, until shutdown. Tasks still in the channel
/// then are dropped with their slots: they are `processing` under this pool, so its hand-back
/// returns them to the queue.
pub(super) async fn run_dispatched(
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
pub(super) async fn is_stored(committed: oneshot::Receiver<()>, stop: &CancellationToken) -> bool {
    tokio::select! {
        stored = committed => stored.is_ok(),
        _ = stop.cancelled() => false,
    }
}

/// Runs one attempt and records its outcome. The pool slot bounds provider calls, so it is
/// released as soon as the call ends; the write of the outcome joins a group commit whose
/// bounded channel keeps the pool from running far ahead of the database. `stop` ends the
/// attempt (shutdown past its grace period, or the task cancelled or taken over). A task handed
/// over before its insert committed comes with `committed` (see [`Dispatch`]): its call runs
/// meanwhile, but nothing about it is written, renewed or watched until the task is stored,
/// and if it is not, the call is dropped.
pub(super) async fn run_task(
    shared: Arc<Shared>,
    task: Task,
    slot: SlotGuard,
    stop: CancellationToken,
    committed: Option<oneshot::Receiver<()>>,
) {
    // A child of the submit's span (stored with the task), so the provider calls under it
    // join the submit's trace wherever the task runs.
    let span = traces::task_run_span(&task);
    run_attempt(shared, task, slot, stop, committed, &span)
        .instrument(span.clone())
        .await;
}

/// [`run_task`] inside the attempt's span, which gets the attempt's outcome.
async fn run_attempt(
    shared: Arc<Shared>,
    task: Task,
    slot: SlotGuard,
    stop: CancellationToken,
    committed: Option<oneshot::Receiver<()>>,
    span: &Span,
) {
    let started = clock::now();
    // From submit, or from a retry falling due, to this start.
    let due = task.run_after.max(task.created_at);
    metrics::attempt_started(
        task.task_type,
        (task.started_at.unwrap_or(started) - due)
            .to_std()
            .unwrap_or_default(),
    );
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
                    ok = &mut stored => if ok { break } else {
                        traces::task_outcome(span, "not_stored");
                        return;
                    },
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
                _ = stop.cancelled() => {
                    traces::task_outcome(span, "stopped");
                    return;
                }
            },
        }
    };
    drop(streaming);
    drop(slot);
    let now = clock::now();
    let ran = (now - started).to_std().unwrap_or_default();
    let outcome = match attempt {
        Ok(Ok(out)) => Outcome::Completed {
            result: out.result,
            provider: Some(out.provider),
        },
        Ok(Err(e)) => {
            tracing::info!(
                task_id = %task.id,
                provider = %e.provider,
                class = e.class.as_str(),
                error = %e.message,
                "attempt failed"
            );
            failure(&shared, &task, e.to_task_error(), e.retry_after, now)
        }
        Err(_) => {
            metrics::attempt_timed_out(task.task_type, task.queue);
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
    let (end, provider) = match &outcome {
        Outcome::Completed { provider, .. } => (AttemptEnd::Completed, provider.clone()),
        Outcome::Retry { error, .. } => (AttemptEnd::Retried, error.provider.clone()),
        Outcome::Failed { error } => (AttemptEnd::Failed, error.provider.clone()),
    };
    let finish = Finish {
        task_id: task.id,
        worker_id: shared.id.clone(),
        outcome,
        at: now,
    };
    match record_outcome(&shared, &task, finish).await {
        Ok(applied) if applied.first() == Some(&true) => {
            traces::task_outcome(span, end.as_str());
            metrics::attempt_finished(
                task.task_type,
                task.queue,
                provider.as_deref().unwrap_or("none"),
                end,
                ran,
            );
            let latency = (now - due).to_std().unwrap_or_default();
            shared
                .live
                .attempt_ended(task.queue, task.task_type, end, latency);
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
        Ok(_) => {
            traces::task_outcome(span, "discarded");
            tracing::debug!(task_id = %task.id, "outcome discarded: task no longer ours");
        }
        Err(e) => {
            traces::task_outcome(span, "unrecorded");
            tracing::error!(task_id = %task.id, error = %e, "could not record outcome");
        }
    }
}

/// Writes an attempt's outcome, trying again for a while when the database is unreachable: a
/// lost outcome means the task runs again (and pays its provider again) once its lease lapses.
/// The attempt stays registered meanwhile, so heartbeats keep its lease.
pub(super) async fn record_outcome(
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

pub(super) fn failure(
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
