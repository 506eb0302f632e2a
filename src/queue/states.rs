//! Which queues are paused, as this instance knows it: read by the worker pool before every
//! pop, changed by the admin API here and by the database sync for changes made elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::QueueSet;
use crate::domain::QueueName;

/// The configured queues and their paused flags.
pub struct QueueStates {
    set: QueueSet,
    /// One flag per queue of `set`, in its order.
    paused: Vec<AtomicBool>,
    /// Rung when a flag changes, so a waiting pool looks again at once.
    changed: Notify,
}

impl QueueStates {
    /// Every queue of `set`, none paused.
    pub fn new(set: QueueSet) -> Self {
        let paused = set.specs().iter().map(|_| AtomicBool::new(false)).collect();
        Self {
            set,
            paused,
            changed: Notify::new(),
        }
    }

    /// The configured queues.
    pub fn set(&self) -> &QueueSet {
        &self.set
    }

    /// Whether the queue at `index` (of [`QueueSet::specs`]) is paused.
    pub fn is_paused(&self, index: usize) -> bool {
        self.paused
            .get(index)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// Whether queue `name` is paused (false for a queue not configured).
    pub fn is_paused_name(&self, name: QueueName) -> bool {
        self.set.index_of(name).is_some_and(|i| self.is_paused(i))
    }

    /// Sets queue `name`'s flag; returns whether it is configured.
    pub fn set_paused(&self, name: QueueName, paused: bool) -> bool {
        let Some(i) = self.set.index_of(name) else {
            return false;
        };
        if self.paused[i].swap(paused, Ordering::Relaxed) != paused {
            self.changed.notify_waiters();
        }
        true
    }

    /// Waits until a flag changes.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pausing_wakes_waiters() {
        let states = std::sync::Arc::new(QueueStates::new(QueueSet::single(1)));
        let q = QueueName::default_queue();
        assert!(!states.is_paused_name(q));
        let waiter = {
            let states = states.clone();
            tokio::spawn(async move {
                let changed = states.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                changed.await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(states.set_paused(q, true));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(states.is_paused_name(q) && states.is_paused(0));
        assert!(!states.set_paused(QueueName::parse("nope").unwrap(), true));
    }
}
