//! The one call a submit makes for direct dispatch: start the new tasks that may skip the
//! queue on this instance's pool now, each gated on its insert's commit, and settle them with
//! the insert's answer. See [`super::dispatch`] for why and how a task skips the queue.

use super::dispatch::{CommitGate, Dispatch};
use super::slots::SlotGuard;
use crate::clock;
use crate::domain::Task;
use crate::store::Inserted;

/// Where one task of a submit goes once its insert commits.
enum Next {
    /// Pending: to the queue, pushed by the group commit.
    Queue,
    /// Started here, to be handed to the pool after the commit: an idempotency key may make
    /// the insert answer another task.
    RunAfterCommit(SlotGuard),
    /// Started here and already running, its call overlapping the commit; the gate lets it
    /// write once the task is stored.
    Running(CommitGate),
}

/// The tasks of one submit that started here before their insert. Dropped without
/// [`Self::committed`] (the insert failed), every call already started stops and every slot
/// taken goes back.
#[must_use = "dropping the starts stops the calls they began"]
pub struct DirectStarts<'a> {
    dispatch: Option<&'a Dispatch>,
    next: Vec<Next>,
}

impl<'a> DirectStarts<'a> {
    /// Decides, before the insert, where each of `tasks` goes: the ones that may skip the
    /// queue move to `processing` here (new ones start running at once); the rest queue.
    /// Without `dispatch` (`DIRECT_DISPATCH=false`) everything queues.
    pub fn begin(dispatch: Option<&'a Dispatch>, tasks: &mut [Task]) -> Self {
        let Some(d) = dispatch else {
            return Self {
                dispatch,
                next: tasks.iter().map(|_| Next::Queue).collect(),
            };
        };
        let now = clock::now();
        let next = tasks
            .iter_mut()
            .map(|t| match d.try_start(t, now) {
                Some(slot) if t.idempotency_key.is_none() => {
                    Next::Running(d.run_before_commit(t.clone(), slot))
                }
                Some(slot) => Next::RunAfterCommit(slot),
                None => {
                    // From now on new tasks must not overtake this one.
                    d.queued();
                    Next::Queue
                }
            })
            .collect();
        Self { dispatch, next }
    }

    /// The insert answered `inserted`, in the order of the tasks given to [`Self::begin`]:
    /// running attempts may write, keyed tasks start, and a slot whose task was not created
    /// (an earlier task with the same key answered) goes back.
    pub fn committed(self, inserted: &[Inserted]) {
        for (i, next) in inserted.iter().zip(self.next) {
            match (next, self.dispatch) {
                (Next::Running(gate), _) => gate.settle(&i.task),
                (Next::RunAfterCommit(slot), Some(d)) if i.created => d.run(i.task.clone(), slot),
                // Queued by the group commit, or not created: a slot taken drops here.
                _ => {}
            }
        }
    }
}
