//! The phases and their report lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_integration_service::domain::UserId;
use ai_integration_service::domain::eventstore::{
    EventEnvelope, EventMetadata, EventType, ExpectedVersion, StreamId,
};
use ai_integration_service::store::eventstore::EventStore;
use ai_integration_service::store::progress::ProjectionStore;
use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::args::Args;

/// Runs every phase and prints each one's figures.
pub async fn run_all(
    store: Arc<dyn EventStore>,
    projections: Arc<dyn ProjectionStore>,
    args: &Args,
) -> anyhow::Result<()> {
    let stored = appends(&store, args).await?;
    if args.singles > 0 {
        singles(&store, args.singles).await?;
    }
    catch_up(&store, stored + args.singles as u64, args.page).await?;
    if args.lag_seconds > 0 {
        crate::lag::projection_lag(store, projections, args).await?;
    }
    Ok(())
}

/// A histogram of microseconds, 1 µs to one minute.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("creating a histogram")
}

/// Records `d` in `h`, in microseconds.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// `p50 / p99 / max` of `h`, in milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// `n` events of a learning session (seed 002's CorrectAnswerGiven), as an appender would
/// write them: ~100 bytes of data, correlation and user in the metadata.
fn session_events(session: &str, first: usize, n: usize) -> Vec<EventEnvelope> {
    let kind = EventType::parse("CorrectAnswerGiven").expect("a valid type name");
    let user = UserId::parse("bench-user").expect("a valid user id");
    let now = chrono::Utc::now();
    (first..first + n)
        .map(|i| {
            let data = json!({
                "session_id": session,
                "item_id": format!("item-{i}"),
                "response_time_ms": 800 + i % 700,
            });
            let meta = EventMetadata::at(now)
                .correlated(session)
                .by_user(user.clone());
            EventEnvelope::new(kind.clone(), data, meta)
        })
        .collect()
}

/// Phase 1: `args.appenders` appenders, `args.batches` batches of `args.batch` each. Returns
/// how many events were stored.
async fn appends(store: &Arc<dyn EventStore>, args: &Args) -> anyhow::Result<u64> {
    let started = Instant::now();
    let appenders: Vec<_> = (0..args.appenders)
        .map(|a| {
            let (store, batches, batch) = (store.clone(), args.batches, args.batch);
            tokio::spawn(async move {
                let stream = StreamId::parse(&format!("session-{a}"))?;
                let mut h = histogram()?;
                let mut version = 0;
                for b in 0..batches {
                    let events = session_events(stream.as_str(), b * batch, batch);
                    let sent = Instant::now();
                    let appended = store
                        .append_events(&stream, events, ExpectedVersion::Exact(version))
                        .await?;
                    record(&mut h, sent.elapsed());
                    version = appended.stream_version;
                }
                anyhow::Ok(h)
            })
        })
        .collect();
    let mut latency = histogram()?;
    for a in appenders {
        latency.add(a.await??)?;
    }
    let elapsed = started.elapsed();
    let events = (args.appenders * args.batches * args.batch) as u64;
    println!(
        "append: {events} events in {:.2} s = {:.0} events/s ({} appenders, batches of {}); \
         one batch: {}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        args.appenders,
        args.batch,
        percentiles(&latency)
    );
    Ok(events)
}

/// Phase 2: `n` appends of one event each, one at a time.
async fn singles(store: &Arc<dyn EventStore>, n: usize) -> anyhow::Result<()> {
    let stream = StreamId::parse("session-single")?;
    let mut h = histogram()?;
    let started = Instant::now();
    for i in 0..n {
        let events = session_events(stream.as_str(), i, 1);
        let sent = Instant::now();
        let expected = ExpectedVersion::Exact(i as u64);
        store.append_events(&stream, events, expected).await?;
        record(&mut h, sent.elapsed());
    }
    let elapsed = started.elapsed();
    println!(
        "single: {n} appends of 1 event in {:.2} s = {:.0}/s; one append: {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentiles(&h)
    );
    Ok(())
}

/// Phase 3: the global stream from the start, `page` events per read; checks it holds
/// `expected` events in position order.
async fn catch_up(store: &Arc<dyn EventStore>, expected: u64, page: u32) -> anyhow::Result<()> {
    let mut h = histogram()?;
    let (mut next, mut read, mut last) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    loop {
        let sent = Instant::now();
        let events = store.read_all_events(next, page).await?;
        record(&mut h, sent.elapsed());
        let Some(tail) = events.last() else { break };
        ensure!(
            events.first().map(|e| e.global_position) > Some(last),
            "positions went backwards after {last}"
        );
        last = tail.global_position;
        next = last + 1;
        read += events.len() as u64;
    }
    let elapsed = started.elapsed();
    ensure!(read == expected, "read {read} events, expected {expected}");
    println!(
        "catch-up: {read} events in {:.2} s = {:.0} events/s (pages of {page}); one page: {}",
        elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64(),
        percentiles(&h)
    );
    Ok(())
}
