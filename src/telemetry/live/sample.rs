//! What each instance publishes once a second for the others to add up: its cumulative
//! counters since it started (never per-second figures, so a late or missed publish loses
//! nothing: the next one carries it) and its worker pool now.

use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;

/// One instance's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSample {
    /// The instance's worker pool id (its row in the `workers` table).
    pub instance: String,
    /// Changes at every start, so a restarted instance's counters are not read as going back.
    pub boot: u64,
    /// When the instance started, unix milliseconds.
    pub started_ms: i64,
    /// When this sample was taken, unix milliseconds.
    pub at_ms: i64,
    /// Task counters per queue and type since the start.
    pub series: Vec<SeriesTotals>,
    /// Provider calls since the start.
    pub providers: Vec<ProviderTotals>,
    /// The worker pool now.
    pub pool: PoolFigures,
}

/// Task counters of one queue and task type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesTotals {
    /// The queue.
    pub queue: String,
    /// The task type.
    pub task_type: String,
    /// Tasks accepted.
    pub submitted: u64,
    /// Attempts that completed their task.
    pub completed: u64,
    /// Attempts that failed their task for good (dead letters).
    pub failed: u64,
    /// Attempts that will run again.
    pub retried: u64,
    /// Latency of completed and failed tasks: from submit (or a retry falling due) to the end
    /// of the attempt.
    pub latency: LatencyHistogram,
}

/// Calls to one provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderTotals {
    /// The provider.
    pub provider: String,
    /// Calls made (skips by breaker or rate limit excluded).
    pub calls: u64,
    /// Calls answered successfully.
    pub ok: u64,
    /// Sum of the calls' latencies, milliseconds.
    pub latency_ms: u64,
    /// Money spent, micro-dollars.
    pub cost_micros: u64,
}

/// A worker pool's size and load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFigures {
    /// Its ceiling (`WORKER_POOL_SIZE`).
    pub slots: u64,
    /// Its current limit (adaptive, or the ceiling).
    pub limit: u64,
    /// Tasks running now.
    pub busy: u64,
    /// Whether the limit follows the load.
    pub adaptive: bool,
}
