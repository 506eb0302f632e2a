//! The store's after-commit hook: where each transaction's events go once it has committed.
//! The store owns the trait and the bus implements it, so storage never depends on how events
//! travel between instances.

use std::sync::Arc;

use crate::domain::StoredEvent;

/// Where the store hands events after their transaction commits. Must not block: it runs on
/// the commit path.
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes events that are committed (in commit order per user).
    fn publish(&self, events: Vec<StoredEvent>);
}

/// Where a store hands the events of each transaction once it has committed (nowhere until
/// [`with_publisher`](PgTaskStore::with_publisher) is called).
#[derive(Clone, Default)]
pub(crate) struct AfterCommit(Option<Arc<dyn EventPublisher>>);

impl From<Arc<dyn EventPublisher>> for AfterCommit {
    fn from(publisher: Arc<dyn EventPublisher>) -> Self {
        Self(Some(publisher))
    }
}

impl AfterCommit {
    /// Hands committed events on; never blocks.
    pub(crate) fn publish(&self, events: Vec<StoredEvent>) {
        if let Some(p) = &self.0
            && !events.is_empty()
        {
            p.publish(events);
        }
    }
}
