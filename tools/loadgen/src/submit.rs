//! Phase 1: submit `N` tasks, one per call or `--batch` per call, and keep each task's id and
//! (intended) submit start.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

use crate::api::Api;
use crate::args::Args;
use crate::errors::ErrorCount;
use crate::pacing::run_calls;
use crate::workload::Workload;

/// One accepted task: its id and when the client started (or was due to start) submitting it.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The id the server gave it.
    pub id: String,
    /// Wall clock of its call's intended start.
    pub start: DateTime<Utc>,
}

/// The submit phase's outcome.
pub struct SubmitPhase {
    /// Accepted tasks, in submit order.
    pub tasks: Vec<Submitted>,
    /// Per-call latency, microseconds.
    pub latency: Histogram<u64>,
    /// Open loop: dispatch lag behind the schedule, microseconds.
    pub lag: Option<Histogram<u64>>,
    /// Failed calls by kind.
    pub errors: BTreeMap<String, ErrorCount>,
    /// Start of the first call to the last answer.
    pub elapsed: Duration,
    /// Wall clock of the first intended start.
    pub first_start: Option<DateTime<Utc>>,
    /// Wall clock of the end of the phase.
    pub end: DateTime<Utc>,
}

/// Submits `--tasks` tasks at `--rate` (tasks per second; calls carry `--batch` each) and, with
/// `--trace`, writes each call's start and latency.
pub async fn submit_phase(api: &Api, args: &Args) -> anyhow::Result<SubmitPhase> {
    let (n, b) = (args.tasks, args.batch);
    let calls = n.div_ceil(b);
    let batched = b > 1;
    let work = Workload {
        task_type: args.task_type.clone(),
        delay_ms: args.delay_ms,
    };
    let calls_per_sec = args.rate / b as f64;
    let phase = run_calls(calls, calls_per_sec, args.concurrency, |j| {
        let api = api.clone();
        let first = j * b;
        let count = b.min(n - first);
        let work = work.clone();
        async move { api.submit(j, first, count, batched, &work).await }
    })
    .await?;
    let end = Utc::now();
    if let Some(path) = &args.trace {
        write_timeline(path, &phase.timeline)?;
    }
    let errors = phase.errors;
    let tasks: Vec<Submitted> = phase
        .ok
        .into_iter()
        .flat_map(|(_, start, ids)| ids.into_iter().map(move |id| Submitted { id, start }))
        .collect();
    let first_start = tasks.iter().map(|t| t.start).min();
    Ok(SubmitPhase {
        tasks,
        latency: phase.latency,
        lag: phase.lag,
        errors,
        elapsed: phase.elapsed,
        first_start,
        end,
    })
}

/// Writes `start latency` lines, both in milliseconds.
fn write_timeline(path: &Path, timeline: &[(Duration, Duration)]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (at, latency) in timeline {
        writeln!(
            out,
            "{:.3} {:.3}",
            at.as_secs_f64() * 1e3,
            latency.as_secs_f64() * 1e3
        )?;
    }
    out.flush()?;
    Ok(())
}
