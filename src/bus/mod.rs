//! Live events between instances: the port, its Redis and in-process implementations, and the
//! hub that fans events out to this instance's connections.
//!
//! The database is the source of truth: the store publishes events only after they commit, and
//! a subscriber that sees an id it did not expect (a publish lost, or two instances' publishes
//! overtaking each other) reads the missing ones back from the database. The bus is only how
//! fast they arrive, never whether.

pub mod fanout;
mod memory;
mod redis;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::StoredEvent;

/// The store's after-commit hook, which every bus implements.
pub use crate::store::EventPublisher;
pub use fanout::{Hub, HubConfig, Live, LiveEvents};
pub use memory::MemoryBus;
pub use redis::RedisBus;

/// What subscribers receive.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// Events committed on some instance.
    Events(Arc<Vec<StoredEvent>>),
    /// Messages may have been lost (a reconnect to Redis, or this receiver fell behind):
    /// subscribers should check the database for what they missed.
    Lost,
}

/// Publishes events to every instance and receives every instance's events.
pub trait EventBus: EventPublisher {
    /// Every event published from now on, on any instance.
    fn subscribe(&self) -> broadcast::Receiver<BusMessage>;
}

/// Messages a local subscriber may fall behind by before it is told [`BusMessage::Lost`].
const LOCAL_CAPACITY: usize = 4096;
