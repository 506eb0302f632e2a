//! Background work: the pool that runs tasks, the scheduler of delayed retries and the
//! reconciler that rebuilds the queue from the database.

mod adaptive;
mod attempt;
mod backoff;
mod direct_start;
mod dispatch;
mod heartbeat;
mod load;
mod pool;
mod progress;
mod queue_sync;
mod reaper;
mod reconciler;
mod running;
mod scheduler;
mod slots;

pub use adaptive::{AdaptiveLimit, CPU_HIGH, Load, MEMORY_HIGH, next_limit};
pub use backoff::retry_delay;
pub use direct_start::DirectStarts;
pub use dispatch::{CommitGate, Dispatch, Dispatched};
pub use load::{LoadSource, ProcLoad};
pub use pool::{PoolConfig, WorkerPool};
pub use queue_sync::QueueSync;
pub use reaper::Reaper;
pub use reconciler::Reconciler;
pub use scheduler::DelayScheduler;
pub use slots::{PoolSnapshot, SlotGuard, Slots};
