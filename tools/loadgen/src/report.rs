//! The report: every parameter and figure of a run, as text (one line per figure) or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Args, Protocol};
use crate::e2e::EndToEnd;
use crate::errors::{ErrorCount, ErrorTally};
use crate::read::GetPhase;
use crate::stats::{Summary, round2};
use crate::submit::SubmitPhase;
use crate::wait::WaitPhase;

/// What a run measured, for [`Report::new`].
pub struct Measured<'a> {
    /// The minted user, if any.
    pub user: Option<String>,
    /// Phase 1.
    pub submit: &'a SubmitPhase,
    /// Phase 2.
    pub wait: &'a WaitPhase,
    /// Phase 2's figures.
    pub e2e: &'a EndToEnd,
    /// With `--watch`: submit to terminal event at the client.
    pub notified: Option<&'a Histogram<u64>>,
    /// Phase 3.
    pub get: &'a GetPhase,
    /// Every phase's errors.
    pub errors: ErrorTally,
}

/// Everything a run measured.
#[derive(Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    protocol: Protocol,
    url: String,
    /// The minted user, if the token was minted here (the first, with several).
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// Users the submit calls were spread over.
    users: usize,
    /// `closed-loop` (as fast as possible) or `open-loop` (at `target_rate`).
    mode: &'static str,
    tasks: usize,
    /// Tasks per second; 0 = unlimited.
    target_rate: f64,
    concurrency: usize,
    batch: usize,
    delay_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
    submitted: usize,
    submit_failed_tasks: usize,
    submit_seconds: f64,
    /// Accepted tasks per second over the submit phase.
    submit_throughput: f64,
    /// Per call (a batch is one call).
    submit_latency_ms: Option<Summary>,
    /// Open loop: how late calls left the client behind their schedule (part of the latency).
    #[serde(skip_serializing_if = "Option::is_none")]
    submit_schedule_lag_ms: Option<Summary>,
    completed: usize,
    timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_tasks: Option<usize>,
    e2e_seconds: Option<f64>,
    /// Completed tasks / (last completed_at - first submit start).
    e2e_throughput: Option<f64>,
    drain_after_submit_seconds: Option<f64>,
    submit_to_complete_ms: Option<Summary>,
    /// With `--watch`: each task's terminal event's arrival minus its submit start.
    #[serde(skip_serializing_if = "Option::is_none")]
    submit_to_notified_ms: Option<Summary>,
    get_calls: usize,
    get_latency_ms: Option<Summary>,
    errors: BTreeMap<String, ErrorCount>,
}

impl Report {
    /// The report of a run with `args` that measured `m`.
    pub fn new(args: &Args, m: Measured<'_>) -> Self {
        let submitted = m.submit.tasks.len();
        Self {
            label: args.label.clone(),
            protocol: args.protocol,
            url: args.url.clone(),
            user: m.user,
            users: args.users,
            mode: if args.rate > 0.0 {
                "open-loop"
            } else {
                "closed-loop"
            },
            tasks: args.tasks,
            target_rate: args.rate,
            concurrency: args.concurrency,
            batch: args.batch,
            delay_ms: args.delay_ms,
            connections: (args.protocol == Protocol::Grpc).then_some(args.connections),
            submitted,
            submit_failed_tasks: args.tasks - submitted,
            submit_seconds: round2(m.submit.elapsed.as_secs_f64()),
            submit_throughput: round2(submitted as f64 / m.submit.elapsed.as_secs_f64().max(1e-9)),
            submit_latency_ms: Summary::of(&m.submit.latency),
            submit_schedule_lag_ms: m.submit.lag.as_ref().and_then(Summary::of),
            completed: m.wait.completed.len(),
            timed_out: m.wait.timed_out,
            failed_tasks: m.wait.failed,
            e2e_seconds: m.e2e.seconds.map(round2),
            e2e_throughput: m.e2e.throughput.map(round2),
            drain_after_submit_seconds: m.e2e.drain_seconds.map(round2),
            submit_to_complete_ms: Summary::of(&m.e2e.latency),
            submit_to_notified_ms: m.notified.and_then(Summary::of),
            get_calls: m.get.calls,
            get_latency_ms: Summary::of(&m.get.latency),
            errors: m.errors.kinds,
        }
    }

    /// Whether any call failed.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The report as text, one line per figure.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.2} {unit}"));
        writeln!(
            out,
            "loadgen{}: {} {} | n={} | {} | concurrency={} | batch={} | users={} | delay_ms={}{}",
            self.label
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default(),
            match self.protocol {
                Protocol::Grpc => "gRPC",
                Protocol::Http => "HTTP",
            },
            self.url,
            self.tasks,
            if self.target_rate > 0.0 {
                format!("open-loop at {} tasks/s", self.target_rate)
            } else {
                "closed-loop (as fast as possible)".to_owned()
            },
            self.concurrency,
            self.batch,
            self.users,
            self.delay_ms,
            self.connections
                .map(|c| format!(" | connections={c}"))
                .unwrap_or_default(),
        )?;
        writeln!(
            out,
            "  submit:             {} of {} accepted in {:.2} s = {:.2} tasks/s",
            self.submitted, self.tasks, self.submit_seconds, self.submit_throughput
        )?;
        writeln!(
            out,
            "  submit latency:     {}{}",
            Summary::line(&self.submit_latency_ms, true),
            if self.batch > 1 { "  [per call]" } else { "" }
        )?;
        if self.submit_schedule_lag_ms.is_some() {
            writeln!(
                out,
                "  schedule lag:       {}  [included above]",
                Summary::line(&self.submit_schedule_lag_ms, true)
            )?;
        }
        writeln!(
            out,
            "  completed:          {} of {}{}",
            self.completed,
            self.submitted,
            if self.timed_out { "  (TIMED OUT)" } else { "" }
        )?;
        writeln!(
            out,
            "  end-to-end:         {} over {}  (queue drained {} after the last submit)",
            opt(self.e2e_throughput, "tasks/s"),
            opt(self.e2e_seconds, "s"),
            opt(self.drain_after_submit_seconds, "s"),
        )?;
        writeln!(
            out,
            "  submit->complete:   {}",
            Summary::line(&self.submit_to_complete_ms, true)
        )?;
        if self.submit_to_notified_ms.is_some() {
            writeln!(
                out,
                "  submit->notified:   {}  [terminal event at the client]",
                Summary::line(&self.submit_to_notified_ms, true)
            )?;
        }
        writeln!(
            out,
            "  GetTask latency:    {}",
            Summary::line(&self.get_latency_ms, false)
        )?;
        if self.errors.is_empty() {
            writeln!(out, "  errors:             none")?;
        } else {
            writeln!(out, "  errors:")?;
            for (kind, c) in &self.errors {
                writeln!(out, "    {kind}: {} call(s); e.g. {}", c.calls, c.example)?;
            }
        }
        Ok(out)
    }
}
