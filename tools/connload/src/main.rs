//! `connload`: holds many live event connections to one instance and measures what they cost
//! and how fast events reach them (the targets of issue 5).
//!
//! 1. **Connect.** Opens `--ws` WebSockets (`/ws`), then `--sse` SSE streams
//!    (`/api/v1/events`), at most `--connect-concurrency` opening at once, for `--users` users
//!    (connection `i` of each kind belongs to user `i mod users`; tokens minted with
//!    `--jwt-secret` / `JWT_SECRET` for fresh users `connload-<run>-<k>`). A connection counts
//!    as open once its first frame (`subscribed`) arrived. The server's `VmRSS` is read before,
//!    after the WebSockets, after the SSE streams (each after `--settle`) and after holding
//!    everything idle for `--hold`; RSS per connection is the growth over the connections open.
//! 2. **Events.** Submits echo tasks open loop at `--event-rate / 3` per second for
//!    `--duration` (`--batch` tasks of one user per call), round-robin over the users with an
//!    open connection (each echo task makes
//!    TaskCreated, TaskStarted, TaskCompleted). Every connection times each event on arrival
//!    against the event's `created_at` (stored -> delivered; client and server share the
//!    clock on one machine) and checks that ids are consecutive (gaps, duplicates).
//! 3. **Drain.** Waits (up to `--drain-timeout`) until every open connection has its user's
//!    three events per accepted task, then reports: memory, latency percentiles per transport,
//!    deliveries, gaps, duplicates, and connections the server closed, with their reasons.
//!
//! The soft open-files limit is raised to the hard one; when connections fail with EMFILE the
//! report says the limit stopped it. Exit status: 0 clean; 1 when a connection failed or was
//! dropped, a submit failed, or an event was missing, repeated or out of order; 2 for bad
//! arguments or setup.

/// Progress on stderr, so long runs show where they are.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("connload: {}", format_args!($($arg)*))
    };
}

mod args;
mod client;
mod connect;
mod deliveries;
mod process;
mod produce;
mod report;
mod target;
mod tokens;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use args::Args;
use client::{Latency, Transport};
use connect::{Shared, connect_all, is_file_limit};
use report::{Connect, LatencyReport, MemoryReport, Params, Report, Summary, Verdict, round1};

/// Events each echo task makes.
const EVENTS_PER_TASK: u64 = 3;
/// Largest latency the histograms track: one hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("connload: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let (connections, users) = (args.connections(), args.users());
    let file_limit = process::raise_file_limit()?;
    let target = Arc::new(target::resolve(&args).await?);
    let server_pid = match args.server_pid {
        Some(p) => p,
        None => process::pid_listening_on(target.addr.port())?,
    };
    let server = server_pid.to_string();
    let shared = Shared {
        target: target.clone(),
        tokens: Arc::new(tokens::mint_tokens(&args.jwt_secret, users)?),
        latency: Arc::new(Latency::new(MAX_TRACKED_US)?),
        stop: CancellationToken::new(),
    };

    // Phase 1: connect, WebSockets then SSE, reading the server's memory after each.
    let mut opened = connect_all(&args, users, &server, &shared).await?;
    let (opened_ws, opened_sse) = (opened.open(Transport::Ws), opened.open(Transport::Sse));
    tokio::time::sleep(args.hold).await;
    let idle = process::memory(&server)?;
    let held = opened.all.iter().filter(|s| s.is_open()).count();
    progress!(
        "holding {held} connections; server RSS {} KiB",
        idle.rss_kib
    );

    // Phase 2: events for the users with an open connection.
    let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..users).map(|_| AtomicU64::new(0)).collect());
    let mut live_users: Vec<usize> = opened
        .all
        .iter()
        .filter(|s| s.is_open())
        .map(|s| s.user)
        .collect();
    live_users.sort_unstable();
    live_users.dedup();
    let task_rate = args.event_rate / EVENTS_PER_TASK as f64;
    let tasks = (task_rate * args.duration.as_secs_f64()).round() as u64;
    let cpu_before = (process::cpu_seconds(&server)?, process::machine_cpu()?);
    let produced = if tasks > 0 && !live_users.is_empty() {
        progress!(
            "producing {tasks} echo tasks at {task_rate:.1}/s for {} users",
            live_users.len()
        );
        let submitter = reqwest::Client::builder()
            .pool_max_idle_per_host(args.submit_concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let plan = produce::Plan {
            rate: task_rate,
            tasks,
            concurrency: args.submit_concurrency,
            batch: args.batch,
            users: live_users,
        };
        Some(
            produce::produce(
                submitter,
                &target.base,
                shared.tokens.clone(),
                plan,
                accepted.clone(),
            )
            .await?,
        )
    } else {
        None
    };

    let cpu = produce::cpu_use(&server, cpu_before, produced.as_ref())?;

    // Phase 3: drain.
    let (drained, drain_seconds) =
        deliveries::drain(&opened.all, &accepted, args.drain_timeout).await;
    let after_events = process::memory(&server)?;
    let client_memory = process::memory("self")?;

    // Anything that ended before this point was ended by the server or the network.
    let mut disconnects = BTreeMap::new();
    for s in &opened.all {
        if let Some(r) = s.end_reason()
            && s.opened.load(Ordering::Acquire)
        {
            *disconnects.entry(r).or_insert(0u64) += 1;
        }
    }
    shared.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while opened.holders.join_next().await.is_some() {}
    })
    .await;

    let mut events = deliveries::events_report(&opened.all, &accepted, produced.as_ref());
    events.drained = drained;
    events.drain_seconds = (drain_seconds * 100.0).round() / 100.0;
    events.negative_latencies = shared.latency.negative.load(Ordering::Relaxed);
    events.cpu = cpu;
    let latency_report = LatencyReport::of(&shared.latency.snapshot())?;
    let (before, after_ws, after_sse) = (opened.before, opened.after_ws, opened.after_sse);
    let per = |grown: u64, n: usize| (n > 0).then(|| round1(grown as f64 / n as f64));
    let memory = MemoryReport {
        server_before: before,
        server_after_ws: after_ws,
        server_after_sse: after_sse,
        server_idle: idle,
        server_after_events: after_events,
        kib_per_ws: per(after_ws.rss_kib.saturating_sub(before.rss_kib), opened_ws),
        kib_per_sse: per(
            after_sse.rss_kib.saturating_sub(after_ws.rss_kib),
            opened_sse,
        ),
        kib_per_connection: per(
            idle.rss_kib.saturating_sub(before.rss_kib),
            opened_ws + opened_sse,
        ),
        client_after_events: client_memory,
    };
    let file_limit_hit = opened.failed.keys().any(|r| is_file_limit(r));
    let report = Report {
        params: Params {
            label: args.label.clone(),
            url: target.base.clone(),
            connections,
            ws: args.ws,
            sse: args.sse,
            users,
            event_rate: args.event_rate,
            task_rate: round1(task_rate),
            duration_s: args.duration.as_secs_f64(),
            settle_s: args.settle.as_secs_f64(),
            hold_s: args.hold.as_secs_f64(),
            connect_concurrency: args.connect_concurrency,
            submit_concurrency: args.submit_concurrency,
            batch: args.batch,
            drain_timeout_s: args.drain_timeout.as_secs_f64(),
            source_addrs: args.source_addrs.iter().map(ToString::to_string).collect(),
            server_pid,
            file_limit,
        },
        connect: Connect {
            opened_ws,
            opened_sse,
            failed: opened.failed,
            seconds: (opened.seconds * 100.0).round() / 100.0,
            open_time_ms: Summary::of(&opened.open_time),
            file_limit_hit,
        },
        verdict: Verdict::of(held, &memory, &latency_report),
        memory,
        events,
        latency_ms: latency_report,
        disconnects,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()?
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("connload: writing the report: {e}");
    }
    let e = &report.events;
    let clean = report.connect.failed.is_empty()
        && report.disconnects.is_empty()
        && e.submit_errors.is_empty()
        && e.missing == 0
        && e.gaps == 0
        && e.duplicates == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
