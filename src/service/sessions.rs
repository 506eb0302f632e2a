//! The live sessions of this instance, marked alive in the session table by one batched write
//! per interval instead of one write per connection.
//!
//! A connection only bumps an in-memory counter when it delivers an event; nothing on its
//! delivery path waits for the database. 10,000 connections cost one multi-row UPDATE of ~170
//! rows a second (a sixtieth of them each time), where per-connection touches cost 10,000
//! commits in a wave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock;
use crate::store::NotificationStore;

/// Sessions written per statement.
const CHUNK: usize = 1000;
/// Slices of the sessions written in turn, one per `every / SLICES` (the ids are random in
/// their low bits, so slices are even).
const SLICES: u128 = 60;

/// What one connection delivered, shared between its stream and the book.
#[derive(Debug, Default)]
pub struct SessionCell {
    delivered: AtomicU64,
}

impl SessionCell {
    /// Records that every event up to `id` was delivered.
    pub fn delivered(&self, id: u64) {
        self.delivered.fetch_max(id, Ordering::Relaxed);
    }

    /// The highest id delivered.
    pub fn last_delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// This instance's open sessions.
pub struct SessionBook {
    store: Arc<dyn NotificationStore>,
    open: Mutex<HashMap<Uuid, Arc<SessionCell>>>,
    every: Duration,
}

impl SessionBook {
    /// A book that marks its sessions alive in `store` every `every`.
    pub fn new(store: Arc<dyn NotificationStore>, every: Duration) -> Self {
        Self {
            store,
            open: Mutex::new(HashMap::new()),
            every,
        }
    }

    /// Tracks a session (already registered in the store).
    pub fn open(&self, session: Uuid) -> Arc<SessionCell> {
        let cell = Arc::new(SessionCell::default());
        self.lock().insert(session, cell.clone());
        cell
    }

    /// Stops tracking `session` and ends it in the store, recording what it delivered. The
    /// write runs detached: a closing connection does not wait for it.
    pub fn close(&self, session: Uuid) {
        let Some(cell) = self.lock().remove(&session) else {
            return;
        };
        let store = self.store.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let now = clock::now();
                let delivered = cell.last_delivered();
                if delivered > 0 {
                    let _ = store.mark_as_delivered(session, delivered, now).await;
                }
                if let Err(e) = store.unregister_session(session, now).await {
                    tracing::debug!(error = %e, "could not end notification session");
                }
            });
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks every open session alive, with what it delivered. Returns how many were written.
    pub async fn flush(&self) -> usize {
        self.flush_slice(0, 1).await
    }

    /// Marks the open sessions of slice `slice` of `slices` (by session id) alive.
    async fn flush_slice(&self, slice: u128, slices: u128) -> usize {
        let marks: Vec<(Uuid, u64)> = self
            .lock()
            .iter()
            .filter(|(id, _)| id.as_u128() % slices == slice)
            .map(|(id, cell)| (*id, cell.last_delivered()))
            .collect();
        let now = clock::now();
        let mut written = 0;
        for chunk in marks.chunks(CHUNK) {
            match self.store.mark_sessions_delivered(chunk, now).await {
                Ok(()) => written += chunk.len(),
                Err(e) => tracing::warn!(error = %e, "could not mark notification sessions alive"),
            }
        }
        written
    }

    /// Marks every session alive once per interval until `shutdown`, a slice at a time, so
    /// the writes are spread over the interval instead of arriving as one burst.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let step = self.every / SLICES as u32;
        let mut slice = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = shutdown.cancelled() => return,
            }
            self.flush_slice(slice, SLICES).await;
            slice = (slice + 1) % SLICES;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<SessionCell>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}
