//! This instance's fan-out: one bus subscription, handed to local connections by user.
//!
//! The hub forwards what the bus delivers; it does not promise order or completeness. Each
//! connection checks ids itself (see `service::notifications`), and the hub's periodic sweep
//! catches the one case a connection cannot notice by itself: the last event of a burst lost
//! with nothing after it. The sweep compares each watched user's counter in the database with
//! the highest id the hub has forwarded, and forwards what is missing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{BusMessage, EventBus};
use crate::domain::{StoredEvent, UserId};
use crate::store::NotificationStore;

/// Events the sweep reads per user and pass.
const SWEEP_READ: u32 = 1000;

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Events one connection may have waiting; beyond that it is cut off as too slow.
    pub buffer: usize,
    /// How often watched users' counters are compared with what was forwarded.
    pub sweep_interval: Duration,
}

/// Fans events out to this instance's connections.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    config: HubConfig,
    store: Arc<dyn NotificationStore>,
}

#[derive(Default)]
struct Registry {
    /// Connections watching one user.
    users: HashMap<UserId, Watched>,
    /// Admin connections watching everyone.
    all: Vec<Sink>,
}

struct Watched {
    /// The highest id forwarded (or known delivered) for this user.
    head: u64,
    sinks: Vec<Sink>,
}

struct Sink {
    id: u64,
    tx: mpsc::Sender<Arc<StoredEvent>>,
    overflowed: Arc<AtomicBool>,
}

impl Sink {
    /// Queues `e`; false when the buffer is full (the sink is then marked and should go).
    fn offer(&self, e: &Arc<StoredEvent>) -> bool {
        match self.tx.try_send(e.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Which registry list a subscription is in.
enum Key {
    User(UserId),
    All,
}

/// One connection's live events. Dropping it unsubscribes.
pub struct LiveEvents {
    rx: mpsc::Receiver<Arc<StoredEvent>>,
    overflowed: Arc<AtomicBool>,
    hub: Hub,
    key: Key,
    id: u64,
}

/// What [`LiveEvents::recv`] returns.
#[derive(Debug)]
pub enum Live {
    /// The next event as forwarded (ids may be out of order, repeated or missing).
    Event(Arc<StoredEvent>),
    /// The connection fell behind by more than its buffer and was unsubscribed.
    Overflowed,
    /// The hub stopped.
    Closed,
}

impl LiveEvents {
    /// The next forwarded event.
    pub async fn recv(&mut self) -> Live {
        if self.overflowed.load(Ordering::Acquire) {
            return Live::Overflowed;
        }
        match self.rx.recv().await {
            Some(e) => Live::Event(e),
            None if self.overflowed.load(Ordering::Acquire) => Live::Overflowed,
            None => Live::Closed,
        }
    }

    /// Tells the hub this connection has everything up to `id` of `user` (for the sweep).
    pub fn delivered(&self, user: &UserId, id: u64) {
        let mut reg = self.hub.lock();
        if let Some(w) = reg.users.get_mut(user) {
            w.head = w.head.max(id);
        }
    }
}

impl Drop for LiveEvents {
    fn drop(&mut self) {
        let mut reg = self.hub.lock();
        match &self.key {
            Key::User(user) => {
                if let Some(w) = reg.users.get_mut(user) {
                    w.sinks.retain(|s| s.id != self.id);
                    if w.sinks.is_empty() {
                        reg.users.remove(user);
                    }
                }
            }
            Key::All => reg.all.retain(|s| s.id != self.id),
        }
    }
}

impl Hub {
    /// A hub that reads back missed events from `store`.
    pub fn new(store: Arc<dyn NotificationStore>, config: HubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::default()),
                next_id: AtomicU64::new(1),
                config,
                store,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves the registry consistent (plain pushes and
        // removals), so a poisoned lock is still usable.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn sink(&self) -> (Sink, mpsc::Receiver<Arc<StoredEvent>>, Arc<AtomicBool>, u64) {
        let (tx, rx) = mpsc::channel(self.inner.config.buffer.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let sink = Sink {
            id,
            tx,
            overflowed: overflowed.clone(),
        };
        (sink, rx, overflowed, id)
    }

    /// Subscribes to `user`'s events; `known` is the last id the caller has (read from the
    /// database), from which the sweep checks for lost ones.
    pub fn subscribe_user(&self, user: &UserId, known: u64) -> LiveEvents {
        let (sink, rx, overflowed, id) = self.sink();
        let mut reg = self.lock();
        let w = reg.users.entry(user.clone()).or_insert(Watched {
            head: known,
            sinks: Vec::new(),
        });
        // Re-forwarding is harmless (connections drop ids they have); skipping is not.
        w.head = w.head.min(known);
        w.sinks.push(sink);
        drop(reg);
        LiveEvents {
            rx,
            overflowed,
            hub: self.clone(),
            key: Key::User(user.clone()),
            id,
        }
    }

    /// Subscribes to every user's events (admins).
    pub fn subscribe_all(&self) -> LiveEvents {
        let (sink, rx, overflowed, id) = self.sink();
        self.lock().all.push(sink);
        LiveEvents {
            rx,
            overflowed,
            hub: self.clone(),
            key: Key::All,
            id,
        }
    }

    /// Connections currently subscribed on this instance.
    pub fn connections(&self) -> usize {
        let reg = self.lock();
        reg.all.len() + reg.users.values().map(|w| w.sinks.len()).sum::<usize>()
    }

    /// Forwards events to the connections watching their users (and to all-users ones).
    /// A connection whose buffer is full is dropped from the registry and told so.
    pub fn dispatch(&self, events: &[StoredEvent]) {
        let mut reg = self.lock();
        for e in events {
            let watched = reg.users.contains_key(&e.event.user_id);
            if !watched && reg.all.is_empty() {
                continue;
            }
            let e = Arc::new(e.clone());
            reg.all.retain(|s| s.offer(&e));
            if let Some(w) = reg.users.get_mut(&e.event.user_id) {
                w.head = w.head.max(e.id);
                w.sinks.retain(|s| s.offer(&e));
                if w.sinks.is_empty() {
                    reg.users.remove(&e.event.user_id);
                }
            }
        }
    }

    /// Forwards what the database has beyond what was forwarded, for every watched user.
    pub async fn sweep(&self) {
        let heads: Vec<(UserId, u64)> = {
            let reg = self.lock();
            reg.users.iter().map(|(u, w)| (u.clone(), w.head)).collect()
        };
        if heads.is_empty() {
            return;
        }
        let users: Vec<UserId> = heads.iter().map(|(u, _)| u.clone()).collect();
        let lasts = match self.inner.store.last_ids(&users).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event sweep could not read counters");
                return;
            }
        };
        let heads: HashMap<UserId, u64> = heads.into_iter().collect();
        for (user, last) in lasts {
            let head = heads.get(&user).copied().unwrap_or(last);
            if last <= head {
                continue;
            }
            match self
                .inner
                .store
                .events_after(&user, head, None, SWEEP_READ)
                .await
            {
                Ok(events) => {
                    tracing::debug!(user = %user, count = events.len(), "sweep found missed events");
                    self.dispatch(&events);
                }
                Err(e) => tracing::warn!(error = %e, "event sweep could not read events"),
            }
        }
    }

    /// Receives from `bus` and forwards until `shutdown`; sweeps every `sweep_interval` and
    /// whenever the bus reports lost messages. On shutdown every subscription ends.
    ///
    /// A sweep reads the database (every watched user's counter), so it runs beside the loop,
    /// one at a time: live events keep flowing while it waits. What it forwards twice, streams
    /// drop by id.
    pub async fn run(self, bus: Arc<dyn EventBus>, shutdown: CancellationToken) {
        let mut rx = bus.subscribe();
        let mut tick = tokio::time::interval(self.inner.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
        let sweep = |sweeping: &mut Option<tokio::task::JoinHandle<()>>| {
            if sweeping.as_ref().is_none_or(|s| s.is_finished()) {
                let hub = self.clone();
                *sweeping = Some(tokio::spawn(async move { hub.sweep().await }));
            }
        };
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok(BusMessage::Events(events)) => self.dispatch(&events),
                    Ok(BusMessage::Lost) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        sweep(&mut sweeping);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => sweep(&mut sweeping),
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some(s) = sweeping {
            // A sweep only reads; it need not finish.
            s.abort();
            let _ = s.await;
        }
        // Dropping every sender ends every connection's stream.
        let mut reg = self.lock();
        reg.users.clear();
        reg.all.clear();
    }
}
