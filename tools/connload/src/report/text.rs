//! The report as text: one line per step, then one per failure kind.

use std::fmt::Write as _;

use super::{Report, Summary, TARGET_KIB_PER_CONNECTION, TARGET_P99_MS};

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
