//! Durable notifications (seed 000's NotificationRepository): the per-user event history that
//! live streams resume from, and the table of live connections.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewStreamTicket, StoreError, StreamGrant, TicketHash};
use crate::domain::{StoredEvent, TaskId, UserId};

/// How a client is connected (seed 000's ConnectionType, plus gRPC streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws`.
    WebSocket,
    /// `GET /api/v1/events`.
    Sse,
    /// `NotificationService.Subscribe` or `TaskService.WatchTask`.
    Grpc,
}

impl Transport {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::Grpc => "grpc",
        }
    }

    /// The transport with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::WebSocket, Self::Sse, Self::Grpc]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// One live connection (seed 000's NotificationSession).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSession {
    /// Unique per connection.
    pub id: Uuid,
    /// Whose events it receives (for an admin's all-users stream: the admin).
    pub user_id: UserId,
    /// The instance holding the connection.
    pub instance: String,
    /// How the client is connected.
    pub transport: Transport,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// Last sign of life (refreshed with every delivery mark).
    pub last_seen: DateTime<Utc>,
    /// The highest per-user event id delivered on it.
    pub last_delivered_id: u64,
}

/// The ids a user's retained history spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventBounds {
    /// The oldest retained event's id; `None` when none is retained.
    pub oldest: Option<u64>,
    /// The last id ever given to the user's events (0: none yet). Never goes back, even when
    /// retention deletes the events.
    pub last: u64,
}

/// Event history and connection sessions.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Up to `limit` of `user`'s events with id above `after`, oldest first; only task `task`'s
    /// when given.
    async fn events_after(
        &self,
        user: &UserId,
        after: u64,
        task: Option<TaskId>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The oldest retained and the last given id of `user`'s events.
    async fn event_bounds(&self, user: &UserId) -> Result<EventBounds, StoreError>;

    /// The last given id of each of `users` that has any events.
    async fn last_ids(&self, users: &[UserId]) -> Result<Vec<(UserId, u64)>, StoreError>;

    /// Deletes up to `limit` events created before `cutoff`, and sessions that ended before it.
    /// Returns how many events were deleted. Counters stay, so ids never restart.
    async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Records a new live connection.
    async fn register_session(&self, session: &NotificationSession) -> Result<(), StoreError>;

    /// Marks a connection as ended (kept until retention, for delivery history).
    async fn unregister_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The user's connections that have not ended.
    async fn find_active_sessions_by_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationSession>, StoreError>;

    /// Records that every event up to `id` was delivered on `session`, which is alive at `now`.
    async fn mark_as_delivered(
        &self,
        session: Uuid,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// [`mark_as_delivered`](Self::mark_as_delivered) for many sessions in one statement: each
    /// `(session, id)` pair records delivery up to `id`; all are alive at `now`. Ended sessions
    /// are left alone.
    async fn mark_sessions_delivered(
        &self,
        sessions: &[(Uuid, u64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Ends sessions not seen since `seen_before` (their instance died). Returns how many.
    async fn end_stale_sessions(&self, seen_before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Up to `limit` of `user`'s events created at or after `since`, oldest first.
    async fn find_notifications_by_user(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` of `user`'s events after the highest id delivered on any of their
    /// sessions, oldest first.
    async fn find_undelivered_notifications(
        &self,
        user: &UserId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    // ===== Stream tickets =====

    /// Stores a one-time stream ticket.
    async fn insert_stream_ticket(&self, ticket: &NewStreamTicket) -> Result<(), StoreError>;

    /// Uses up the ticket with SHA-256 `hash`: deletes it and returns its grant, if it exists
    /// and has not expired at `now`. Atomic: of concurrent calls with one hash, on any
    /// instance, at most one gets the grant.
    async fn take_stream_ticket(
        &self,
        hash: &TicketHash,
        now: DateTime<Utc>,
    ) -> Result<Option<StreamGrant>, StoreError>;

    /// Deletes the tickets expired at `now` (used ones are gone already). Returns how many.
    async fn delete_expired_stream_tickets(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
