//! The event store's head: the last committed global position, as this instance last saw it.
//!
//! Local appends move it at once ([`StoreHead::advanced`]); appends on other instances are seen
//! by polling the store's one-row counter every few milliseconds ([`StoreHead::run`]), a
//! single indexed read. Projection runners and live subscribers wait on it instead of polling
//! the events themselves. It only ever tells "there may be more": readers always read the
//! store, whose global order is gap-safe, so a missed or early wake-up costs time, never an
//! event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::eventstore::EventStore;

/// The last global position known to be committed.
#[derive(Clone)]
pub struct StoreHead {
    /// Wakes every waiter when the position grows.
    tx: Arc<watch::Sender<u64>>,
}

impl Default for StoreHead {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHead {
    /// At position 0 until told or polled.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
        }
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The head as last seen.
    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    /// An append committed up to `position` (moves the head only forward).
    pub fn advanced(&self, position: u64) {
        self.tx.send_if_modified(|head| {
            let moved = position > *head;
            if moved {
                *head = position;
            }
            moved
        });
    }

    /// Polls `events` every `interval` until cancelled, for appends made elsewhere.
    pub async fn run(
        self,
        events: Arc<dyn EventStore>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match events.last_position().await {
                Ok(p) => self.advanced(p),
                Err(e) => tracing::debug!(error = %e, "event store head unread"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_head_only_moves_forward_and_wakes_waiters() {
        let head = StoreHead::new();
        let mut rx = head.subscribe();
        head.advanced(5);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 5);
        head.advanced(3);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(head.current(), 5);
    }
}
