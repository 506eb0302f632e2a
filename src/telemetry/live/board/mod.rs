//! Where instances leave their latest [`InstanceSample`] for the others: Redis in clustered
//! mode, memory in embedded mode (one instance). One write and one read per instance a
//! second, whatever the load and however many dashboards are open.

mod memory;
mod redis;

use async_trait::async_trait;

pub use memory::MemoryBoard;
pub use redis::RedisBoard;

use super::sample::InstanceSample;

/// A sample not refreshed for this long belongs to an instance that is gone: it is no
/// longer read, and the board may drop it.
pub const SAMPLE_MAX_AGE_MS: i64 = 60_000;

/// The board could not be reached or held something unreadable.
#[derive(Debug, thiserror::Error)]
#[error("dashboard sample board unavailable: {0}")]
pub struct BoardError(String);

impl From<::redis::RedisError> for BoardError {
    fn from(e: ::redis::RedisError) -> Self {
        Self(e.to_string())
    }
}

/// The latest sample of every instance.
#[async_trait]
pub trait SampleBoard: Send + Sync + 'static {
    /// Replaces this instance's sample.
    async fn publish(&self, sample: &InstanceSample) -> Result<(), BoardError>;

    /// The latest sample of each instance taken at or after `fresh_since_ms` (unix ms).
    async fn read(&self, fresh_since_ms: i64) -> Result<Vec<InstanceSample>, BoardError>;
}
