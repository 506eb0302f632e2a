//! The pool's slots: how many tasks run now, in total and per queue, against the adaptive
//! limit and each queue's concurrency, and which queues the next pop may take from.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::domain::QueueName;
use crate::queue::{PopRequest, QueueStates};

/// Running tasks and the current limit.
#[derive(Debug, Clone)]
struct Counts {
    /// Tasks this instance may run at once now (the adaptive limit).
    limit: usize,
    /// Tasks running now.
    running: usize,
    /// Tasks running now, per queue (in the order of the configured queues).
    per_queue: Vec<usize>,
    /// Whether running tasks reached the limit since the adaptive loop last asked.
    saturated: bool,
}

impl Counts {
    /// One more task of the queue at `lane` running.
    fn count_in(&mut self, lane: usize) {
        self.running += 1;
        self.per_queue[lane] += 1;
        if self.running >= self.limit {
            self.saturated = true;
        }
    }
}

/// What the pool is doing, for the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// The current limit on tasks run at once.
    pub limit: usize,
    /// Its floor (`WORKER_POOL_MIN`).
    pub min: usize,
    /// Its ceiling (`WORKER_POOL_SIZE`).
    pub max: usize,
    /// Whether the limit follows the load (`ADAPTIVE_POOL`).
    pub adaptive: bool,
    /// Tasks running now on this instance.
    pub running: usize,
    /// Tasks running now per queue.
    pub per_queue: Vec<(QueueName, usize)>,
}

/// Slot accounting shared by the pool's claim loop, its running tasks and the statistics.
pub struct Slots {
    counts: Mutex<Counts>,
    /// Rung when a slot frees up or the limit grows.
    freed: Notify,
    min: usize,
    max: usize,
    adaptive: bool,
    names: Vec<QueueName>,
}

impl Slots {
    /// Slots for the queues of `states`, limit between `min` and `max`, starting at `max`.
    pub fn new(states: &QueueStates, min: usize, max: usize, adaptive: bool) -> Arc<Self> {
        let names: Vec<QueueName> = states.set().specs().iter().map(|s| s.name).collect();
        Arc::new(Self {
            counts: Mutex::new(Counts {
                limit: max,
                running: 0,
                per_queue: vec![0; names.len()],
                saturated: false,
            }),
            freed: Notify::new(),
            min: min.min(max),
            max,
            adaptive,
            names,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Sets the limit, clamped to `min..=max`.
    pub fn set_limit(&self, limit: usize) {
        let limit = limit.clamp(self.min, self.max);
        let grew = {
            let mut c = self.lock();
            let grew = limit > c.limit;
            c.limit = limit;
            grew
        };
        if grew {
            self.freed.notify_one();
        }
    }

    /// The limit's floor and ceiling.
    pub fn bounds(&self) -> (usize, usize) {
        (self.min, self.max)
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// The current state.
    pub fn snapshot(&self) -> PoolSnapshot {
        let c = self.lock().clone();
        PoolSnapshot {
            limit: c.limit,
            min: self.min,
            max: self.max,
            adaptive: self.adaptive,
            running: c.running,
            per_queue: self.names.iter().copied().zip(c.per_queue).collect(),
        }
    }

    /// Which queues the next pop may take from and how much in all, or `None` when no slot is
    /// free. See [`plan`].
    pub fn plan(
        &self,
        states: &QueueStates,
        rotation: usize,
        batch: usize,
    ) -> Option<(Vec<PopRequest>, usize)> {
        let c = self.lock();
        let specs = states.set().specs();
        let open: Vec<Lane> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Lane {
                free: if states.is_paused(i) {
                    0
                } else {
                    s.concurrency.saturating_sub(c.per_queue[i])
                },
                running: c.per_queue[i],
            })
            .collect();
        let (order, total) = plan(c.limit, c.running, &open, rotation, batch)?;
        let requests = order
            .into_iter()
            .map(|i| PopRequest {
                queue: specs[i].name,
                max: open[i].free,
            })
            .collect();
        Some((requests, total))
    }

    /// Counts a task of the queue at `lane` as running.
    pub fn take(&self, lane: usize) {
        self.lock().count_in(lane);
    }

    /// Counts a task of the queue at `lane` as running if a slot is free: under the limit and
    /// under the queue's `concurrency`.
    pub fn try_take(&self, lane: usize, concurrency: usize) -> bool {
        let mut c = self.lock();
        if c.running >= c.limit || c.per_queue[lane] >= concurrency {
            return false;
        }
        c.count_in(lane);
        true
    }

    /// Whether the running tasks reached the limit since the last call (or do now).
    pub fn take_saturated(&self) -> bool {
        let mut c = self.lock();
        let was = c.saturated || c.running >= c.limit;
        c.saturated = false;
        was
    }

    /// Frees a slot taken by [`Self::take`].
    pub fn give_back(&self, lane: usize) {
        {
            let mut c = self.lock();
            c.running = c.running.saturating_sub(1);
            c.per_queue[lane] = c.per_queue[lane].saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// Waits until a slot may have freed up.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// One queue as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// Slots it may still use: its concurrency minus what runs (0 when paused).
    pub free: usize,
    /// Its tasks running now.
    pub running: usize,
}

/// The pop plan: the lanes with free slots, those running the fewest tasks first (so a queue
/// with nothing running gets the first free slot whatever floods the others), ties broken by a
/// rotating start; and how many ids to take in all (free slots under `limit`, at most `batch`).
/// `None` when nothing may be taken.
pub fn plan(
    limit: usize,
    running: usize,
    lanes: &[Lane],
    rotation: usize,
    batch: usize,
) -> Option<(Vec<usize>, usize)> {
    let total = limit.saturating_sub(running).min(batch);
    if total == 0 {
        return None;
    }
    let n = lanes.len();
    let mut order: Vec<usize> = (0..n).filter(|&i| lanes[i].free > 0).collect();
    if order.is_empty() {
        return None;
    }
    order.sort_by_key(|&i| (lanes[i].running, (i + n - rotation % n) % n));
    Some((order, total))
}

/// Frees its slot when the task it belongs to ends, however it ends.
pub struct SlotGuard {
    slots: Arc<Slots>,
    lane: usize,
}

impl SlotGuard {
    /// Takes a slot of the queue at `lane`.
    pub fn take(slots: Arc<Slots>, lane: usize) -> Self {
        slots.take(lane);
        Self { slots, lane }
    }

    /// Takes a slot of the queue at `lane` if one is free (see [`Slots::try_take`]).
    pub fn try_take(slots: Arc<Slots>, lane: usize, concurrency: usize) -> Option<Self> {
        // Built only on success: a guard's drop gives a slot back.
        slots
            .try_take(lane, concurrency)
            .then(|| Self { slots, lane })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.give_back(self.lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(free: usize, running: usize) -> Lane {
        Lane { free, running }
    }

    #[test]
    fn idle_queues_come_first_and_ties_rotate() {
        // Queue 0 floods (many running), queue 1 runs nothing: 1 goes first.
        let lanes = [lane(4, 6), lane(10, 0)];
        assert_eq!(plan(20, 6, &lanes, 0, 256), Some((vec![1, 0], 14)));
        // Equal load: the start rotates.
        let lanes = [lane(5, 0), lane(5, 0), lane(5, 0)];
        assert_eq!(plan(10, 0, &lanes, 0, 256).unwrap().0, vec![0, 1, 2]);
        assert_eq!(plan(10, 0, &lanes, 1, 256).unwrap().0, vec![1, 2, 0]);
        assert_eq!(plan(10, 0, &lanes, 5, 256).unwrap().0, vec![2, 0, 1]);
    }

    #[test]
    fn nothing_to_plan_when_full_paused_or_at_concurrency() {
        let lanes = [lane(3, 0)];
        assert_eq!(plan(4, 4, &lanes, 0, 256), None, "limit reached");
        assert_eq!(plan(4, 5, &lanes, 0, 256), None, "over a shrunk limit");
        assert_eq!(
            plan(4, 0, &[lane(0, 2)], 0, 256),
            None,
            "queue full or paused"
        );
        assert_eq!(
            plan(1000, 0, &lanes, 0, 256).unwrap().1,
            256,
            "one claim batch"
        );
    }

    #[test]
    fn guards_count_and_free_slots() {
        let states = QueueStates::new(crate::queue::QueueSet::single(2));
        let slots = Slots::new(&states, 1, 3, true);
        let (reqs, total) = slots.plan(&states, 0, 256).unwrap();
        assert_eq!((reqs[0].max, total), (2, 3));
        let a = SlotGuard::take(slots.clone(), 0);
        let b = SlotGuard::take(slots.clone(), 0);
        assert!(
            slots.plan(&states, 0, 256).is_none(),
            "queue at its concurrency"
        );
        assert_eq!(slots.snapshot().per_queue[0].1, 2);
        drop(a);
        assert_eq!(slots.plan(&states, 0, 256).unwrap().0[0].max, 1);
        slots.set_limit(0);
        assert_eq!(slots.limit(), 1, "clamped to min");
        assert!(slots.plan(&states, 0, 256).is_none());
        assert!(slots.take_saturated(), "2 running reached the limit of 2");
        drop(b);
        assert_eq!(slots.running(), 0);
        assert!(!slots.take_saturated(), "reset once read");
        states.set_paused(crate::domain::QueueName::default_queue(), true);
        assert!(slots.plan(&states, 0, 256).is_none(), "paused");
    }

    #[test]
    fn try_take_respects_the_limit_and_the_queue_concurrency() {
        let states = QueueStates::new(crate::queue::QueueSet::single(2));
        let slots = Slots::new(&states, 3, 3, false);
        let a = SlotGuard::try_take(slots.clone(), 0, 2).expect("a free slot");
        let _b = SlotGuard::try_take(slots.clone(), 0, 2).expect("a free slot");
        assert!(
            SlotGuard::try_take(slots.clone(), 0, 2).is_none(),
            "queue at its concurrency"
        );
        drop(a);
        let _c = SlotGuard::try_take(slots.clone(), 0, 3).expect("freed");
        let _d = SlotGuard::try_take(slots.clone(), 0, 3).expect("under the limit");
        assert!(
            SlotGuard::try_take(slots.clone(), 0, 10).is_none(),
            "limit reached"
        );
        assert_eq!(slots.running(), 3);
        assert!(slots.take_saturated());
    }
}
