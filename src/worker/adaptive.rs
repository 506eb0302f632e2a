//! The adaptive pool (seeds 001 and 003): the number of tasks this instance runs at once moves
//! between `WORKER_POOL_MIN` and `WORKER_POOL_SIZE`, up while work waits and the machine has
//! room (CPU below 70 %, memory below 80 %), down while either is above and the pool is using
//! its whole limit.
//!
//! Only a limit the pool reaches is lowered: when fewer tasks run than it allows, the running
//! tasks are not what loads the machine (submits, the database, other processes are), and a
//! lower limit would only shrink claim batches, costing more round trips per task for the same
//! work. Measured: lowering it regardless took a 2-core benchmark of sub-millisecond tasks from
//! ~5,000 to ~800 tasks/s while the CPU stayed busy.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::load::LoadSource;
use super::slots::Slots;
use crate::queue::TaskQueue;

/// Above this CPU busy share the limit shrinks (seed 003: keep CPU at 70 % or less).
pub const CPU_HIGH: f64 = 0.70;
/// Above this memory share the limit shrinks (seed 003: keep memory at 80 % or less).
pub const MEMORY_HIGH: f64 = 0.80;

/// One reading of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Tasks are waiting in the queue.
    pub queued: bool,
    /// The pool ran as many tasks as its limit allows at some point since the last reading.
    pub saturated: bool,
    /// CPU busy share (0.0-1.0), `None` when unknown.
    pub cpu: Option<f64>,
    /// Memory in use (0.0-1.0), `None` when unknown.
    pub memory: Option<f64>,
}

/// The next limit: a tenth of the range (at least 1) down when CPU or memory is over its mark
/// and the pool reached its limit, a tenth up when work waits and both are under (an unknown
/// reading counts as under), else unchanged; always within `min..=max`.
pub fn next_limit(current: usize, min: usize, max: usize, load: Load) -> usize {
    let step = (max.saturating_sub(min) / 10).max(1);
    let hot =
        load.cpu.is_some_and(|c| c > CPU_HIGH) || load.memory.is_some_and(|m| m > MEMORY_HIGH);
    let next = if hot && load.saturated {
        current.saturating_sub(step)
    } else if hot {
        current
    } else if load.queued {
        current.saturating_add(step)
    } else {
        current
    };
    next.clamp(min, max)
}

/// Samples the load every `interval` and moves the pool's limit.
pub struct AdaptiveLimit<L> {
    slots: Arc<Slots>,
    queue: Arc<dyn TaskQueue>,
    source: L,
    interval: Duration,
}

impl<L: LoadSource> AdaptiveLimit<L> {
    /// Steers `slots` by `source`, with the queue's length as the "work waits" signal.
    pub fn new(
        slots: Arc<Slots>,
        queue: Arc<dyn TaskQueue>,
        source: L,
        interval: Duration,
    ) -> Self {
        Self {
            slots,
            queue,
            source,
            interval,
        }
    }

    /// One step; returns the new limit.
    pub async fn step(&mut self) -> usize {
        let (cpu, memory) = self.source.sample();
        // An unreachable queue says nothing about waiting work: hold the size.
        let queued = self.queue.len().await.map(|n| n > 0).unwrap_or(false);
        let (min, max) = self.slots.bounds();
        let current = self.slots.limit();
        let load = Load {
            queued,
            saturated: self.slots.take_saturated(),
            cpu,
            memory,
        };
        let next = next_limit(current, min, max, load);
        if next != current {
            tracing::debug!(
                from = current,
                to = next,
                ?cpu,
                ?memory,
                queued,
                "worker limit changed"
            );
            self.slots.set_limit(next);
        }
        next
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // The first CPU reading needs a previous one.
        let _ = self.source.sample();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
            self.step().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{MemoryQueue, QueueEntry, QueueSet, QueueStates};
    use crate::worker::slots::SlotGuard;

    fn load(queued: bool, cpu: Option<f64>, memory: Option<f64>) -> Load {
        Load {
            queued,
            saturated: true,
            cpu,
            memory,
        }
    }

    #[test]
    fn grows_with_work_and_room_shrinks_when_hot() {
        // Range 1..=10: step 1.
        assert_eq!(next_limit(5, 1, 10, load(true, Some(0.5), Some(0.5))), 6);
        assert_eq!(next_limit(10, 1, 10, load(true, Some(0.1), Some(0.1))), 10);
        assert_eq!(
            next_limit(5, 1, 10, load(false, Some(0.1), Some(0.1))),
            5,
            "no work"
        );
        assert_eq!(
            next_limit(5, 1, 10, load(true, Some(0.71), Some(0.1))),
            4,
            "CPU"
        );
        assert_eq!(
            next_limit(5, 1, 10, load(false, Some(0.1), Some(0.81))),
            4,
            "memory"
        );
        assert_eq!(
            next_limit(1, 1, 10, load(true, Some(0.99), None)),
            1,
            "floor"
        );
        assert_eq!(
            next_limit(5, 1, 10, load(true, Some(0.70), Some(0.80))),
            6,
            "at the marks"
        );
        // Unknown readings (non-Linux) count as fine.
        assert_eq!(next_limit(5, 1, 10, load(true, None, None)), 6);
        // Range 10..=1000: a tenth of it.
        assert_eq!(next_limit(1000, 10, 1000, load(true, Some(0.9), None)), 901);
        assert_eq!(next_limit(50, 10, 1000, load(true, Some(0.9), None)), 10);
        assert_eq!(
            next_limit(3, 5, 10, load(false, None, None)),
            5,
            "clamped up"
        );
        // A limit the pool does not reach is not what loads the machine: kept.
        let unused = Load {
            saturated: false,
            ..load(true, Some(0.95), Some(0.9))
        };
        assert_eq!(next_limit(1000, 1, 1000, unused), 1000);
    }

    struct Fixed(Option<f64>, Option<f64>);
    impl LoadSource for Fixed {
        fn sample(&mut self) -> (Option<f64>, Option<f64>) {
            (self.0, self.1)
        }
    }

    #[tokio::test]
    async fn loop_moves_the_limit_and_stops_on_shutdown() {
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
        let states = QueueStates::new(QueueSet::single(4));
        let slots = Slots::new(&states, 1, 4, true);
        let hot = AdaptiveLimit::new(
            slots.clone(),
            queue.clone(),
            Fixed(Some(0.95), None),
            Duration::from_millis(5),
        );
        let shutdown = CancellationToken::new();
        // Hot, but nothing runs: the limit is not what loads the machine; it stays.
        let mut idle = AdaptiveLimit::new(
            slots.clone(),
            queue.clone(),
            Fixed(Some(0.95), None),
            Duration::ZERO,
        );
        assert_eq!(idle.step().await, 4);
        // Busy: every slot taken, as long as the limit allows.
        let busy: Vec<_> = (0..4).map(|_| SlotGuard::take(slots.clone(), 0)).collect();
        let task = tokio::spawn(hot.run(shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while slots.limit() > 1 {
            assert!(tokio::time::Instant::now() < deadline, "did not shrink");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
        drop(busy);

        // Cool machine and waiting work: back up to the ceiling.
        queue
            .push(&[QueueEntry::new(
                crate::domain::TaskId::new(),
                crate::domain::Priority::NORMAL,
            )])
            .await
            .unwrap();
        let mut cool = AdaptiveLimit::new(
            slots.clone(),
            queue,
            Fixed(Some(0.1), Some(0.1)),
            Duration::ZERO,
        );
        for want in [2, 3, 4, 4] {
            assert_eq!(cool.step().await, want);
        }
    }
}
