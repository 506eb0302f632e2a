//! The attempts a pool is running, each with the token that stops it, and the watch that
//! stops those whose task was cancelled or taken over elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{TaskId, WorkerId};
use crate::store::TaskStore;

/// How often running attempts are checked against the database.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Stop tokens of the attempts running in this pool.
#[derive(Clone, Default)]
pub(super) struct RunningAttempts(Arc<std::sync::Mutex<HashMap<TaskId, CancellationToken>>>);

impl RunningAttempts {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, CancellationToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stored task's attempt, stopped by `stop`, until the guard drops: from then
    /// on heartbeats renew its lease and the watch stops it if the task is taken from it.
    pub(super) fn register(&self, id: TaskId, stop: &CancellationToken) -> AttemptGuard<'_> {
        self.lock().insert(id, stop.clone());
        AttemptGuard { attempts: self, id }
    }
}

/// Unregisters an attempt when it ends, however it ends.
pub(super) struct AttemptGuard<'a> {
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
pub(super) async fn watch_attempts(
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
