//! Background work: the pool that runs tasks, the scheduler of delayed retries and the
//! reconciler that rebuilds the queue from the database.

mod backoff;
mod pool;
mod progress;
mod reaper;
mod reconciler;
mod scheduler;

pub use backoff::retry_delay;
pub use pool::{PoolConfig, WorkerPool};
pub use reaper::Reaper;
pub use reconciler::Reconciler;
pub use scheduler::DelayScheduler;
