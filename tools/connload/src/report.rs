//! The report: every parameter and figure of a run, as text or JSON, with the verdict against
//! the targets of issue 5.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::process::{FileLimit, Memory};

/// Target: resident memory per idle connection, KiB.
pub const TARGET_KIB_PER_CONNECTION: f64 = 16.0;
/// Target: stored -> delivered p99, milliseconds.
pub const TARGET_P99_MS: f64 = 20.0;

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
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
    pub label: Option<String>,
    pub url: String,
    pub connections: usize,
    pub ws: usize,
    pub sse: usize,
    pub users: usize,
    pub event_rate: f64,
    pub task_rate: f64,
    pub duration_s: f64,
    pub settle_s: f64,
    pub hold_s: f64,
    pub connect_concurrency: usize,
    pub submit_concurrency: usize,
    pub batch: u64,
    pub drain_timeout_s: f64,
    pub source_addrs: Vec<String>,
    pub server_pid: u32,
    pub file_limit: FileLimit,
}

/// Opening the connections.
#[derive(Debug, Serialize)]
pub struct Connect {
    pub opened_ws: usize,
    pub opened_sse: usize,
    /// Connections that failed to open, by reason.
    pub failed: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Connect to first (`subscribed`) frame.
    pub open_time_ms: Option<Summary>,
    /// Whether the open-files limit is what made connections fail.
    pub file_limit_hit: bool,
}

/// Server memory at each step, KiB.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub server_before: Memory,
    pub server_after_ws: Memory,
    pub server_after_sse: Memory,
    pub server_idle: Memory,
    pub server_after_events: Memory,
    /// (after WebSockets - before) / WebSockets opened.
    pub kib_per_ws: Option<f64>,
    /// (after SSE - after WebSockets) / SSE streams opened.
    pub kib_per_sse: Option<f64>,
    /// (idle - before) / connections opened: the headline figure.
    pub kib_per_connection: Option<f64>,
    pub client_after_events: Memory,
}

/// The event phase.
#[derive(Debug, Serialize)]
pub struct Events {
    pub tasks_sent: u64,
    pub tasks_accepted: u64,
    pub submit_errors: BTreeMap<String, u64>,
    pub submit_latency_ms: Option<Summary>,
    pub produce_seconds: f64,
    /// Three events per accepted task over the produce phase.
    pub events_stored_per_s: f64,
    /// Events the open connections should have received (3 per task, per connection).
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub deliveries_per_s: f64,
    /// Expected but not received by a connection that stayed open.
    pub missing: u64,
    /// Received by connections beyond what was expected (a submit counted failed that was
    /// stored anyway).
    pub unexpected: u64,
    pub gaps: u64,
    pub skipped_ids: u64,
    pub duplicates: u64,
    pub drained: bool,
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
    pub ws: Option<Summary>,
    pub sse: Option<Summary>,
    pub all: Option<Summary>,
    /// Per event type (both transports).
    pub by_type: BTreeMap<String, Summary>,
}

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub params: Params,
    pub connect: Connect,
    pub memory: MemoryReport,
    pub events: Events,
    pub latency_ms: LatencyReport,
    /// Connections the server or the network ended while held, by reason.
    pub disconnects: BTreeMap<String, u64>,
    pub verdict: Verdict,
}

/// The targets of issue 5.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub connections_target: usize,
    pub connections_held: usize,
    pub kib_per_connection_target: f64,
    pub kib_per_connection_met: Option<bool>,
    pub event_rate_target: f64,
    pub p99_target_ms: f64,
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

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn kib(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1} KiB"))
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "n/a",
    }
}

impl Report {
    /// The report as text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut o = String::new();
        let p = &self.params;
        writeln!(
            o,
            "connload{}: {} | {} connections ({} ws + {} sse) over {} users | {} events/s ({:.1} echo tasks/s) for {} s",
            p.label
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default(),
            p.url,
            p.connections,
            p.ws,
            p.sse,
            p.users,
            p.event_rate,
            p.task_rate,
            p.duration_s,
        )?;
        writeln!(
            o,
            "  params: settle {} s, hold {} s, connect concurrency {}, submit concurrency {}, batch {}, drain timeout {} s, server pid {}, sources {}, open files soft/hard {}/{}",
            p.settle_s,
            p.hold_s,
            p.connect_concurrency,
            p.submit_concurrency,
            p.batch,
            p.drain_timeout_s,
            p.server_pid,
            if p.source_addrs.is_empty() {
                "default".into()
            } else {
                p.source_addrs.join(",")
            },
            p.file_limit.soft,
            p.file_limit.hard,
        )?;
        let c = &self.connect;
        writeln!(
            o,
            "  connect:        {} ws + {} sse open in {:.2} s; open time {}",
            c.opened_ws,
            c.opened_sse,
            c.seconds,
            Summary::line(&c.open_time_ms)
        )?;
        for (reason, n) in &c.failed {
            writeln!(o, "    failed to open: {n} x {reason}")?;
        }
        if c.file_limit_hit {
            writeln!(
                o,
                "    the open-files limit (soft {}, hard {}) stopped connections from opening",
                p.file_limit.soft, p.file_limit.hard
            )?;
        }
        let m = &self.memory;
        writeln!(
            o,
            "  server RSS:     before {} | after ws {} | after sse {} | idle {} | after events {} (peak {})",
            mib(m.server_before.rss_kib),
            mib(m.server_after_ws.rss_kib),
            mib(m.server_after_sse.rss_kib),
            mib(m.server_idle.rss_kib),
            mib(m.server_after_events.rss_kib),
            mib(m.server_after_events.hwm_kib),
        )?;
        writeln!(
            o,
            "  per connection: {} (ws {}, sse {})  [target <= {} KiB: {}]",
            kib(m.kib_per_connection),
            kib(m.kib_per_ws),
            kib(m.kib_per_sse),
            TARGET_KIB_PER_CONNECTION,
            yes_no(self.verdict.kib_per_connection_met),
        )?;
        writeln!(
            o,
            "  client RSS:     {} after events",
            mib(m.client_after_events.rss_kib)
        )?;
        let e = &self.events;
        writeln!(
            o,
            "  events:         {} of {} tasks accepted in {:.2} s = {:.0} events/s stored; submit latency {}",
            e.tasks_accepted,
            e.tasks_sent,
            e.produce_seconds,
            e.events_stored_per_s,
            Summary::line(&e.submit_latency_ms),
        )?;
        for (kind, n) in &e.submit_errors {
            writeln!(o, "    submit failed: {n} x {kind}")?;
        }
        writeln!(
            o,
            "  delivered:      {} of {} expected ({:.0}/s); missing {}, unexpected {}, gaps {} ({} ids), duplicates {}; {} in {:.2} s after the last submit",
            e.delivered,
            e.expected_deliveries,
            e.deliveries_per_s,
            e.missing,
            e.unexpected,
            e.gaps,
            e.skipped_ids,
            e.duplicates,
            if e.drained { "drained" } else { "NOT drained" },
            e.drain_seconds,
        )?;
        let l = &self.latency_ms;
        writeln!(o, "  stored->delivered, ws:  {}", Summary::line(&l.ws))?;
        writeln!(o, "  stored->delivered, sse: {}", Summary::line(&l.sse))?;
        writeln!(
            o,
            "  stored->delivered, all: {}  [target p99 <= {} ms: {}]",
            Summary::line(&l.all),
            TARGET_P99_MS,
            yes_no(self.verdict.p99_met),
        )?;
        for (kind, sum) in &l.by_type {
            writeln!(o, "    {kind:<14} {}", Summary::line(&Some(sum.clone())))?;
        }
        if let Some(c) = &e.cpu {
            writeln!(
                o,
                "  cpu while producing: server {:.2} cores; machine {:.1}% busy + {:.1}% steal of {} cores",
                c.server_cores, c.machine_busy_percent, c.machine_steal_percent, c.cores
            )?;
        }
        if e.negative_latencies > 0 {
            writeln!(
                o,
                "    {} events arrived before their created_at (clock step); counted as 0",
                e.negative_latencies
            )?;
        }
        if self.disconnects.is_empty() {
            writeln!(o, "  disconnects:    none")?;
        } else {
            writeln!(o, "  disconnects:")?;
            for (reason, n) in &self.disconnects {
                writeln!(o, "    {n} x {reason}")?;
            }
        }
        Ok(o)
    }
}
