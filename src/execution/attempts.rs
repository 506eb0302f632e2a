//! Writes provider attempts to the usage store in the background, in batches, as they happen:
//! an attempt is kept even when the task's own future is later dropped (timeout, cancel).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::domain::{AttemptOutcome, ProviderAttempt};
use crate::store::UsageStore;
use crate::telemetry::live::LiveCounters;

/// Most attempts written in one statement.
const BATCH: usize = 500;

/// How long the loop gathers attempts after the first before it writes them. Each write is a
/// transaction on the store's writer, in embedded mode the one SQLite connection that every
/// submit and outcome waits for: written as they came, at 1,000 AI calls/s they were hundreds
/// of small transactions a second queued among the submits. Nothing waits on these rows.
const GATHER: Duration = Duration::from_millis(100);

/// Sends attempts to the writer loop.
#[derive(Clone)]
pub struct AttemptRecorder {
    tx: mpsc::UnboundedSender<ProviderAttempt>,
    /// The dashboard's counters, told of each call as it is queued.
    live: Option<Arc<LiveCounters>>,
}

impl AttemptRecorder {
    /// Starts the writer loop on `tracker`; it ends once every recorder clone is dropped and
    /// everything sent is written.
    pub fn spawn(store: Arc<dyn UsageStore>, tracker: &TaskTracker) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<ProviderAttempt>();
        tracker.spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let until = tokio::time::Instant::now() + GATHER;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    // Zero: every recorder is gone; write what is here, then end.
                    match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let started = std::time::Instant::now();
                let recorded = store.record_attempts(&batch).await;
                tracing::debug!(
                    count = batch.len(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "provider attempts recorded"
                );
                if let Err(e) = recorded {
                    tracing::warn!(error = %e, count = batch.len(), "could not record provider attempts");
                }
                batch.clear();
            }
        });
        Self { tx, live: None }
    }

    /// Also counts each call in `live`, for the dashboard.
    pub fn with_live_counters(mut self, live: Arc<LiveCounters>) -> Self {
        self.live = Some(live);
        self
    }

    /// Queues `attempt` for writing.
    pub fn record(&self, attempt: ProviderAttempt) {
        if let Some(live) = &self.live {
            let skipped = matches!(
                attempt.outcome,
                AttemptOutcome::SkippedBreaker | AttemptOutcome::SkippedRateLimit
            );
            if !skipped {
                live.provider_call(
                    &attempt.provider,
                    attempt.outcome == AttemptOutcome::Ok,
                    attempt.latency_ms,
                    u64::try_from(attempt.cost.0).unwrap_or(0),
                );
            }
        }
        let _ = self.tx.send(attempt);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{SubsecRound, Utc};
    use tokio_util::task::TaskTracker;

    use super::AttemptRecorder;
    use crate::domain::{AttemptOutcome, Micros, ProviderAttempt, TaskId, TaskType, UserId};
    use crate::store::{SqliteTaskStore, UsageStore};

    fn attempt(task: TaskId, provider: &str, outcome: AttemptOutcome) -> ProviderAttempt {
        ProviderAttempt {
            id: uuid::Uuid::now_v7(),
            task_id: Some(task),
            user_id: UserId::parse("u1").unwrap(),
            provider: provider.into(),
            model: "m".into(),
            task_type: TaskType::Summarize,
            input_tokens: 3,
            output_tokens: 5,
            cost: Micros(7),
            outcome,
            error: None,
            latency_ms: 50,
            at: Utc::now().trunc_subsecs(6),
        }
    }

    /// Attempts recorded while the loop gathers are all written, in order, and the loop ends
    /// once the last recorder is gone, writing what it still held.
    #[tokio::test]
    async fn gathered_attempts_are_written_in_order_and_the_loop_ends_with_its_recorders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteTaskStore::open(dir.path()).await.unwrap());
        let tracker = TaskTracker::new();
        let recorder = AttemptRecorder::spawn(store.clone(), &tracker);
        let task = TaskId::new();
        let tries = vec![
            attempt(task, "groq", AttemptOutcome::Retryable),
            attempt(task, "claude", AttemptOutcome::RateLimited),
            attempt(task, "openai", AttemptOutcome::Ok),
        ];
        recorder.record(tries[0].clone());
        tokio::time::sleep(Duration::from_millis(10)).await;
        recorder.record(tries[1].clone());
        recorder.clone().record(tries[2].clone());

        drop(recorder);
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("the loop ends once every recorder is dropped");
        assert_eq!(store.attempts_for_task(task).await.unwrap(), tries);
    }
}
