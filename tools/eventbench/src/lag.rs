//! Phase 4: projection lag under a steady append rate.
//!
//! The service's own [`ProjectionManager`] runs on the store (both projections, the default
//! runner settings, the head polled every 20 ms as `app.rs` does) while `--lag-appenders`
//! appenders append learning sessions at `--lag-rate` events/s in total, each batch of
//! `--lag-batch` events to a session stream of its own. An append moves the head at once, as
//! the service's append path does. A watcher reads the progress projection's checkpoint
//! every millisecond; an appended batch's lag is the time from its append's answer to the
//! first read of a checkpoint at or past its last position (so the figure includes up to one
//! millisecond of watching).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ai_integration_service::domain::UserId;
use ai_integration_service::domain::eventstore::{
    EventEnvelope, EventMetadata, EventType, ExpectedVersion, StreamId,
};
use ai_integration_service::domain::projection::ProjectionName;
use ai_integration_service::service::projections::RunnerSettings;
use ai_integration_service::service::{ProjectionManager, StoreHead};
use ai_integration_service::store::eventstore::EventStore;
use ai_integration_service::store::progress::ProjectionStore;
use anyhow::ensure;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::args::Args;
use crate::phases::{histogram, percentiles, record};

/// How often the service polls the head for appends made on other instances (`app.rs`).
const HEAD_POLL: Duration = Duration::from_millis(20);
/// How often the watcher reads the checkpoint.
const WATCH_EVERY: Duration = Duration::from_millis(1);
/// Distinct users the sessions belong to (each user's rows are updated by many batches).
const USERS: usize = 200;

/// Batches appended and not yet seen folded: (last position, when the append answered).
type Pending = Arc<Mutex<VecDeque<(u64, Instant)>>>;

/// Runs the phase and prints its figures.
pub async fn projection_lag(
    events: Arc<dyn EventStore>,
    projections: Arc<dyn ProjectionStore>,
    args: &Args,
) -> anyhow::Result<()> {
    let head = StoreHead::new();
    head.advanced(events.last_position().await?);
    let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
    tracker.spawn(
        head.clone()
            .run(events.clone(), HEAD_POLL, cancel.child_token()),
    );
    ProjectionManager {
        events: events.clone(),
        store: projections.clone(),
        head: head.clone(),
        owner: "eventbench".to_owned(),
        settings: RunnerSettings::default(),
    }
    .spawn(&tracker, &cancel);

    // Let the projections catch up with the earlier phases' events first.
    let start_head = events.last_position().await?;
    wait_until_folded(&projections, start_head, Duration::from_secs(600)).await?;

    let pending: Pending = Arc::default();
    let appending = CancellationToken::new();
    let watcher = tokio::spawn(watch(
        projections.clone(),
        pending.clone(),
        appending.clone(),
    ));
    let started = Instant::now();
    let appenders: Vec<_> = (0..args.lag_appenders)
        .map(|a| {
            let paced = Paced {
                events: events.clone(),
                head: head.clone(),
                pending: pending.clone(),
                appender: a,
                rate: args.lag_rate as f64 / args.lag_appenders as f64,
                batch: args.lag_batch,
                run_for: Duration::from_secs(args.lag_seconds),
            };
            tokio::spawn(paced.run())
        })
        .collect();
    let mut appended = 0u64;
    for a in appenders {
        appended += a.await??;
    }
    let elapsed = started.elapsed();
    appending.cancel();
    let lag = tokio::time::timeout(Duration::from_secs(60), watcher).await???;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    println!(
        "projection lag: {appended} events in {:.2} s = {:.0} events/s ({} appenders, batches of \
         {}); append answered -> folded: {} over {} batches",
        elapsed.as_secs_f64(),
        appended as f64 / elapsed.as_secs_f64(),
        args.lag_appenders,
        args.lag_batch,
        percentiles(&lag),
        lag.len()
    );
    Ok(())
}

/// Waits until the progress projection has folded everything up to `position`.
async fn wait_until_folded(
    projections: &Arc<dyn ProjectionStore>,
    position: u64,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let status = projections.status(ProjectionName::Progress).await?;
        if status.position >= position {
            return Ok(());
        }
        ensure!(
            status.parked.is_none(),
            "the projection parked: {:?}",
            status.parked
        );
        ensure!(
            Instant::now() < deadline,
            "the projection is at {} of {position} after {within:?}",
            status.position
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the checkpoint every millisecond and records each batch's lag as the checkpoint
/// passes it; returns once `appending` is over and every batch was seen folded.
async fn watch(
    projections: Arc<dyn ProjectionStore>,
    pending: Pending,
    appending: CancellationToken,
) -> anyhow::Result<Histogram<u64>> {
    let mut lag = histogram()?;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Whether appending was over before this read: then an empty queue after it is final.
        let over = appending.is_cancelled();
        let folded = projections.status(ProjectionName::Progress).await?.position;
        let now = Instant::now();
        let mut queue = pending.lock().expect("pending batches");
        // Appenders answer out of position order, so every batch is checked, not the front.
        queue.retain(|&(position, answered)| {
            let done = position <= folded;
            if done {
                record(&mut lag, now.saturating_duration_since(answered));
            }
            !done
        });
        if over && queue.is_empty() {
            return Ok(lag);
        }
    }
}

/// One appender: batches of learning events at a steady rate, for a while.
struct Paced {
    events: Arc<dyn EventStore>,
    head: StoreHead,
    pending: Pending,
    appender: usize,
    /// Events per second.
    rate: f64,
    batch: usize,
    run_for: Duration,
}

impl Paced {
    /// Appends until `run_for` is over; returns how many events it stored.
    async fn run(self) -> anyhow::Result<u64> {
        let every = Duration::from_secs_f64(self.batch as f64 / self.rate);
        let mut tick = tokio::time::interval(every);
        // A slow append is made up for by the next ones, as a steady producer would.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let (mut stored, mut session) = (0u64, 0usize);
        while started.elapsed() < self.run_for {
            tick.tick().await;
            let stream = StreamId::parse(&format!("session-lag-{}-{session}", self.appender))?;
            let user = UserId::parse(&format!(
                "lag-user-{}",
                (self.appender * 7919 + session) % USERS
            ))?;
            let appended = self
                .events
                .append_events(
                    &stream,
                    batch_of(stream.as_str(), &user, self.batch),
                    ExpectedVersion::NoStream,
                )
                .await?;
            let last = appended.last_position();
            // Queued before the head moves, so the watcher cannot see the fold first.
            self.pending
                .lock()
                .expect("pending batches")
                .push_back((last, Instant::now()));
            self.head.advanced(last);
            stored += self.batch as u64;
            session += 1;
        }
        Ok(stored)
    }
}

/// A session of `n` events: started, answers (one in four wrong), completed.
fn batch_of(session: &str, user: &UserId, n: usize) -> Vec<EventEnvelope> {
    let meta = EventMetadata::at(chrono::Utc::now())
        .correlated(session)
        .by_user(user.clone());
    let typed = |name: &str, data| {
        let kind = EventType::parse(name).expect("a valid type name");
        EventEnvelope::new(kind, data, meta.clone())
    };
    let answers = n.saturating_sub(2);
    let mut events = vec![typed(
        "SessionStarted",
        json!({"session_id": session, "user_id": user.as_str(), "item_count": answers}),
    )];
    events.extend((0..answers).map(|i| {
        let kind = if i % 4 == 3 {
            "WrongAnswerGiven"
        } else {
            "CorrectAnswerGiven"
        };
        typed(
            kind,
            json!({"session_id": session, "item_id": format!("item-{}", i % 50),
                   "response_time_ms": 800 + i % 700}),
        )
    }));
    events.push(typed(
        "SessionCompleted",
        json!({"session_id": session, "score": answers, "duration_seconds": 60}),
    ));
    events.truncate(n);
    events
}
