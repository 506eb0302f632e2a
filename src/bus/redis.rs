//! Redis pub/sub bus (clustered mode). Every instance publishes each commit's events as one
//! message on `{prefix}:events` and holds one subscriber connection that receives every
//! instance's messages; the hub fans them out to local connections by user.
//!
//! Pub/sub is fire-and-forget: a message published while an instance is reconnecting is lost
//! for it. That is allowed here: after every (re)subscribe the bus reports
//! [`BusMessage::Lost`] and the hub checks the database for what its connections missed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BusMessage, EventBus, EventPublisher, LOCAL_CAPACITY};
use crate::domain::{StoredEvent, TaskEvent, TaskEventType, TaskId, UserId};

/// Commits' event lists published per Redis round trip.
const PUBLISH_BATCH: usize = 64;
/// Wait between reconnect attempts of the subscriber.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// One event as published.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: u64,
    task_id: TaskId,
    user_id: UserId,
    #[serde(rename = "type")]
    kind: TaskEventType,
    data: Value,
    created_at: DateTime<Utc>,
}

impl From<&StoredEvent> for Wire {
    fn from(e: &StoredEvent) -> Self {
        Self {
            id: e.id,
            task_id: e.event.task_id,
            user_id: e.event.user_id.clone(),
            kind: e.event.kind,
            data: e.event.data.clone(),
            created_at: e.event.created_at,
        }
    }
}

impl From<Wire> for StoredEvent {
    fn from(w: Wire) -> Self {
        Self {
            id: w.id,
            event: TaskEvent {
                task_id: w.task_id,
                user_id: w.user_id,
                kind: w.kind,
                data: w.data,
                created_at: w.created_at,
            },
        }
    }
}

/// Events shared by every instance through Redis.
#[derive(Clone)]
pub struct RedisBus {
    /// To the publishing loop: publishing never blocks a commit.
    outbox: mpsc::UnboundedSender<Vec<StoredEvent>>,
    /// What the subscriber loop received, for this instance's hub.
    local: broadcast::Sender<BusMessage>,
}

impl RedisBus {
    /// Connects, and starts the publishing and subscribing loops on `tracker`; they stop on
    /// `shutdown`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let channel = format!("{prefix}:events");
        let (outbox, rx) = mpsc::unbounded_channel();
        let local = broadcast::channel(LOCAL_CAPACITY).0;
        tracker.spawn(publish_loop(conn, channel.clone(), rx, shutdown.clone()));
        tracker.spawn(subscribe_loop(client, channel, local.clone(), shutdown));
        Ok(Self { outbox, local })
    }
}

impl EventPublisher for RedisBus {
    fn publish(&self, events: Vec<StoredEvent>) {
        if !events.is_empty() {
            // Closed only after shutdown, when nobody is listening any more.
            let _ = self.outbox.send(events);
        }
    }
}

impl EventBus for RedisBus {
    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.local.subscribe()
    }
}

async fn publish_loop(
    mut conn: ConnectionManager,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<Vec<StoredEvent>>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.cancelled() => return,
        };
        let mut pipe = redis::pipe();
        let mut batch = Some(first);
        let mut n = 0;
        while let Some(events) = batch.take() {
            let wire: Vec<Wire> = events.iter().map(Wire::from).collect();
            match serde_json::to_vec(&wire) {
                Ok(bytes) => {
                    pipe.publish(&channel, bytes).ignore();
                }
                Err(e) => tracing::error!(error = %e, "cannot encode events"),
            }
            n += 1;
            if n < PUBLISH_BATCH {
                batch = rx.try_recv().ok();
            }
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            // Subscribers recover lost events from the database.
            tracing::warn!(error = %e, "publishing events to Redis failed");
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<BusMessage>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = tokio::select! {
            r = subscribed => r,
            _ = shutdown.cancelled() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                // Whatever was published before this point may be missing here.
                let _ = local.send(BusMessage::Lost);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.cancelled() => return,
                    };
                    let Some(msg) = msg else { break };
                    match serde_json::from_slice::<Vec<Wire>>(msg.get_payload_bytes()) {
                        Ok(wire) => {
                            let events = wire.into_iter().map(StoredEvent::from).collect();
                            let _ = local.send(BusMessage::Events(Arc::new(events)));
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed event message"),
                    }
                }
                tracing::warn!("Redis event subscription ended; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to Redis events; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
