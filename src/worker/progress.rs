//! Publishes the text that running tasks stream, as TaskProgress events.
//!
//! One loop per pool walks the running attempts every [`PROGRESS_INTERVAL`] and writes, in one
//! transaction, an event for each attempt that received text since the last pass. Writes are
//! never cancelled half-way (an attempt ending does not abort its progress write), and under load
//! the loop's own pace throttles them: text keeps accumulating in the collectors, so nothing is
//! lost, events just get larger and rarer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::domain::TaskId;
use crate::execution::TokenCollector;
use crate::store::TaskStore;

/// How often streamed text is published.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The collectors of the attempts running now.
#[derive(Clone, Default)]
pub struct StreamingAttempts(Arc<Mutex<HashMap<TaskId, Arc<TokenCollector>>>>);

impl StreamingAttempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Arc<TokenCollector>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A collector for `task`, seen by the loop from [`StreamingGuard::publish`] until the
    /// guard drops: text streamed before then waits in it for the first pass after.
    pub fn prepare(&self, task: TaskId) -> StreamingGuard {
        StreamingGuard {
            attempts: self.clone(),
            task,
            collector: Arc::new(TokenCollector::default()),
        }
    }

    fn snapshot(&self) -> Vec<(TaskId, Arc<TokenCollector>)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// Keeps a collector registered while its attempt runs.
pub struct StreamingGuard {
    attempts: StreamingAttempts,
    task: TaskId,
    collector: Arc<TokenCollector>,
}

impl StreamingGuard {
    /// The attempt's collector.
    pub fn collector(&self) -> &TokenCollector {
        &self.collector
    }

    /// Lets the progress loop publish this collector's text.
    pub fn publish(&self) {
        self.attempts
            .lock()
            .insert(self.task, self.collector.clone());
    }
}

impl Drop for StreamingGuard {
    fn drop(&mut self) {
        self.attempts.lock().remove(&self.task);
    }
}

/// Writes progress events until `stop`, checking it only between writes.
pub async fn publish_progress(
    store: Arc<dyn TaskStore>,
    attempts: StreamingAttempts,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let updates: Vec<_> = attempts
            .snapshot()
            .into_iter()
            .filter_map(|(task, collector)| collector.drain().map(|data| (task, None, data)))
            .collect();
        if updates.is_empty() {
            continue;
        }
        // One transaction per pass. A task that finished meanwhile records nothing: its
        // outcome carries the whole answer.
        let count = updates.len();
        if let Err(e) = store.record_progress_many(updates, clock::now()).await {
            tracing::debug!(count, error = %e, "could not record streamed progress");
        }
    }
}
