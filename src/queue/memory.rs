//! In-process queue for embedded mode: one ready set and one delayed set per named queue.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{
    LevelDepth, PopRequest, Popped, Promoted, QueueEntry, QueueError, QueueSet, QueueSpec,
    TaskQueue, allocate,
};
use crate::domain::{Priority, PriorityLevel, QueueName, TaskId};
use crate::ratelimit::gcra_take;

/// Ready order: priority descending (stored as 10 - priority), then push sequence.
type ReadyKey = (u8, u64, TaskId);

/// One named queue's entries.
struct Lane {
    spec: QueueSpec,
    /// Ids in pop order.
    ready: BTreeSet<ReadyKey>,
    /// Ready ids by the first element of their key (10 - priority), for cheap depth reports.
    ready_by_key: [u64; 10],
    /// Delayed ids by due time.
    delayed: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// GCRA state of a rate-limited queue: theoretical arrival time, µs since the epoch.
    tat_us: u64,
}

struct State {
    lanes: Vec<Lane>,
    /// Lane and key of each ready id, for de-duplication and removal.
    ready_index: HashMap<TaskId, (usize, ReadyKey)>,
    /// Lane, due time and priority of each delayed id.
    delayed_index: HashMap<TaskId, (usize, DateTime<Utc>, Priority)>,
    /// Next push sequence number: FIFO within a priority.
    seq: u64,
}

impl State {
    /// Queues `id` unless it is queued already; returns whether it was added.
    fn make_ready(&mut self, lane_index: usize, id: TaskId, priority: Priority) -> bool {
        let lane = lane_index;
        if self.ready_index.contains_key(&id) {
            return false;
        }
        self.seq += 1;
        let prio = self.lanes[lane].spec.effective_priority(priority);
        let key = (Priority::MAX.value() - prio, self.seq, id);
        let lane = &mut self.lanes[lane];
        lane.ready.insert(key);
        lane.ready_by_key[usize::from(key.0)] += 1;
        self.ready_index.insert(id, (lane_index, key));
        true
    }

    /// Takes what `requests` may have now; also returns how long until a rate-limited queue
    /// with ready work may give one, if that is what held it back.
    fn take(
        &mut self,
        set: &QueueSet,
        requests: &[PopRequest],
        total: usize,
        now_us: u64,
    ) -> (Vec<Popped>, Option<Duration>) {
        let mut hint: Option<Duration> = None;
        let lanes: Vec<Option<usize>> = requests.iter().map(|r| set.index_of(r.queue)).collect();
        let available: Vec<usize> = requests
            .iter()
            .zip(&lanes)
            .map(|(r, lane)| {
                let Some(lane) = lane.map(|i| &self.lanes[i]) else {
                    return 0;
                };
                let mut n = r.max.min(lane.ready.len());
                if let Some(rate) = lane.spec.rate
                    && n > 0
                {
                    let (granted, _, wait) = gcra_take(now_us, lane.tat_us, rate, n as u64);
                    n = granted as usize;
                    if n == 0 {
                        let wait = Duration::from_micros(wait);
                        hint = Some(hint.map_or(wait, |h| h.min(wait)));
                    }
                }
                n
            })
            .collect();
        let shares = allocate(total, &available);
        let mut out = Vec::with_capacity(shares.iter().sum());
        for ((lane, share), r) in lanes.iter().zip(shares).zip(requests) {
            let (Some(i), true) = (lane, share > 0) else {
                continue;
            };
            let lane = &mut self.lanes[*i];
            if let Some(rate) = lane.spec.rate {
                lane.tat_us = gcra_take(now_us, lane.tat_us, rate, share as u64).1;
            }
            for _ in 0..share {
                let Some(key) = lane.ready.pop_first() else {
                    break;
                };
                lane.ready_by_key[usize::from(key.0)] -= 1;
                self.ready_index.remove(&key.2);
                out.push(Popped {
                    queue: r.queue,
                    task_id: key.2,
                });
            }
        }
        (out, hint)
    }
}

/// Named queues in this process's memory. Lost on exit; the reconciler rebuilds them from the
/// database at start.
pub struct MemoryQueue {
    set: QueueSet,
    /// All entries behind one lock: every operation is a few map updates.
    state: Mutex<State>,
    /// Wakes poppers waiting for work.
    available: Notify,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// One priority queue, `default`.
    pub fn new() -> Self {
        Self::with_queues(QueueSet::single(1))
    }

    /// The queues of `set`.
    pub fn with_queues(set: QueueSet) -> Self {
        let lanes = set
            .specs()
            .iter()
            .map(|spec| Lane {
                spec: spec.clone(),
                ready: BTreeSet::new(),
                ready_by_key: [0; 10],
                delayed: BTreeSet::new(),
                tat_us: 0,
            })
            .collect();
        Self {
            set,
            state: Mutex::new(State {
                lanes,
                ready_index: HashMap::new(),
                delayed_index: HashMap::new(),
                seq: 0,
            }),
            available: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain maps behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_us() -> u64 {
    u64::try_from(crate::clock::now().timestamp_micros()).unwrap_or(0)
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn push(&self, entries: &[QueueEntry]) -> Result<u64, QueueError> {
        let mut added = 0;
        {
            let mut st = self.lock();
            for e in entries {
                added += u64::from(st.make_ready(self.set.lane_of(e.queue), e.task_id, e.priority));
            }
        }
        self.available.notify_waiters();
        Ok(added)
    }

    async fn push_delayed(
        &self,
        entries: &[QueueEntry],
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        for e in entries {
            let lane = self.set.lane_of(e.queue);
            if let Some((old_lane, old_due, _)) =
                st.delayed_index.insert(e.task_id, (lane, due, e.priority))
            {
                st.lanes[old_lane].delayed.remove(&(old_due, e.task_id));
            }
            st.lanes[lane].delayed.insert((due, e.task_id));
        }
        Ok(())
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError> {
        let promoted = {
            let mut st = self.lock();
            let mut moved = 0;
            let mut next_due: Option<DateTime<Utc>> = None;
            for lane in 0..st.lanes.len() {
                while let Some(&(due, id)) = st.lanes[lane].delayed.first() {
                    if due > now {
                        next_due = Some(next_due.map_or(due, |n| n.min(due)));
                        break;
                    }
                    st.lanes[lane].delayed.pop_first();
                    if let Some((_, _, priority)) = st.delayed_index.remove(&id) {
                        st.make_ready(lane, id, priority);
                        moved += 1;
                    }
                }
            }
            Promoted { moved, next_due }
        };
        if promoted.moved > 0 {
            self.available.notify_waiters();
        }
        Ok(promoted)
    }

    async fn pop_from(
        &self,
        requests: &[PopRequest],
        total: usize,
        wait: Duration,
    ) -> Result<Vec<Popped>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait is seen.
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (popped, hint) = self.lock().take(&self.set, requests, total, now_us());
            if !popped.is_empty() {
                return Ok(popped);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // A rate-limited queue with work is looked at again when its next start is due.
            let until = hint.map_or(deadline, |h| deadline.min(now + h));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn remove(&self, id: TaskId) -> Result<bool, QueueError> {
        let mut st = self.lock();
        let mut found = false;
        if let Some((lane, key)) = st.ready_index.remove(&id) {
            st.lanes[lane].ready.remove(&key);
            st.lanes[lane].ready_by_key[usize::from(key.0)] -= 1;
            found = true;
        }
        if let Some((lane, due, _)) = st.delayed_index.remove(&id) {
            st.lanes[lane].delayed.remove(&(due, id));
            found = true;
        }
        Ok(found)
    }

    async fn len(&self) -> Result<u64, QueueError> {
        let st = self.lock();
        Ok((st.ready_index.len() + st.delayed_index.len()) as u64)
    }

    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        let st = self.lock();
        Ok(self.set.index_of(queue).map_or(0, |i| {
            (st.lanes[i].ready.len() + st.lanes[i].delayed.len()) as u64
        }))
    }

    async fn depth_by_level(&self, queue: QueueName) -> Result<LevelDepth, QueueError> {
        let st = self.lock();
        let mut depth = LevelDepth::default();
        if let Some(lane) = self.set.index_of(queue).map(|i| &st.lanes[i]) {
            for (key, n) in lane.ready_by_key.iter().enumerate() {
                let priority = Priority::MAX.value() - key as u8;
                depth.ready[PriorityLevel::of(priority).index()] += n;
            }
            depth.delayed = lane.delayed.len() as u64;
        }
        Ok(depth)
    }

    fn queues(&self) -> &QueueSet {
        &self.set
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
