//! The event store's use cases: appends (admins and service accounts), reads, and the live
//! subscription to the global stream (catch-up, then live, resumable from a position).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::ServiceError;
use super::projections::StoreHead;
use crate::auth::Caller;
use crate::domain::eventstore::{
    Appended, EventEnvelope, EventType, ExpectedVersion, MAX_READ_LIMIT, PersistedEvent, StreamId,
};
use crate::domain::progress::check_append;
use crate::store::eventstore::EventStore;

/// Most events one append over the API may carry.
pub const MAX_APPEND_BATCH: usize = 1000;

/// Events a live subscriber reads from the store at a time.
const SUBSCRIBE_PAGE: u32 = 500;

/// A page of the global stream.
#[derive(Debug, Clone)]
pub struct AllPage {
    /// The events, in position order.
    pub events: Vec<PersistedEvent>,
    /// Where the next page starts (the last event's position + 1, or where this one started
    /// when it is empty).
    pub next_position: u64,
}

/// Appends, reads and subscriptions.
#[derive(Clone)]
pub struct EventStoreService {
    events: Arc<dyn EventStore>,
    /// Moved by every append here, so runners and subscribers wake at once.
    head: StoreHead,
    /// Ends live subscriptions when the service drains.
    shutdown: CancellationToken,
}

/// Only admins and service accounts touch the event store: it holds every user's events.
fn require_backend(caller: &Caller) -> Result<(), ServiceError> {
    if caller.role.is_trusted_backend() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "the event store is for admins and service accounts (role: service)".into(),
        ))
    }
}

impl EventStoreService {
    /// The service over `events`.
    pub fn new(events: Arc<dyn EventStore>, head: StoreHead, shutdown: CancellationToken) -> Self {
        Self {
            events,
            head,
            shutdown,
        }
    }

    /// Appends `events` to `stream` if it is at `expected`: checks the batch's size and each
    /// event's type and payload (see [`check_append`]).
    pub async fn append(
        &self,
        caller: &Caller,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<EventEnvelope>,
    ) -> Result<Appended, ServiceError> {
        require_backend(caller)?;
        if events.is_empty() || events.len() > MAX_APPEND_BATCH {
            return Err(ServiceError::Invalid(format!(
                "an append takes 1-{MAX_APPEND_BATCH} events, not {}",
                events.len()
            )));
        }
        for (i, e) in events.iter().enumerate() {
            check_append(stream, e)
                .map_err(|e| ServiceError::Invalid(format!("events[{i}]: {e}")))?;
        }
        let appended = self.events.append_events(stream, events, expected).await?;
        self.head.advanced(appended.last_position());
        Ok(appended)
    }

    /// `stream`'s events from `from` to `to` (versions, both included), at most
    /// [`MAX_READ_LIMIT`] of them.
    pub async fn read_stream(
        &self,
        caller: &Caller,
        stream: &StreamId,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<PersistedEvent>, ServiceError> {
        require_backend(caller)?;
        let from = from.max(1);
        let cap = from.saturating_add(u64::from(MAX_READ_LIMIT) - 1);
        let to = Some(to.map_or(cap, |t| t.min(cap)));
        Ok(self.events.read_events(stream, from, to).await?)
    }

    /// Up to `limit` events of every stream from position `from` (included).
    pub async fn read_all(
        &self,
        caller: &Caller,
        from: u64,
        limit: u32,
    ) -> Result<AllPage, ServiceError> {
        require_backend(caller)?;
        let from = from.max(1);
        let events = self.events.read_all_events(from, limit).await?;
        let next_position = events.last().map_or(from, |e| e.global_position + 1);
        Ok(AllPage {
            events,
            next_position,
        })
    }

    /// Up to `limit` events of type `event_type` that happened from `from` to before `to`.
    pub async fn read_by_type(
        &self,
        caller: &Caller,
        event_type: &EventType,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<PersistedEvent>, ServiceError> {
        require_backend(caller)?;
        Ok(self
            .events
            .read_events_by_type(event_type, from, to, limit)
            .await?)
    }

    /// Every event from position `from` (included) on: those stored first, then each as it
    /// commits, in position order without gaps or repeats. Ends when the service drains, or
    /// after an error (the last item). A client resumes from its last position + 1.
    pub fn subscribe(
        &self,
        caller: &Caller,
        from: u64,
    ) -> Result<
        impl Stream<Item = Result<PersistedEvent, ServiceError>> + Send + 'static,
        ServiceError,
    > {
        require_backend(caller)?;
        let state = Subscription {
            events: self.events.clone(),
            head: self.head.subscribe(),
            shutdown: self.shutdown.clone(),
            next: from.max(1),
            buffered: VecDeque::new(),
            failed: false,
        };
        Ok(futures::stream::unfold(state, Subscription::next_item))
    }
}

/// A live subscriber's cursor.
struct Subscription {
    events: Arc<dyn EventStore>,
    head: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
    /// The next position to read.
    next: u64,
    /// Read, not yet handed over.
    buffered: VecDeque<PersistedEvent>,
    /// An error was handed over: the stream ends.
    failed: bool,
}

impl Subscription {
    async fn next_item(mut self) -> Option<(Result<PersistedEvent, ServiceError>, Self)> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Some((Ok(e), self));
            }
            if self.failed || self.shutdown.is_cancelled() {
                return None;
            }
            // Marked seen before reading: an append that commits after the read wakes us.
            self.head.borrow_and_update();
            match self.events.read_all_events(self.next, SUBSCRIBE_PAGE).await {
                Ok(page) if !page.is_empty() => {
                    self.next = page.last().map_or(self.next, |e| e.global_position + 1);
                    self.buffered.extend(page);
                }
                Ok(_) => {
                    tokio::select! {
                        changed = self.head.changed() => if changed.is_err() { return None },
                        _ = self.shutdown.cancelled() => return None,
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some((Err(e.into()), self));
                }
            }
        }
    }
}
