//! Timed calls under a concurrency cap, closed loop (back to back) or open loop (each call due
//! at its slot of a fixed rate, latency counted from that slot: no coordinated omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::errors::{CallError, ErrorCount, count_error};
use crate::stats::{histogram, micros};

/// What one phase of timed calls produced.
pub struct Phase<T> {
    /// Each successful call's index, intended start (wall clock) and output.
    pub ok: Vec<(usize, DateTime<Utc>, T)>,
    /// Every call's intended start after the phase's start and its latency, in start order.
    pub timeline: Vec<(Duration, Duration)>,
    /// Latency of every call, failed ones included, in microseconds.
    pub latency: Histogram<u64>,
    /// Failures by kind.
    pub errors: BTreeMap<String, ErrorCount>,
    /// From the first intended start to the last answer.
    pub elapsed: Duration,
    /// Open loop only: how late each call left the dispatcher (timer granularity, or every
    /// concurrency slot busy), microseconds. Already included in `latency`.
    pub lag: Option<Histogram<u64>>,
}

/// Runs `calls` calls of `call(j)` with at most `concurrency` in flight. With `calls_per_sec` >
/// 0 call `j` is due at `j / calls_per_sec` seconds (open loop) and its latency counts from that
/// moment; otherwise calls start as soon as a slot is free and latency counts from the send.
pub async fn run_calls<T, F, Fut>(
    calls: usize,
    calls_per_sec: f64,
    concurrency: usize,
    call: F,
) -> anyhow::Result<Phase<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, CallError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut phase = Phase {
        ok: Vec::with_capacity(calls),
        timeline: Vec::with_capacity(calls),
        latency: histogram()?,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
        lag: if calls_per_sec > 0.0 {
            Some(histogram()?)
        } else {
            None
        },
    };
    let start = Instant::now();
    let start_wall = Utc::now();
    let wall = |at: Instant| {
        start_wall
            + chrono::Duration::from_std(at.saturating_duration_since(start)).unwrap_or_default()
    };
    let schedule = move |j: usize| start + Duration::from_secs_f64(j as f64 / calls_per_sec);
    let mut ticks = (calls_per_sec > 0.0).then(|| pace(calls, schedule));
    let mut running = JoinSet::new();
    for j in 0..calls {
        let due = match &mut ticks {
            Some(ticks) => {
                if ticks.recv().await.is_none() {
                    bail!("pacer thread stopped");
                }
                Some(schedule(j))
            }
            None => None,
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            bail!("concurrency semaphore closed");
        };
        let intended = due.unwrap_or_else(Instant::now);
        if let Some(lag) = &mut phase.lag {
            lag.saturating_record(micros(intended.elapsed()));
        }
        let fut = call(j);
        running.spawn(async move {
            let result = fut.await;
            let latency = intended.elapsed();
            drop(slot);
            (j, intended, latency, result)
        });
        while let Some(done) = running.try_join_next() {
            phase.absorb(done, start, &wall);
        }
    }
    while let Some(done) = running.join_next().await {
        phase.absorb(done, start, &wall);
    }
    phase.elapsed = start.elapsed();
    phase.ok.sort_by_key(|(j, _, _)| *j);
    phase.timeline.sort_by_key(|(at, _)| *at);
    Ok(phase)
}

/// Ticks once per call at its due instant, from an OS thread: tokio's timer rounds every sleep
/// up to its next millisecond tick, which would make every open-loop call leave up to 1 ms late
/// (and count that as server latency). A thread's sleep is precise to tens of microseconds.
fn pace(
    calls: usize,
    schedule: impl Fn(usize) -> Instant + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for j in 0..calls {
            let due = schedule(j).into_std();
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// A finished call: its index, intended start, latency and result.
type CallOutcome<T> = (usize, Instant, Duration, Result<T, CallError>);

impl<T> Phase<T> {
    /// Records one finished call (or its task's death).
    fn absorb(
        &mut self,
        done: Result<CallOutcome<T>, tokio::task::JoinError>,
        start: Instant,
        wall: &impl Fn(Instant) -> DateTime<Utc>,
    ) {
        match done {
            Ok((j, intended, latency, result)) => {
                self.latency.saturating_record(micros(latency));
                self.timeline
                    .push((intended.saturating_duration_since(start), latency));
                match result {
                    Ok(out) => self.ok.push((j, wall(intended), out)),
                    Err(e) => count_error(&mut self.errors, &e, 1),
                }
            }
            Err(e) => count_error(
                &mut self.errors,
                &CallError::new("client task died", e.to_string()),
                1,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_every_call_and_keeps_successes_in_order() {
        let phase = run_calls(10, 0.0, 3, |j| async move {
            if j % 4 == 3 {
                Err(CallError::new("odd", format!("call {j}")))
            } else {
                Ok(j * 10)
            }
        })
        .await
        .unwrap();
        assert_eq!(phase.latency.len(), 10);
        assert_eq!(phase.timeline.len(), 10);
        let outs: Vec<usize> = phase.ok.iter().map(|(_, _, out)| *out).collect();
        assert_eq!(outs, [0, 10, 20, 40, 50, 60, 80, 90]);
        assert_eq!(phase.errors["odd"].calls, 2);
        assert!(phase.lag.is_none(), "closed loop has no schedule");
    }

    #[tokio::test]
    async fn open_loop_keeps_to_the_schedule() {
        // 20 calls at 1,000/s: the last is due 19 ms after the first.
        let phase = run_calls(20, 1000.0, 4, |_| async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(phase.lag.as_ref().map(Histogram::len), Some(20));
        assert!(
            phase.elapsed >= Duration::from_millis(19),
            "{:?}",
            phase.elapsed
        );
        let starts: Vec<Duration> = phase.timeline.iter().map(|(at, _)| *at).collect();
        assert_eq!(starts[19], Duration::from_secs_f64(19.0 / 1000.0));
    }
}
