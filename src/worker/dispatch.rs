//! Direct dispatch: a task submitted while this instance has a free slot for it, and nothing
//! waits in the queue, starts at once, claimed by the insert that stores it.
//!
//! Through the queue a task costs a push, a pop and a claim transaction before it runs. When the
//! pool's last pop found the queue drained and a slot of the task's queue is free, there is
//! nothing the task could overtake, so the submit inserts it as `processing` under this pool's
//! worker id with a lease (its `TaskCreated` and `TaskStarted` events in the same write) and,
//! after the commit, hands it to the pool. Everything else about the attempt is as for a
//! claimed task: the lease, heartbeats, cancellation, the outcome's compare-and-set, and
//! hand-back or the reaper when the pool stops or dies before the outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::slots::{SlotGuard, Slots};
use crate::domain::{Task, WorkerId};
use crate::queue::QueueStates;

/// A task started by its submit, with the slot it runs in.
pub struct Dispatched {
    /// The task as stored: `processing` under the pool's worker.
    pub task: Task,
    /// Its slot, freed when the attempt ends.
    pub slot: SlotGuard,
}

/// Decides which new tasks skip the queue and hands them to the pool.
pub struct Dispatch {
    worker: WorkerId,
    lease: Duration,
    slots: Arc<Slots>,
    states: Arc<QueueStates>,
    /// Whether nothing waits in the queue, as far as this instance knows: the pool's last pop
    /// took fewer ids than it asked for, and no submit has queued a task since.
    drained: AtomicBool,
    to_pool: mpsc::UnboundedSender<Dispatched>,
}

impl Dispatch {
    /// Dispatch for the pool `worker` running within `slots` over the queues of `states`, whose
    /// claims hold a task for `lease`. The pool runs what arrives on the receiver (see
    /// [`WorkerPool::with_dispatch`](super::WorkerPool::with_dispatch)).
    pub fn new(
        worker: WorkerId,
        lease: Duration,
        slots: Arc<Slots>,
        states: Arc<QueueStates>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Dispatched>) {
        let (to_pool, rx) = mpsc::unbounded_channel();
        let dispatch = Self {
            worker,
            lease,
            slots,
            states,
            drained: AtomicBool::new(false),
            to_pool,
        };
        (Arc::new(dispatch), rx)
    }

    /// Starts `task` (still to be inserted) here if it may skip the queue: takes a slot of its
    /// queue and moves it to `processing` under the pool's worker. `None` leaves it pending.
    pub fn try_start(&self, task: &mut Task, now: DateTime<Utc>) -> Option<SlotGuard> {
        if !self.drained.load(Ordering::Relaxed) || self.to_pool.is_closed() || task.run_after > now
        {
            return None;
        }
        let set = self.states.set();
        let lane = set.lane_of(task.queue);
        let spec = &set.specs()[lane];
        // A rate-limited queue paces its starts across instances: only its pop may start one.
        if spec.rate.is_some() || self.states.is_paused(lane) {
            return None;
        }
        let slot = SlotGuard::try_take(self.slots.clone(), lane, spec.concurrency)?;
        task.start(self.worker.clone(), now + self.lease, now)
            .ok()?;
        Some(slot)
    }

    /// Hands a task started by [`Self::try_start`], now committed, to the pool.
    pub fn run(&self, task: Task, slot: SlotGuard) {
        let id = task.id;
        if self.to_pool.send(Dispatched { task, slot }).is_err() {
            // The pool has stopped; its hand-back or, failing that, the reaper requeues it.
            tracing::warn!(task_id = %id, "pool stopped before a dispatched task could run");
        }
    }

    /// A submit put tasks in the queue: until the pool drains it again, new tasks queue too.
    pub fn queued(&self) {
        self.drained.store(false, Ordering::Relaxed);
    }

    /// The pool asked the queue for `asked` ids and got `got`.
    pub(super) fn popped(&self, asked: usize, got: usize) {
        self.drained.store(got < asked, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::{QueueKind, QueueName, TaskStatus};
    use crate::queue::{QueueSet, QueueSpec};
    use crate::ratelimit::Rate;

    fn dispatch(set: QueueSet, limit: usize) -> (Arc<Dispatch>, Arc<QueueStates>) {
        let states = Arc::new(QueueStates::new(set));
        let slots = Slots::new(&states, limit, limit, false);
        let worker = WorkerId::generate("test");
        let (d, rx) = Dispatch::new(worker, Duration::from_secs(30), slots, states.clone());
        // Keep the pool's end open for the test's lifetime.
        std::mem::forget(rx);
        (d, states)
    }

    #[test]
    fn starts_only_when_the_queue_was_drained_and_a_slot_is_free() {
        let (d, _) = dispatch(QueueSet::single(2), 2);
        // After every test task's creation (a task is not due before it was created).
        let now = Utc::now() + chrono::Duration::seconds(1);
        let mut t = Task::echo_for_test("u1");
        assert!(
            d.try_start(&mut t, now).is_none(),
            "no pop has drained the queue yet"
        );
        assert_eq!(t.status, TaskStatus::Pending);

        d.popped(4, 1);
        let a = d.try_start(&mut t, now).expect("drained, slot free");
        assert_eq!(t.status, TaskStatus::Processing);
        assert_eq!((t.attempts, t.started_at), (1, Some(now)));
        assert_eq!(t.lease_expires_at, Some(now + Duration::from_secs(30)));
        let _b = d
            .try_start(&mut Task::echo_for_test("u1"), now)
            .expect("second slot");
        assert!(
            d.try_start(&mut Task::echo_for_test("u1"), now).is_none(),
            "no slot left"
        );
        drop(a);
        d.queued();
        assert!(
            d.try_start(&mut Task::echo_for_test("u1"), now).is_none(),
            "a task waits in the queue: the new one must not overtake it"
        );
        d.popped(4, 4);
        assert!(
            d.try_start(&mut Task::echo_for_test("u1"), now).is_none(),
            "the last pop was full"
        );
    }

    #[test]
    fn paused_and_rate_limited_queues_and_later_runs_go_through_the_queue() {
        let specs = vec![
            QueueSpec::default_queue(4),
            QueueSpec {
                name: QueueName::parse("paced").unwrap(),
                kind: QueueKind::RateLimited,
                rate: Some(Rate {
                    count: 5,
                    period: Duration::from_secs(1),
                    burst: 1,
                }),
                concurrency: 4,
            },
        ];
        let (d, states) = dispatch(QueueSet::new(specs, HashMap::new()).unwrap(), 4);
        // After every test task's creation (a task is not due before it was created).
        let now = Utc::now() + chrono::Duration::seconds(1);
        d.popped(1, 0);

        let mut paced = Task::echo_for_test("u1");
        paced.queue = QueueName::parse("paced").unwrap();
        assert!(d.try_start(&mut paced, now).is_none(), "rate-limited queue");

        let mut later = Task::echo_for_test("u1");
        later.run_after = now + chrono::Duration::seconds(5);
        assert!(d.try_start(&mut later, now).is_none(), "not due yet");

        states.set_paused(QueueName::default_queue(), true);
        assert!(
            d.try_start(&mut Task::echo_for_test("u1"), now).is_none(),
            "paused queue"
        );
        states.set_paused(QueueName::default_queue(), false);
        assert!(d.try_start(&mut Task::echo_for_test("u1"), now).is_some());
    }
}
