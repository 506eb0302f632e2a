//! Live figures for the operator dashboard: per-instance cumulative counters of tasks and
//! provider calls, fed beside the Prometheus metrics, and the board where each instance
//! publishes them once a second so that any instance can sum the whole cluster.

pub mod board;
mod counters;
mod histogram;
mod sample;

pub use counters::LiveCounters;
pub use histogram::{BOUNDS_MS, LatencyHistogram};
pub use sample::{InstanceSample, PoolFigures, ProviderTotals, SeriesTotals};
