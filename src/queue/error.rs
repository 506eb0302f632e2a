//! Queue errors.

/// What went wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or refused the command; may succeed later.
    #[error("queue unavailable: {0}")]
    Unavailable(#[from] ::redis::RedisError),
    /// Redis answered something this code did not expect.
    #[error("unexpected queue reply: {0}")]
    Protocol(String),
}
