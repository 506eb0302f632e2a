//! Live event streams: what WebSocket, SSE and gRPC connections read.
//!
//! A stream replays the stored events after the client's last id, then follows the hub, with
//! no gap and no duplicate: it remembers the last id it passed on, drops anything at or below
//! it, and when an event arrives whose id is not the next one (a publish lost, or overtaken by
//! another instance's), it reads the missing ones from the database first. It subscribes to
//! the hub before it reads history, so nothing committed in between can fall through.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ServiceError, SessionBook, SessionCell, StreamPass, StreamQuota};
use crate::auth::{Caller, Role};
use crate::bus::{Hub, Live, LiveEvents};
use crate::clock;
use crate::domain::{StoredEvent, TaskId, UserId};
use crate::store::{NotificationSession, NotificationStore, StoreError, TaskStore, Transport};
use crate::telemetry::metrics::OpenStream;

/// Events read from the database per query while catching up.
const PAGE: u32 = 500;
/// How often each of this instance's session rows is marked alive (with what it delivered), by
/// the batched writes of [`SessionBook`]. Sessions not marked for [`SESSION_STALE`] belong to a dead
/// instance.
pub const SESSION_TOUCH: Duration = Duration::from_secs(60);
/// See [`SESSION_TOUCH`].
pub const SESSION_STALE: Duration = Duration::from_secs(300);

/// Limits of live connections.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Live connections this instance holds at most (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// How often idle connections are pinged and sessions marked alive
    /// (`NOTIFICATION_KEEPALIVE`).
    pub keepalive: Duration,
    /// How long a WebSocket has to answer a ping before it is closed as dead
    /// (`WS_PONG_TIMEOUT`).
    pub pong_timeout: Duration,
}

/// Whose events a stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The caller's own.
    Own,
    /// Another user's (admins only).
    User(UserId),
    /// Everyone's, live only (admins only): each event keeps its owner's per-user id.
    All,
}

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    /// Resume after this per-user id; `None`: from now on (or, with `task_id`, from the
    /// task's first event).
    pub since: Option<u64>,
    /// Only this task's events.
    pub task_id: Option<TaskId>,
    /// Whose events.
    pub scope: Scope,
    /// End the stream after the task's terminal event (`WatchTask`).
    pub until_terminal: bool,
    /// How the client is connected.
    pub transport: Transport,
    /// When the caller's token expires (unix seconds): the stream closes then.
    pub expires_at: Option<u64>,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client read too slowly and more events were waiting than its buffer holds.
    SlowConsumer,
    /// The caller's token expired.
    TokenExpired,
    /// The server is shutting down.
    ShuttingDown,
    /// The watched task finished (`until_terminal`).
    TaskFinished,
    /// The database failed while catching up.
    Unavailable,
}

impl CloseReason {
    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::TokenExpired => "token_expired",
            Self::ShuttingDown => "shutting_down",
            Self::TaskFinished => "task_finished",
            Self::Unavailable => "unavailable",
        }
    }

    /// A sentence for the client.
    pub fn message(self) -> &'static str {
        match self {
            Self::SlowConsumer => {
                "slow consumer: too many events waiting; reconnect with the last id to resume"
            }
            Self::TokenExpired => "token expired; reconnect with a fresh token to resume",
            Self::ShuttingDown => "server shutting down; reconnect to resume",
            Self::TaskFinished => "the task finished",
            Self::Unavailable => "database unavailable; reconnect with the last id to resume",
        }
    }
}

/// One item of a stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// Always first. `recovered`: every event after the requested id follows. When false the
    /// requested id is older than retention (or unknown), and the stream continues after
    /// `last`: the client should refetch state.
    Subscribed {
        /// Whether the history was recovered.
        recovered: bool,
        /// The id the stream continues after (per-user; 0 for all-users streams).
        last: u64,
    },
    /// An event.
    Event(Arc<StoredEvent>),
    /// The last item: why the stream ended.
    Closed(CloseReason),
}

/// Opens event streams for authenticated callers.
#[derive(Clone)]
pub struct NotificationService {
    store: Arc<dyn NotificationStore>,
    tasks: Arc<dyn TaskStore>,
    hub: Hub,
    slots: Arc<Semaphore>,
    limits: StreamLimits,
    instance: String,
    sessions: Arc<SessionBook>,
    shutdown: CancellationToken,
    /// Streams per user (`MAX_STREAMS_PER_USER`), shared by every kind of live stream.
    quota: StreamQuota,
}

impl NotificationService {
    /// Streams served by `hub`, closed on `shutdown`; `instance` names this instance in the
    /// session table, whose rows `sessions` keeps alive (its loop runs separately).
    pub fn new(
        store: Arc<dyn NotificationStore>,
        tasks: Arc<dyn TaskStore>,
        hub: Hub,
        limits: StreamLimits,
        instance: String,
        sessions: Arc<SessionBook>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            tasks,
            hub,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            instance,
            sessions,
            shutdown,
            quota: StreamQuota::default(),
        }
    }

    /// Counts every stream against `quota` (one per user).
    pub fn with_stream_quota(mut self, quota: StreamQuota) -> Self {
        self.quota = quota;
        self
    }

    /// The per-user stream quota, for the other kinds of live streams (chat, event store).
    pub fn stream_quota(&self) -> &StreamQuota {
        &self.quota
    }

    /// The keepalive interval.
    pub fn keepalive(&self) -> Duration {
        self.limits.keepalive
    }

    /// How long a WebSocket has to answer a ping.
    pub fn pong_timeout(&self) -> Duration {
        self.limits.pong_timeout
    }

    /// Takes one of this instance's connection slots, or refuses when all are taken.
    pub fn reserve(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ServiceError::TooManyConnections(format!(
                "this instance holds its maximum of {} live connections; retry later",
                self.limits.max_connections
            ))
        })
    }

    /// Opens a stream for `caller` (taking a connection slot unless `slot` is given).
    pub async fn open(
        &self,
        caller: &Caller,
        req: StreamRequest,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<EventStream, ServiceError> {
        self.open_as(caller, req, slot, None).await
    }

    /// Opens a stream of the events stored under `req.task_id` that are not a task's but
    /// belong to `owner`, whom the caller has been checked against (a pipeline session's:
    /// its events carry the session's id).
    pub async fn open_owned(
        &self,
        caller: &Caller,
        req: StreamRequest,
        owner: UserId,
    ) -> Result<EventStream, ServiceError> {
        self.open_as(caller, req, None, Some(owner)).await
    }

    async fn open_as(
        &self,
        caller: &Caller,
        req: StreamRequest,
        slot: Option<OwnedSemaphorePermit>,
        known_owner: Option<UserId>,
    ) -> Result<EventStream, ServiceError> {
        let slot = match slot {
            Some(s) => s,
            None => self.reserve()?,
        };
        let pass = self.quota.acquire(&caller.user_id)?;
        if req.scope != Scope::Own && caller.role != Role::Admin {
            return Err(ServiceError::Forbidden(
                "only admins may watch other users' events".into(),
            ));
        }
        let mut owner = match &req.scope {
            Scope::Own => Some(caller.user_id.clone()),
            Scope::User(u) => Some(u.clone()),
            Scope::All => None,
        };
        if let (Some(_), Some(known)) = (req.task_id, known_owner) {
            owner = Some(known);
        } else if let Some(id) = req.task_id {
            match self.tasks.find_by_id(id).await? {
                Some(t) if caller.may_access(&t.user_id) => owner = Some(t.user_id),
                _ => return Err(ServiceError::NotFound(id.to_string())),
            }
        }
        let deadline = req.expires_at.map(|exp| {
            let left = exp.saturating_sub(now_unix());
            Instant::now() + Duration::from_secs(left)
        });
        let session = NotificationSession {
            id: Uuid::now_v7(),
            user_id: caller.user_id.clone(),
            instance: self.instance.clone(),
            transport: req.transport,
            connected_at: clock::now(),
            last_seen: clock::now(),
            last_delivered_id: 0,
        };
        let (cursor, live, recovered, last) = match owner {
            None => {
                if req.since.is_some() {
                    return Err(ServiceError::Invalid(
                        "the all-users stream is live only: `since` needs a user (user_id) \
                         whose ids it refers to"
                            .into(),
                    ));
                }
                let live = self.hub.subscribe_all();
                (Cursor::All(HashMap::new()), live, true, 0)
            }
            Some(user) => {
                let bounds = self.store.event_bounds(&user).await?;
                let (recovered, last) = match (req.since, req.task_id) {
                    (None, None) => (true, bounds.last),
                    (None, Some(_)) => (true, 0),
                    (Some(n), _) => {
                        let oldest = bounds.oldest.unwrap_or(bounds.last + 1);
                        if n > bounds.last || n + 1 < oldest {
                            (false, bounds.last)
                        } else {
                            (true, n)
                        }
                    }
                };
                let live = self.hub.subscribe_user(&user, bounds.last);
                let cursor = Cursor::User {
                    user,
                    last,
                    caught_up: bounds.last,
                };
                (cursor, live, recovered, last)
            }
        };
        if let Err(e) = self.store.register_session(&session).await {
            // The stream works without its session row; only delivery history suffers.
            tracing::warn!(error = %e, "could not register notification session");
        }
        let mark = self.sessions.open(session.id);
        Ok(EventStream {
            store: self.store.clone(),
            live,
            cursor,
            task: req.task_id,
            until_terminal: req.until_terminal,
            pending: VecDeque::new(),
            arrived: None,
            first: Some(StreamItem::Subscribed { recovered, last }),
            history: true,
            finished: None,
            ended: false,
            deadline,
            shutdown: self.shutdown.clone(),
            session: session.id,
            sessions: self.sessions.clone(),
            mark,
            _slot: slot,
            _pass: pass,
            metrics: OpenStream::open(req.transport.as_str()),
        })
    }

    /// Connections open on this instance.
    pub fn open_connections(&self) -> usize {
        self.limits.max_connections - self.slots.available_permits()
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a stream stands.
enum Cursor {
    /// One user's events.
    User {
        user: UserId,
        /// The last id passed on or skipped.
        last: u64,
        /// The user's last id when the stream opened: once history is read, everything up to
        /// here has been seen (a task's stream reads only that task's events).
        caught_up: u64,
    },
    /// Everyone's: the last id passed on per user, from the first event seen of each.
    All(HashMap<UserId, u64>),
}

/// What waits to be passed on.
enum Queued {
    /// An event read back from the database (`live` false) or taken live.
    Event(Arc<StoredEvent>, bool),
    /// Everything up to this id has been read (a task stream's history covers only that
    /// task's events, the rest of the user's need not be read back as gaps).
    SeenThrough(u64),
}

/// A live stream of events; see the module docs. Read it with [`EventStream::next`].
pub struct EventStream {
    store: Arc<dyn NotificationStore>,
    live: LiveEvents,
    cursor: Cursor,
    task: Option<TaskId>,
    until_terminal: bool,
    /// Events read back from the database, to pass on before anything newer.
    pending: VecDeque<Queued>,
    /// A live event taken from the hub whose gap (if any) is not filled yet.
    arrived: Option<Arc<StoredEvent>>,
    /// The `Subscribed` item, until it is sent.
    first: Option<StreamItem>,
    /// Still reading stored history.
    history: bool,
    /// Set once the stream must end: the reason, sent once.
    finished: Option<CloseReason>,
    ended: bool,
    deadline: Option<Instant>,
    shutdown: CancellationToken,
    session: Uuid,
    sessions: Arc<SessionBook>,
    /// The highest id passed on, written to the session table by `sessions`.
    mark: Arc<SessionCell>,
    /// Holds one of the instance's connection slots.
    _slot: OwnedSemaphorePermit,
    /// Holds one of the caller's places in the per-user stream quota.
    _pass: StreamPass,
    /// Counts the stream as open, and what it delivers.
    metrics: OpenStream,
}

impl EventStream {
    /// The session id of this connection.
    pub fn session_id(&self) -> Uuid {
        self.session
    }

    /// The next item; `None` after [`StreamItem::Closed`]. Cancel-safe: a call dropped midway
    /// loses nothing, so callers may `select!` on it.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.ended {
                return None;
            }
            if let Some(reason) = self.finished {
                self.ended = true;
                return Some(StreamItem::Closed(reason));
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.finished = Some(CloseReason::TokenExpired);
                continue;
            }
            match self.pending.pop_front() {
                Some(Queued::Event(e, live)) => {
                    if let Some(item) = self.pass(e, live) {
                        return Some(item);
                    }
                    continue;
                }
                Some(Queued::SeenThrough(id)) => {
                    if let Cursor::User { last, .. } = &mut self.cursor {
                        *last = (*last).max(id);
                    }
                    continue;
                }
                None => {}
            }
            if let Some(e) = self.arrived.clone() {
                // Kept in `arrived` until its gap is filled, so a cancelled call loses nothing.
                match self.accept(e).await {
                    Ok(()) => self.arrived = None,
                    Err(err) => {
                        tracing::warn!(error = %err, "event gap fill failed");
                        self.finished = Some(CloseReason::Unavailable);
                    }
                }
                continue;
            }
            if self.history {
                if let Err(e) = self.read_history().await {
                    tracing::warn!(error = %e, "event history read failed");
                    self.finished = Some(CloseReason::Unavailable);
                }
                continue;
            }
            let deadline = self.deadline;
            let expiry = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => self.finished = Some(CloseReason::ShuttingDown),
                _ = expiry => self.finished = Some(CloseReason::TokenExpired),
                live = self.live.recv() => match live {
                    Live::Event(e) => self.arrived = Some(e),
                    Live::Overflowed => {
                        self.metrics.dropped_as_slow();
                        self.finished = Some(CloseReason::SlowConsumer);
                    }
                    Live::Closed => self.finished = Some(CloseReason::ShuttingDown),
                },
            }
        }
    }

    /// Reads the next page of stored history into `pending`.
    async fn read_history(&mut self) -> Result<(), StoreError> {
        let Cursor::User {
            user,
            last,
            caught_up,
        } = &mut self.cursor
        else {
            self.history = false;
            return Ok(());
        };
        let page = self
            .store
            .events_after(user, *last, self.task, PAGE)
            .await?;
        let done = page.len() < PAGE as usize;
        self.pending
            .extend(page.into_iter().map(|e| Queued::Event(Arc::new(e), false)));
        if done {
            self.history = false;
            self.pending.push_back(Queued::SeenThrough(*caught_up));
        }
        Ok(())
    }

    /// Takes a live event: drops what was seen, reads back what is missing before it.
    async fn accept(&mut self, e: Arc<StoredEvent>) -> Result<(), StoreError> {
        if e.is_live_only() {
            // Outside the numbered sequence: nothing to check or fill.
            self.pending.push_back(Queued::Event(e, true));
            return Ok(());
        }
        let user = &e.event.user_id;
        let last = match &mut self.cursor {
            Cursor::User { last, .. } => *last,
            Cursor::All(lasts) => match lasts.get(user) {
                Some(l) => *l,
                None => {
                    // The first event seen of this user starts their sequence here.
                    lasts.insert(user.clone(), e.id - 1);
                    e.id - 1
                }
            },
        };
        if e.id <= last {
            return Ok(());
        }
        let mut after = last;
        while after + 1 < e.id {
            let want = u32::try_from(e.id - after - 1).unwrap_or(PAGE).min(PAGE);
            let fill = self
                .store
                .events_after(user, after, self.task, want)
                .await?;
            let before = fill.iter().take_while(|f| f.id < e.id).count();
            let reached_end = fill.len() < want as usize || before < fill.len();
            for f in fill.into_iter().take(before) {
                after = f.id;
                self.pending.push_back(Queued::Event(Arc::new(f), false));
            }
            if reached_end {
                break;
            }
        }
        self.pending.push_back(Queued::Event(e, true));
        Ok(())
    }

    /// Passes `e` on if it is new and wanted; advances the cursor either way. `live`: it came
    /// from the hub (its age is the delivery lag), not read back from the store.
    fn pass(&mut self, e: Arc<StoredEvent>, live: bool) -> Option<StreamItem> {
        if e.is_live_only() {
            // Chat deltas: passed on as they come, for the whole user stream only (a task
            // filter names a task, and they belong to no task).
            return self.task.is_none().then_some(StreamItem::Event(e));
        }
        let last = match &mut self.cursor {
            Cursor::User { last, .. } => last,
            Cursor::All(lasts) => lasts.entry(e.event.user_id.clone()).or_insert(0),
        };
        if e.id <= *last {
            return None;
        }
        *last = e.id;
        if self.task.is_some_and(|t| t != e.event.task_id) {
            return None;
        }
        self.mark.delivered(e.id);
        let lag = live.then(|| {
            (clock::now() - e.event.created_at)
                .to_std()
                .unwrap_or_default()
        });
        self.metrics.delivered(lag);
        if self.until_terminal && e.event.kind.is_terminal() {
            self.finished = Some(CloseReason::TaskFinished);
        }
        Some(StreamItem::Event(e))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.sessions.close(self.session);
    }
}
