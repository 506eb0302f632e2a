//! Named queues in the database (seed 000's TaskQueueRepository): their configuration, the
//! operator's paused flag (shared by every instance, kept across restarts) and per-queue
//! statistics.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{StoreError, TaskStats};
use crate::domain::{QueueKind, QueueName, Task};
use crate::queue::QueueSpec;

/// A queue as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// Its name.
    pub name: QueueName,
    /// FIFO, priority or rate-limited.
    pub kind: QueueKind,
    /// The configured rate of a rate-limited queue, as written in `QUEUES`.
    pub rate: Option<String>,
    /// Tasks of this queue one instance runs at once.
    pub concurrency: u32,
    /// Paused queues are not popped; their tasks wait.
    pub paused: bool,
    /// Last change of configuration or paused flag.
    pub updated_at: DateTime<Utc>,
}

/// Storage of named queues.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Writes the configured queues (type, rate, concurrency), keeping each one's paused flag;
    /// new queues start unpaused. Returns every stored queue.
    async fn sync_queues(
        &self,
        specs: &[QueueSpec],
        now: DateTime<Utc>,
    ) -> Result<Vec<QueueRecord>, StoreError>;

    /// One queue by name (seed: find_by_id).
    async fn find_queue(&self, name: QueueName) -> Result<Option<QueueRecord>, StoreError>;

    /// Every stored queue, by name.
    async fn list_queues(&self) -> Result<Vec<QueueRecord>, StoreError>;

    /// Queues of one type (seed: find_by_type).
    async fn find_queues_by_type(&self, kind: QueueKind) -> Result<Vec<QueueRecord>, StoreError>;

    /// Queues that are not paused (seed: find_active_queues).
    async fn find_active_queues(&self) -> Result<Vec<QueueRecord>, StoreError>;

    /// Pauses or resumes a queue. Returns false when there is no such queue.
    async fn set_queue_paused(
        &self,
        name: QueueName,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Counts per status and queue, and mean wait and processing times per queue of (up to
    /// 10,000 of) the tasks created since `since` that have finished (seed: get_queue_stats).
    async fn queue_task_stats(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(QueueName, TaskStats)>, StoreError>;

    /// Processing tasks of `queue` whose lease ended before `now` (seed: find_expired_tasks);
    /// the reaper requeues them.
    async fn find_expired_tasks(
        &self,
        queue: QueueName,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;
}

/// A `task_queues` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct QueueRow {
    name: String,
    queue_type: String,
    rate: Option<String>,
    concurrency: i32,
    paused: bool,
    updated_at: DateTime<Utc>,
}

/// The columns of [`QueueRow`].
pub(crate) const QUEUE_COLUMNS: &str = "name, queue_type, rate, concurrency, paused, updated_at";

impl TryFrom<QueueRow> for QueueRecord {
    type Error = StoreError;
    fn try_from(r: QueueRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("queue {}: bad {what}", r.name));
        Ok(Self {
            name: QueueName::parse(&r.name).map_err(|_| corrupt("name"))?,
            kind: r.queue_type.parse().map_err(|_| corrupt("queue_type"))?,
            rate: r.rate.clone(),
            concurrency: u32::try_from(r.concurrency).map_err(|_| corrupt("concurrency"))?,
            paused: r.paused,
            updated_at: r.updated_at,
        })
    }
}

/// Converts rows, failing on the first corrupt one.
pub(crate) fn into_records(rows: Vec<QueueRow>) -> Result<Vec<QueueRecord>, StoreError> {
    rows.into_iter().map(QueueRecord::try_from).collect()
}

/// A finished task's queue, creation, start and finish times.
pub(crate) type FinishedTimes = (String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);

/// Sums per-status counts and finished tasks' times into per-queue statistics.
pub(crate) fn fold_stats(
    counts: Vec<(String, String, i64)>,
    times: Vec<FinishedTimes>,
) -> Result<Vec<(QueueName, TaskStats)>, StoreError> {
    let mut out: Vec<(QueueName, TaskStats)> = Vec::new();
    fn entry(out: &mut Vec<(QueueName, TaskStats)>, q: QueueName) -> &mut TaskStats {
        let i = match out.iter().position(|(n, _)| *n == q) {
            Some(i) => i,
            None => {
                out.push((q, TaskStats::default()));
                out.len() - 1
            }
        };
        &mut out[i].1
    }
    let name =
        |q: &str| QueueName::parse(q).map_err(|_| StoreError::Corrupt(format!("task queue {q:?}")));
    for (queue, status, n) in counts {
        let s = entry(&mut out, name(&queue)?);
        let n = u64::try_from(n).unwrap_or(0);
        match status.as_str() {
            "pending" => s.pending = n,
            "processing" => s.processing = n,
            "completed" => s.completed = n,
            "failed" => s.failed = n,
            "cancelled" => s.cancelled = n,
            _ => {}
        }
    }
    let ms = |d: chrono::TimeDelta| d.num_milliseconds().max(0) as u64;
    let mut sums: Vec<(QueueName, u64, u64, u64)> = Vec::new();
    for (queue, created, started, finished) in times {
        let q = name(&queue)?;
        let i = match sums.iter().position(|(n, ..)| *n == q) {
            Some(i) => i,
            None => {
                sums.push((q, 0, 0, 0));
                sums.len() - 1
            }
        };
        sums[i].1 += ms(started - created);
        sums[i].2 += ms(finished - started);
        sums[i].3 += 1;
    }
    for (q, wait, busy, n) in sums {
        let s = entry(&mut out, q);
        s.average_wait_ms = wait / n;
        s.average_processing_ms = busy / n;
        s.sample_size = n;
    }
    out.sort_by_key(|(q, _)| *q);
    Ok(out)
}
