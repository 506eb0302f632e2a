//! What one connection saw: whether it opened, how many events, and whether their ids ran
//! consecutively (gaps, duplicates), plus why it ended if the server or network ended it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Transport;

/// What one connection saw. Written only by its own task; read by the coordinator.
#[derive(Debug)]
pub struct ConnStats {
    /// How it is connected.
    pub transport: Transport,
    /// Index of its user.
    pub user: usize,
    /// Whether it opened (its first frame arrived).
    pub opened: AtomicBool,
    /// Events passed on with a new id.
    pub seen: AtomicU64,
    /// Times an id skipped past the next expected one.
    pub gaps: AtomicU64,
    /// Ids skipped over in those gaps.
    pub skipped: AtomicU64,
    /// Events whose id was at or below one already seen.
    pub duplicates: AtomicU64,
    /// The last id seen (the `subscribed` id until an event arrives).
    pub last: AtomicU64,
    /// Why the server or the network ended it before the program did.
    pub ended: Mutex<Option<String>>,
}

impl ConnStats {
    /// Stats of a connection not yet opened.
    pub fn new(transport: Transport, user: usize) -> Self {
        Self {
            transport,
            user,
            opened: AtomicBool::new(false),
            seen: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last: AtomicU64::new(0),
            ended: Mutex::new(None),
        }
    }

    /// Whether the connection opened and is still open.
    pub fn is_open(&self) -> bool {
        self.opened.load(Ordering::Acquire) && self.end_reason().is_none()
    }

    /// Marks it open and tells the coordinator how long opening took.
    pub(super) fn mark_open(
        &self,
        opened: oneshot::Sender<Result<Duration, String>>,
        start: Instant,
    ) {
        self.opened.store(true, Ordering::Release);
        let _ = opened.send(Ok(start.elapsed()));
    }

    /// The reason it ended, if it did.
    pub fn end_reason(&self) -> Option<String> {
        // Only whole `Option`s are ever stored, so a poisoned lock still holds a valid one.
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Marks it ended by the server or the network; the first reason stays.
    pub(super) fn end(&self, reason: String) {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    /// Checks `id` against the last one seen.
    pub(super) fn observe(&self, id: u64) {
        let last = self.last.load(Ordering::Relaxed);
        if id <= last {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if id > last + 1 {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            self.skipped.fetch_add(id - last - 1, Ordering::Relaxed);
        }
        self.last.store(id, Ordering::Relaxed);
        self.seen.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_consecutive_ids_gaps_and_duplicates() {
        let s = ConnStats::new(Transport::Ws, 0);
        s.last.store(10, Ordering::Relaxed); // the `subscribed` frame's id
        for id in [11, 12, 15, 15, 14, 16] {
            s.observe(id);
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(load(&s.seen), 4, "11, 12, 15, 16");
        assert_eq!(
            (load(&s.gaps), load(&s.skipped)),
            (1, 2),
            "13 and 14 skipped"
        );
        assert_eq!(load(&s.duplicates), 2, "15 again, then 14 late");
        assert!(!s.is_open(), "not opened yet");
        s.opened.store(true, Ordering::Release);
        assert!(s.is_open());
        s.end("ws close 1011: first".into());
        s.end("second".into());
        assert_eq!(s.end_reason().as_deref(), Some("ws close 1011: first"));
        assert!(!s.is_open());
    }
}
