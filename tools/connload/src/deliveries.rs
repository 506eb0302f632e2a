//! Phase 3: wait until every open connection has its user's events, then count deliveries,
//! gaps and duplicates over every connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::EVENTS_PER_TASK;
use crate::client::ConnStats;
use crate::produce::Produced;
use crate::report::{Events, Summary};

/// How often the drain checks the connections.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Waits up to `timeout` until every open connection has seen three events per task accepted
/// for its user; returns whether they all did, and the time waited in seconds.
pub async fn drain(
    all: &[Arc<ConnStats>],
    accepted: &[AtomicU64],
    timeout: Duration,
) -> (bool, f64) {
    let drain_start = Instant::now();
    let expected = |s: &ConnStats| accepted[s.user].load(Ordering::Relaxed) * EVENTS_PER_TASK;
    let mut drained = false;
    while drain_start.elapsed() < timeout {
        drained = all
            .iter()
            .filter(|s| s.is_open())
            .all(|s| s.seen.load(Ordering::Relaxed) >= expected(s));
        if drained {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    (drained, drain_start.elapsed().as_secs_f64())
}

/// Delivery counts over every connection.
pub fn events_report(
    all: &[Arc<ConnStats>],
    accepted: &[AtomicU64],
    produced: Option<&Produced>,
) -> Events {
    let (mut expected, mut delivered, mut missing, mut unexpected) = (0, 0, 0, 0);
    let (mut gaps, mut skipped, mut duplicates) = (0, 0, 0);
    for s in all {
        let seen = s.seen.load(Ordering::Relaxed);
        delivered += seen;
        gaps += s.gaps.load(Ordering::Relaxed);
        skipped += s.skipped.load(Ordering::Relaxed);
        duplicates += s.duplicates.load(Ordering::Relaxed);
        if s.is_open() {
            let want = accepted[s.user].load(Ordering::Relaxed) * EVENTS_PER_TASK;
            expected += want;
            missing += want.saturating_sub(seen);
            unexpected += seen.saturating_sub(want);
        }
    }
    let seconds = produced.map_or(0.0, |p| p.elapsed.as_secs_f64());
    let rate = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds).round()
        } else {
            0.0
        }
    };
    let tasks_accepted = produced.map_or(0, |p| p.accepted);
    Events {
        tasks_sent: produced.map_or(0, |p| p.sent),
        tasks_accepted,
        submit_errors: produced.map(|p| p.errors.clone()).unwrap_or_default(),
        submit_latency_ms: produced.and_then(|p| Summary::of(&p.latency)),
        produce_seconds: (seconds * 100.0).round() / 100.0,
        events_stored_per_s: rate(tasks_accepted * EVENTS_PER_TASK),
        expected_deliveries: expected,
        delivered,
        deliveries_per_s: rate(delivered),
        missing,
        unexpected,
        gaps,
        skipped_ids: skipped,
        duplicates,
        drained: false,
        drain_seconds: 0.0,
        negative_latencies: 0,
        cpu: None,
    }
}
