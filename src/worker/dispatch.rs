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
//!
//! A task that can only be new (no idempotency key, so its fresh id cannot match a stored row)
//! goes to the pool before its insert commits, with a [`CommitGate`]: its provider call runs
//! while the transaction commits, and the attempt writes nothing (no outcome, no progress, no
//! lease renewal) until the gate opens. The commit takes 0.5-3 ms; a provider call takes tens to
//! thousands, so the call's latency hides the commit's. A submit still answers only after its
//! commit, and a result is stored only for a stored task. If the insert fails, the gate drops
//! and the call is abandoned mid-flight (its spend, if the provider bills it, is recorded).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::slots::{SlotGuard, Slots};
use crate::domain::{Task, TaskId, TaskStatus, WorkerId};
use crate::queue::QueueStates;

/// A task started by its submit, with the slot it runs in.
pub struct Dispatched {
    /// The task as stored: `processing` under the pool's worker.
    pub task: Task,
    /// Its slot, freed when the attempt ends.
    pub slot: SlotGuard,
    /// For a task handed over before its insert committed: resolves once it has; an error
    /// means the task was not stored and the attempt must stop.
    pub committed: Option<oneshot::Receiver<()>>,
}

/// Lets an attempt started before its task's insert committed go on to write (see the module
/// docs). Dropping it unsettled stops the attempt.
#[must_use = "dropping the gate stops the attempt"]
pub struct CommitGate {
    open: oneshot::Sender<()>,
    /// The attempt the pool runs: the task, its attempt number and the pool's worker.
    task: TaskId,
    attempt: u32,
    worker: WorkerId,
}

impl CommitGate {
    /// The insert answered `stored` for the gate's task: lets the attempt go on if that is the
    /// attempt the pool runs (created now, or by an earlier try of the same commit whose
    /// answer was lost), else stops it.
    pub fn settle(self, stored: &Task) {
        let runs = stored.id == self.task
            && stored.status == TaskStatus::Processing
            && stored.worker_id.as_ref() == Some(&self.worker)
            && stored.attempts == self.attempt;
        if runs {
            // The attempt may have ended already (shutdown past its grace); nothing to tell.
            let _ = self.open.send(());
        }
    }
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
        self.hand_over(task, slot, None);
    }

    /// Hands a task started by [`Self::try_start`] to the pool before its insert commits: its
    /// call starts now, its writes wait for the returned gate. Only for a task without an
    /// idempotency key, which the insert cannot answer with another task.
    pub fn run_before_commit(&self, task: Task, slot: SlotGuard) -> CommitGate {
        let (open, committed) = oneshot::channel();
        let gate = CommitGate {
            open,
            task: task.id,
            attempt: task.attempts,
            worker: self.worker.clone(),
        };
        self.hand_over(task, slot, Some(committed));
        gate
    }

    fn hand_over(&self, task: Task, slot: SlotGuard, committed: Option<oneshot::Receiver<()>>) {
        let id = task.id;
        let dispatched = Dispatched {
            task,
            slot,
            committed,
        };
        if self.to_pool.send(dispatched).is_err() {
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

    /// A dispatch over `set`, its queue states and the pool's end of its channel (dropping
    /// that closes it).
    fn dispatch(
        set: QueueSet,
        limit: usize,
    ) -> (
        Arc<Dispatch>,
        Arc<QueueStates>,
        mpsc::UnboundedReceiver<Dispatched>,
    ) {
        let states = Arc::new(QueueStates::new(set));
        let slots = Slots::new(&states, limit, limit, false);
        let worker = WorkerId::generate("test");
        let (d, rx) = Dispatch::new(worker, Duration::from_secs(30), slots, states.clone());
        (d, states, rx)
    }

    #[test]
    fn starts_only_when_the_queue_was_drained_and_a_slot_is_free() {
        let (d, _, _pool) = dispatch(QueueSet::single(2), 2);
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

    /// A task handed over before its commit runs on only if the insert answered that very
    /// attempt: stored now, or by an earlier try of the same commit.
    #[test]
    fn a_commit_gate_opens_only_for_the_attempt_it_started() {
        let (d, _, mut pool) = dispatch(QueueSet::single(8), 8);
        d.popped(4, 0);
        let now = Utc::now() + chrono::Duration::seconds(1);
        let mut attempt = |change: &dyn Fn(&mut Task)| {
            let mut task = Task::echo_for_test("u1");
            let slot = d.try_start(&mut task, now).expect("a slot");
            let gate = d.run_before_commit(task.clone(), slot);
            let mut committed = pool.try_recv().unwrap().committed.expect("a gate");
            let mut stored = task;
            change(&mut stored);
            gate.settle(&stored);
            committed.try_recv().is_ok()
        };
        assert!(attempt(&|_| {}), "stored as started");
        assert!(!attempt(&|t| t.id = TaskId::new()), "another task");
        assert!(!attempt(&|t| t.status = TaskStatus::Pending), "not started");
        assert!(
            !attempt(&|t| t.worker_id = Some(WorkerId::generate("other"))),
            "another pool"
        );
        assert!(!attempt(&|t| t.attempts += 1), "a later attempt");
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
        let (d, states, _pool) = dispatch(QueueSet::new(specs, HashMap::new()).unwrap(), 4);
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
