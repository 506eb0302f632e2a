//! The report: every parameter and figure of a run, as text or JSON, with the verdict against
//! the targets of issue 5. The text form is in `text.rs`.

mod text;

use std::collections::BTreeMap;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{KINDS, LatencySnapshot};
use crate::process::{FileLimit, Memory};

/// Target: resident memory per idle connection, KiB.
pub const TARGET_KIB_PER_CONNECTION: f64 = 16.0;
/// Target: stored -> delivered p99, milliseconds.
pub const TARGET_P99_MS: f64 = 20.0;

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        Some(Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }

    fn line(s: &Option<Self>) -> String {
        match s {
            None => "n/a".into(),
            Some(s) => format!(
                "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms  (n={})",
                s.p50, s.p90, s.p99, s.p999, s.max, s.count
            ),
        }
    }
}

/// The exact parameters of a run.
#[derive(Debug, Serialize)]
pub struct Params {
    /// `--label`.
    pub label: Option<String>,
    /// The server's base URL.
    pub url: String,
    /// WebSockets plus SSE streams asked for.
    pub connections: usize,
    /// `--ws`.
    pub ws: usize,
    /// `--sse`.
    pub sse: usize,
    /// Users the connections belong to.
    pub users: usize,
    /// `--event-rate`, events per second.
    pub event_rate: f64,
    /// Echo tasks per second (a third of the event rate).
    pub task_rate: f64,
    /// `--duration`, seconds.
    pub duration_s: f64,
    /// `--settle`, seconds.
    pub settle_s: f64,
    /// `--hold`, seconds.
    pub hold_s: f64,
    /// `--connect-concurrency`.
    pub connect_concurrency: usize,
    /// `--submit-concurrency`.
    pub submit_concurrency: usize,
    /// `--batch`.
    pub batch: u64,
    /// `--drain-timeout`, seconds.
    pub drain_timeout_s: f64,
    /// `--source-addrs`.
    pub source_addrs: Vec<String>,
    /// The server process measured.
    pub server_pid: u32,
    /// This process's open-files limit, after raising it.
    pub file_limit: FileLimit,
}

/// Opening the connections.
#[derive(Debug, Serialize)]
pub struct Connect {
    /// WebSockets that opened.
    pub opened_ws: usize,
    /// SSE streams that opened.
    pub opened_sse: usize,
    /// Connections that failed to open, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Time spent opening, without the settle pauses.
    pub seconds: f64,
    /// Connect to first (`subscribed`) frame.
    pub open_time_ms: Option<Summary>,
    /// Whether the open-files limit is what made connections fail.
    pub file_limit_hit: bool,
}

/// Server memory at each step, KiB.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// Before any connection.
    pub server_before: Memory,
    /// After the WebSockets opened (and `--settle`).
    pub server_after_ws: Memory,
    /// After the SSE streams opened (and `--settle`).
    pub server_after_sse: Memory,
    /// After holding everything idle for `--hold`.
    pub server_idle: Memory,
    /// After the event phase drained.
    pub server_after_events: Memory,
    /// (after WebSockets - before) / WebSockets opened.
    pub kib_per_ws: Option<f64>,
    /// (after SSE - after WebSockets) / SSE streams opened.
    pub kib_per_sse: Option<f64>,
    /// (idle - before) / connections opened: the headline figure.
    pub kib_per_connection: Option<f64>,
    /// This load program, after the event phase.
    pub client_after_events: Memory,
}

/// The event phase.
#[derive(Debug, Serialize)]
pub struct Events {
    /// Echo tasks submitted.
    pub tasks_sent: u64,
    /// Echo tasks the server accepted.
    pub tasks_accepted: u64,
    /// Tasks whose submit failed, by kind.
    pub submit_errors: BTreeMap<String, u64>,
    /// Submit call latency from each call's due time.
    pub submit_latency_ms: Option<Summary>,
    /// How long producing took.
    pub produce_seconds: f64,
    /// Three events per accepted task over the produce phase.
    pub events_stored_per_s: f64,
    /// Events the open connections should have received (3 per task, per connection).
    pub expected_deliveries: u64,
    /// Events received, over every connection.
    pub delivered: u64,
    /// Deliveries per second over the produce phase.
    pub deliveries_per_s: f64,
    /// Expected but not received by a connection that stayed open.
    pub missing: u64,
    /// Received by connections beyond what was expected (a submit counted failed that was
    /// stored anyway).
    pub unexpected: u64,
    /// Times an id skipped past the next expected one.
    pub gaps: u64,
    /// Ids skipped over in those gaps.
    pub skipped_ids: u64,
    /// Events whose id was at or below one already seen.
    pub duplicates: u64,
    /// Whether every open connection got all its events within `--drain-timeout`.
    pub drained: bool,
    /// How long the drain waited.
    pub drain_seconds: f64,
    /// Events whose `created_at` is after their arrival (recorded as 0).
    pub negative_latencies: u64,
    /// CPU use while producing.
    pub cpu: Option<Cpu>,
}

/// CPU use over the produce phase.
#[derive(Debug, Serialize)]
pub struct Cpu {
    /// The server's CPU time per second (1.0 = one core busy).
    pub server_cores: f64,
    /// The whole machine (server, load program, databases, anything else), percent of all cores.
    pub machine_busy_percent: f64,
    /// Time the hypervisor gave to other VMs, percent of all cores.
    pub machine_steal_percent: f64,
    /// Cores of the machine.
    pub cores: usize,
}

/// Stored -> delivered latency.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    /// Over WebSockets.
    pub ws: Option<Summary>,
    /// Over SSE streams.
    pub sse: Option<Summary>,
    /// Over both: what the target is about.
    pub all: Option<Summary>,
    /// Per event type (both transports).
    pub by_type: BTreeMap<String, Summary>,
}

impl LatencyReport {
    /// Percentiles of every event, per transport, both together and per event type.
    pub fn of(snap: &LatencySnapshot) -> anyhow::Result<Self> {
        let mut all = snap.ws.clone();
        all.add(&snap.sse).context("merging histograms")?;
        Ok(Self {
            ws: Summary::of(&snap.ws),
            sse: Summary::of(&snap.sse),
            all: Summary::of(&all),
            by_type: KINDS
                .iter()
                .zip(&snap.by_kind)
                .filter_map(|(k, h)| Some(((*k).to_owned(), Summary::of(h)?)))
                .collect(),
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run's parameters.
    pub params: Params,
    /// Phase 1.
    pub connect: Connect,
    /// The server's memory at each step.
    pub memory: MemoryReport,
    /// Phases 2 and 3.
    pub events: Events,
    /// Stored -> delivered.
    pub latency_ms: LatencyReport,
    /// Connections the server or the network ended while held, by reason.
    pub disconnects: BTreeMap<String, u64>,
    /// Against the targets.
    pub verdict: Verdict,
}

/// The targets of issue 5.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// Connections the target is about.
    pub connections_target: usize,
    /// Connections open after the idle hold.
    pub connections_held: usize,
    /// [`TARGET_KIB_PER_CONNECTION`].
    pub kib_per_connection_target: f64,
    /// Whether the idle RSS per connection met it.
    pub kib_per_connection_met: Option<bool>,
    /// Events per second the target is about.
    pub event_rate_target: f64,
    /// [`TARGET_P99_MS`].
    pub p99_target_ms: f64,
    /// Whether stored -> delivered p99 met it.
    pub p99_met: Option<bool>,
}

impl Verdict {
    /// Judges `r` (10,000 connections and 5,000 events/s are what the targets are about).
    pub fn of(connections_held: usize, memory: &MemoryReport, lat: &LatencyReport) -> Self {
        Self {
            connections_target: 10_000,
            connections_held,
            kib_per_connection_target: TARGET_KIB_PER_CONNECTION,
            kib_per_connection_met: memory
                .kib_per_connection
                .map(|k| k <= TARGET_KIB_PER_CONNECTION),
            event_rate_target: 5000.0,
            p99_target_ms: TARGET_P99_MS,
            p99_met: lat.all.as_ref().map(|s| s.p99 <= TARGET_P99_MS),
        }
    }
}

/// `v` rounded to one decimal.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
