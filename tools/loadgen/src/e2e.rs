//! Submit-to-complete and submit-to-notified figures: per task, a server or client time minus
//! the client's submit start (client and server share a clock when both run on one machine).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use crate::stats::histogram;
use crate::submit::SubmitPhase;
use crate::wait::WaitPhase;

/// Submit-to-complete figures.
pub struct EndToEnd {
    /// Per task: `completed_at` minus client submit start, microseconds.
    pub latency: Histogram<u64>,
    /// First submit start to last `completed_at`.
    pub seconds: Option<f64>,
    /// Completed tasks per second over `seconds`.
    pub throughput: Option<f64>,
    /// End of the submit phase to the last `completed_at`: how long the backlog took to drain.
    pub drain_seconds: Option<f64>,
}

impl EndToEnd {
    /// The figures of the tasks `wait` saw completed.
    pub fn compute(submit: &SubmitPhase, wait: &WaitPhase) -> anyhow::Result<Self> {
        let latency = since_submit(submit, &wait.completed)?;
        let last = wait.completed.values().max().copied();
        let seconds = match (submit.first_start, last) {
            (Some(first), Some(last)) => Some(secs(last - first)),
            _ => None,
        };
        Ok(Self {
            latency,
            seconds,
            throughput: seconds
                .filter(|s| *s > 0.0)
                .map(|s| wait.completed.len() as f64 / s),
            drain_seconds: last.map(|l| secs(l - submit.end).max(0.0)),
        })
    }
}

/// Per submitted task seen in `at`: that time minus the task's submit start.
pub fn since_submit(
    submit: &SubmitPhase,
    at: &HashMap<String, DateTime<Utc>>,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = histogram()?;
    for t in &submit.tasks {
        if let Some(then) = at.get(&t.id) {
            let us = (*then - t.start).num_microseconds().unwrap_or(0).max(0);
            latency.saturating_record(us.unsigned_abs());
        }
    }
    Ok(latency)
}

/// A signed duration in seconds.
fn secs(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}
