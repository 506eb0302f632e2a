//! Projections of the event store: how far behind the head each is, and how long an event
//! waits to be folded.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Seconds from an event's commit to the commit of the batch that folded it, by
/// `projection` (the active generation only; a rebuild's events are old by design).
pub const PROJECTION_EVENT_LAG: &str = "ais_projection_event_lag_seconds";
/// Events committed but not yet folded, by `projection`.
pub const PROJECTION_EVENTS_BEHIND: &str = "ais_projection_events_behind";
/// Seconds the oldest unfolded event has waited, by `projection` (0 when caught up).
pub const PROJECTION_OLDEST_AGE: &str = "ais_projection_oldest_unprocessed_seconds";
/// Seconds since the runner holding the projection's lease last beat, by `projection`.
pub const PROJECTION_HEARTBEAT_AGE: &str = "ais_projection_heartbeat_age_seconds";
/// 1 while the projection is parked on an event it cannot fold, else 0, by `projection`.
pub const PROJECTION_PARKED: &str = "ais_projection_parked";

/// Task finishes the task feed could not append to the event store (so not in the task
/// statistics): dropped when it was too far behind, or given up after retries.
pub const TASK_FEED_DROPPED: &str = "ais_task_feed_dropped_total";

pub(super) fn describe() {
    describe_counter!(
        TASK_FEED_DROPPED,
        "Task finishes the task feed could not append to the event store."
    );
    describe_histogram!(
        PROJECTION_EVENT_LAG,
        metrics::Unit::Seconds,
        "Seconds from an event's commit to the commit of its fold, by projection."
    );
    describe_gauge!(
        PROJECTION_EVENTS_BEHIND,
        "Events committed but not yet folded, by projection."
    );
    describe_gauge!(
        PROJECTION_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Seconds the oldest unfolded event has waited, by projection."
    );
    describe_gauge!(
        PROJECTION_HEARTBEAT_AGE,
        metrics::Unit::Seconds,
        "Seconds since the projection's runner last beat, by projection."
    );
    describe_gauge!(
        PROJECTION_PARKED,
        "1 while the projection is parked on an event it cannot fold, by projection."
    );
}

/// An event of `projection` folded `lag` after its commit.
pub fn projection_event_lag(projection: &'static str, lag: Duration) {
    histogram!(PROJECTION_EVENT_LAG, "projection" => projection).record(lag.as_secs_f64());
}

/// A projection's standing, read at scrape time.
pub fn set_projection_lag(
    projection: &'static str,
    events_behind: u64,
    oldest_age: Duration,
    heartbeat_age: Option<Duration>,
    parked: bool,
) {
    gauge!(PROJECTION_EVENTS_BEHIND, "projection" => projection).set(events_behind as f64);
    gauge!(PROJECTION_OLDEST_AGE, "projection" => projection).set(oldest_age.as_secs_f64());
    if let Some(age) = heartbeat_age {
        gauge!(PROJECTION_HEARTBEAT_AGE, "projection" => projection).set(age.as_secs_f64());
    }
    gauge!(PROJECTION_PARKED, "projection" => projection).set(if parked { 1.0 } else { 0.0 });
}

/// `n` task finishes were not fed to the event store.
pub fn task_feed_dropped(n: u64) {
    counter!(TASK_FEED_DROPPED).increment(n);
}
