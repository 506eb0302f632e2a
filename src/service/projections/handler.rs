//! What each projection makes of a batch of events: the pure folds' input, or the first
//! event it cannot fold.

use crate::domain::eventstore::PersistedEvent;
use crate::domain::progress::{LearningEvent, TaskFinished, TaskStatsFold};
use crate::domain::projection::ProjectionName;
use crate::store::progress::BatchWork;

/// The first event of a batch a projection cannot fold: its index and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfoldable {
    /// Its index in the batch.
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
}

/// The work of `events` for projection `name`. Events of other types are skipped (the
/// checkpoint still moves past them).
pub fn work(name: ProjectionName, events: &[PersistedEvent]) -> Result<BatchWork, Unfoldable> {
    let fail = |index: usize, error: String| Unfoldable { index, error };
    match name {
        ProjectionName::Progress => {
            let mut folded = Vec::new();
            for (index, e) in events.iter().enumerate() {
                let t = e.event_type.as_str();
                let Some(event) =
                    LearningEvent::decode(t, &e.event_data).map_err(|m| fail(index, m))?
                else {
                    continue;
                };
                let user = event.user(t, &e.metadata).map_err(|m| fail(index, m))?;
                folded.push((user, event, e.metadata.timestamp));
            }
            Ok(BatchWork::Progress(folded))
        }
        ProjectionName::TaskStats => {
            let mut fold = TaskStatsFold::default();
            for (index, e) in events.iter().enumerate() {
                let t = e.event_type.as_str();
                let Some(task) =
                    TaskFinished::decode(t, &e.event_data).map_err(|m| fail(index, m))?
                else {
                    continue;
                };
                let user = e
                    .metadata
                    .user_id
                    .as_ref()
                    .ok_or_else(|| fail(index, format!("{t}: metadata.user_id is required")))?;
                fold.apply(user, &task, e.metadata.timestamp);
            }
            Ok(BatchWork::TaskStats(fold))
        }
    }
}
