//! Stored -> delivered latency of every event, per transport and per event type: histograms
//! shared by every connection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use super::Transport;

/// Event types timed separately (the three an echo task makes), then everything else.
pub const KINDS: [&str; 4] = ["TaskCreated", "TaskStarted", "TaskCompleted", "other"];

/// Stored -> delivered latency of every event, per transport and per event type, in
/// microseconds.
pub struct Latency {
    ws: Mutex<Histogram<u64>>,
    sse: Mutex<Histogram<u64>>,
    by_kind: [Mutex<Histogram<u64>>; 4],
    /// Events whose `created_at` was after their arrival (clock steps): recorded as 0.
    pub negative: AtomicU64,
}

/// Copies of the histograms of a [`Latency`].
pub struct LatencySnapshot {
    /// Every event over a WebSocket.
    pub ws: Histogram<u64>,
    /// Every event over an SSE stream.
    pub sse: Histogram<u64>,
    /// In the order of [`KINDS`].
    pub by_kind: Vec<Histogram<u64>>,
}

impl Latency {
    /// Empty histograms tracking up to `max_us`.
    pub fn new(max_us: u64) -> anyhow::Result<Self> {
        let h = || Histogram::new_with_bounds(1, max_us, 3).map(Mutex::new);
        Ok(Self {
            ws: h()?,
            sse: h()?,
            by_kind: [h()?, h()?, h()?, h()?],
            negative: AtomicU64::new(0),
        })
    }

    /// Records one event of type `kind` that arrived at `arrived` over `transport`.
    pub(super) fn record(
        &self,
        transport: Transport,
        kind: Option<&str>,
        created_at: DateTime<Utc>,
        arrived: DateTime<Utc>,
    ) {
        let us = (arrived - created_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        if us < 0 {
            self.negative.fetch_add(1, Ordering::Relaxed);
        }
        let us = us.max(0).unsigned_abs();
        let h = match transport {
            Transport::Ws => &self.ws,
            Transport::Sse => &self.sse,
        };
        lock(h).saturating_record(us);
        let k = KINDS[..3]
            .iter()
            .position(|k| Some(*k) == kind)
            .unwrap_or(3);
        lock(&self.by_kind[k]).saturating_record(us);
    }

    /// Copies of the histograms.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            ws: lock(&self.ws).clone(),
            sse: lock(&self.sse).clone(),
            by_kind: self.by_kind.iter().map(|h| lock(h).clone()).collect(),
        }
    }
}

/// A histogram's lock; recording cannot panic halfway, so a poisoned one is still whole.
fn lock(h: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_transport_and_type_and_counts_clock_steps() {
        let lat = Latency::new(3_600_000_000).unwrap();
        let at = Utc::now();
        let ms = chrono::Duration::milliseconds;
        lat.record(Transport::Ws, Some("TaskStarted"), at, at + ms(5));
        lat.record(Transport::Sse, Some("Custom"), at, at + ms(7));
        lat.record(Transport::Sse, None, at, at - ms(1));
        let snap = lat.snapshot();
        assert_eq!((snap.ws.len(), snap.sse.len()), (1, 2));
        let counts: Vec<u64> = snap.by_kind.iter().map(Histogram::len).collect();
        assert_eq!(counts, [0, 1, 0, 2], "in the order of KINDS");
        assert_eq!(lat.negative.load(Ordering::Relaxed), 1);
        assert_eq!(snap.sse.min(), 0, "a negative latency counts as 0");
    }
}
