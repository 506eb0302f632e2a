//! In-process bus (embedded mode): one process, so a broadcast channel is every instance.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{BusMessage, EventBus, EventPublisher, LOCAL_CAPACITY};
use crate::domain::StoredEvent;

/// Events published and received in this process.
#[derive(Clone)]
pub struct MemoryBus {
    tx: broadcast::Sender<BusMessage>,
}

impl MemoryBus {
    /// A bus with no subscribers yet.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(LOCAL_CAPACITY).0,
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventPublisher for MemoryBus {
    fn publish(&self, events: Vec<StoredEvent>) {
        if !events.is_empty() {
            // No receiver is fine: nobody is watching.
            let _ = self.tx.send(BusMessage::Events(Arc::new(events)));
        }
    }
}

impl EventBus for MemoryBus {
    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}
