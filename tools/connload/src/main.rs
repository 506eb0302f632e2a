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

mod client;
mod process;
mod produce;
mod report;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::Secret;
use ai_integration_service::domain::UserId;
use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use client::{ConnStats, Latency, Spec, Target, Transport};
use report::{Connect, Events, LatencyReport, MemoryReport, Params, Report, Summary, Verdict};

/// Events each echo task makes.
const EVENTS_PER_TASK: u64 = 3;
/// Lifetime of the minted tokens: long enough for any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest latency the histograms track: one hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;
/// How often the drain checks the connections.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Holds WebSocket and SSE connections to one instance, produces events for their users, and
/// reports memory per connection and stored -> delivered latency.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// WebSocket connections (`/ws`).
    #[arg(long, default_value_t = 5000)]
    ws: usize,
    /// SSE connections (`/api/v1/events`).
    #[arg(long, default_value_t = 5000)]
    sse: usize,
    /// Users the connections are spread over (default: max(ws, sse), so with equal counts
    /// each user has one WebSocket and one SSE stream).
    #[arg(long)]
    users: Option<usize>,
    /// Events per second to produce (three per echo task); 0 skips the event phase.
    #[arg(long, default_value_t = 5000.0)]
    event_rate: f64,
    /// How long to produce events, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Pause after each kind of connection opened, before reading the server's RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
    /// How long to hold everything idle before the "idle" RSS and the event phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    hold: Duration,
    /// Most connections opening at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Most task submit calls in flight at once.
    #[arg(long, default_value_t = 128)]
    submit_concurrency: usize,
    /// Tasks per submit call (1 to 1000): more than 1 submits one user's tasks together
    /// through `POST /api/v1/tasks/batch` (one transaction), so the server's task pipeline
    /// costs less per event.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Longest wait for the last events after the last submit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Longest wait from connecting to a connection's first frame.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    open_timeout: Duration,
    /// Pid of the server (default: the process listening on the URL's port).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Local addresses to connect from, comma-separated (e.g. 127.0.0.2,127.0.0.3), for more
    /// than one address's ~28,000 ephemeral ports.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// HS256 secret to mint the users' tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Free-form label printed with the report (e.g. "embedded").
    #[arg(long)]
    label: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    ai_integration_service::config::parse_duration(raw)
        .ok_or_else(|| format!("{raw:?} is not a duration such as 20s or 2m"))
}

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

/// Progress on stderr, so long runs show where they are.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("connload: {}", format_args!($($arg)*))
    };
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let connections = args.ws + args.sse;
    if connections == 0 {
        bail!("--ws plus --sse must be at least 1");
    }
    let users = args.users.unwrap_or(args.ws.max(args.sse));
    if users == 0 || users > connections {
        bail!("--users must be 1 to the number of connections ({connections})");
    }
    if !args.event_rate.is_finite() || args.event_rate < 0.0 {
        bail!("--event-rate must be a non-negative number");
    }
    if args.batch == 0 || args.batch > 1000 {
        bail!("--batch must be 1 to 1000");
    }
    if args.connect_concurrency == 0 || args.submit_concurrency == 0 {
        bail!("--connect-concurrency and --submit-concurrency must be at least 1");
    }
    let file_limit = process::raise_file_limit()?;
    let target = Arc::new(target(&args).await?);
    let server_pid = match args.server_pid {
        Some(p) => p,
        None => process::pid_listening_on(target.addr.port())?,
    };
    let server = server_pid.to_string();
    let tokens = Arc::new(mint_tokens(&args.jwt_secret, users)?);
    let latency = Arc::new(Latency::new(MAX_TRACKED_US)?);
    let stop = CancellationToken::new();
    let mut holders = JoinSet::new();
    let mut all: Vec<Arc<ConnStats>> = Vec::with_capacity(connections);
    let mut open_time = Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_US, 3)?;
    let mut failed = BTreeMap::new();

    // Phase 1: connect, WebSockets then SSE, reading the server's memory after each.
    let before = process::memory(&server)?;
    let connect_start = Instant::now();
    let mut after = Vec::new();
    for (transport, count) in [(Transport::Ws, args.ws), (Transport::Sse, args.sse)] {
        let stats: Vec<Arc<ConnStats>> = (0..count)
            .map(|i| Arc::new(ConnStats::new(transport, i % users)))
            .collect();
        let mut pending = FuturesUnordered::new();
        let started = Instant::now();
        for (i, s) in stats.iter().enumerate() {
            while pending.len() >= args.connect_concurrency {
                if let Some(r) = pending.next().await {
                    opened(r, &mut open_time, &mut failed);
                }
            }
            let (tx, rx) = oneshot::channel();
            let spec = Spec {
                index: all.len() + i,
                token: tokens[s.user].clone(),
                stats: s.clone(),
            };
            holders.spawn(client::hold(
                target.clone(),
                spec,
                latency.clone(),
                tx,
                stop.clone(),
            ));
            pending.push(rx);
            if (i + 1) % 1000 == 0 {
                progress!("{} {} connections started", i + 1, transport.name());
            }
        }
        while let Some(r) = pending.next().await {
            opened(r, &mut open_time, &mut failed);
        }
        let open = stats.iter().filter(|s| s.is_open()).count();
        progress!(
            "{open} of {count} {} connections open in {:.2} s",
            transport.name(),
            started.elapsed().as_secs_f64()
        );
        all.extend(stats);
        tokio::time::sleep(args.settle).await;
        after.push(process::memory(&server)?);
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64() - 2.0 * args.settle.as_secs_f64();
    let (after_ws, after_sse) = (after[0], after[1]);
    let opened_ws = all
        .iter()
        .filter(|s| s.transport == Transport::Ws && s.is_open())
        .count();
    let opened_sse = all
        .iter()
        .filter(|s| s.transport == Transport::Sse && s.is_open())
        .count();
    tokio::time::sleep(args.hold).await;
    let idle = process::memory(&server)?;
    let held = all.iter().filter(|s| s.is_open()).count();
    progress!(
        "holding {held} connections; server RSS {} KiB",
        idle.rss_kib
    );

    // Phase 2: events for the users with an open connection.
    let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..users).map(|_| AtomicU64::new(0)).collect());
    let mut live_users: Vec<usize> = all.iter().filter(|s| s.is_open()).map(|s| s.user).collect();
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
                tokens.clone(),
                plan,
                accepted.clone(),
            )
            .await?,
        )
    } else {
        None
    };

    let cpu = cpu_use(&server, cpu_before, produced.as_ref())?;

    // Phase 3: drain.
    let drain_start = Instant::now();
    let expected = |s: &ConnStats| accepted[s.user].load(Ordering::Relaxed) * EVENTS_PER_TASK;
    let mut drained = false;
    while drain_start.elapsed() < args.drain_timeout {
        drained = all
            .iter()
            .filter(|s| s.is_open())
            .all(|s| s.seen.load(Ordering::Relaxed) >= expected(s));
        if drained {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let drain_seconds = drain_start.elapsed().as_secs_f64();
    let after_events = process::memory(&server)?;
    let client_memory = process::memory("self")?;

    // Anything that ended before this point was ended by the server or the network.
    let mut disconnects = BTreeMap::new();
    for s in &all {
        if let Some(r) = s.end_reason()
            && s.opened.load(Ordering::Acquire)
        {
            *disconnects.entry(r).or_insert(0u64) += 1;
        }
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while holders.join_next().await.is_some() {}
    })
    .await;

    let mut events = events_report(&all, &accepted, produced.as_ref());
    events.drained = drained;
    events.drain_seconds = (drain_seconds * 100.0).round() / 100.0;
    events.negative_latencies = latency.negative.load(Ordering::Relaxed);
    events.cpu = cpu;
    let snap = latency.snapshot();
    let mut all_h = snap.ws.clone();
    all_h.add(&snap.sse).context("merging histograms")?;
    let latency_report = LatencyReport {
        ws: Summary::of(&snap.ws),
        sse: Summary::of(&snap.sse),
        all: Summary::of(&all_h),
        by_type: client::KINDS
            .iter()
            .zip(&snap.by_kind)
            .filter_map(|(k, h)| Some(((*k).to_owned(), Summary::of(h)?)))
            .collect(),
    };
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
    let file_limit_hit = failed.keys().any(|r| is_file_limit(r));
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
            failed,
            seconds: (connect_seconds * 100.0).round() / 100.0,
            open_time_ms: Summary::of(&open_time),
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

/// Resolves the URL and builds the SSE clients (one per source address).
async fn target(args: &Args) -> anyhow::Result<Target> {
    let base = args.url.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base).with_context(|| format!("bad --url {base:?}"))?;
    if url.scheme() != "http" {
        bail!("--url must be http:// (the load program speaks plain HTTP and ws://)");
    }
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(&authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let sources: Vec<Option<IpAddr>> = if args.source_addrs.is_empty() {
        vec![None]
    } else {
        args.source_addrs.iter().copied().map(Some).collect()
    };
    let mut sse_clients = Vec::new();
    for source in sources {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .local_address(source)
            .build()
            .context("building the SSE client")?;
        sse_clients.push(client);
    }
    Ok(Target {
        base,
        authority,
        addr,
        sources: args.source_addrs.clone(),
        sse_clients,
        open_timeout: args.open_timeout,
    })
}

/// One token per user, for fresh users `connload-<run>-<k>`.
fn mint_tokens(secret: &str, users: usize) -> anyhow::Result<Vec<String>> {
    let secret = secret.trim();
    if secret.is_empty() {
        bail!("no credentials: pass --jwt-secret or set JWT_SECRET");
    }
    let keys = JwtKeys::new(&Secret::new(secret.to_owned()));
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..users)
        .map(|k| {
            let user = UserId::parse(&format!("connload-{}-{k}", &run[..8])).context("user id")?;
            keys.issue(&user, Role::User, TOKEN_TTL)
                .context("minting a token")
        })
        .collect()
}

/// Records one connection's opening.
fn opened(
    result: Result<Result<Duration, String>, oneshot::error::RecvError>,
    open_time: &mut Histogram<u64>,
    failed: &mut BTreeMap<String, u64>,
) {
    match result {
        Ok(Ok(took)) => {
            open_time.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
        Ok(Err(reason)) => *failed.entry(reason).or_insert(0) += 1,
        Err(_) => *failed.entry("client task died".into()).or_insert(0) += 1,
    }
}

/// Whether a failure is the open-files limit (EMFILE, "Too many open files").
fn is_file_limit(reason: &str) -> bool {
    reason.contains("os error 24") || reason.contains("Too many open files")
}

/// Delivery counts over every connection.
fn events_report(
    all: &[Arc<ConnStats>],
    accepted: &[AtomicU64],
    produced: Option<&produce::Produced>,
) -> Events {
    let (mut expected, mut delivered, mut missing, mut unexpected) = (0, 0, 0, 0);
    let (mut gaps, mut skipped, mut duplicates) = (0, 0, 0);
    for s in all {
        let seen = s.seen.load(Ordering::Relaxed);
        delivered += seen;
        gaps += s.gaps.load(Ordering::Relaxed);
        skipped += s.skipped.load(Ordering::Relaxed);
        duplicates += s.duplicates.load(Ordering::Relaxed);
        if s.is_open() {
            let want = accepted[s.user].load(Ordering::Relaxed) * EVENTS_PER_TASK;
            expected += want;
            missing += want.saturating_sub(seen);
            unexpected += seen.saturating_sub(want);
        }
    }
    let seconds = produced.map_or(0.0, |p| p.elapsed.as_secs_f64());
    let rate = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds).round()
        } else {
            0.0
        }
    };
    let tasks_accepted = produced.map_or(0, |p| p.accepted);
    Events {
        tasks_sent: produced.map_or(0, |p| p.sent),
        tasks_accepted,
        submit_errors: produced.map(|p| p.errors.clone()).unwrap_or_default(),
        submit_latency_ms: produced.and_then(|p| Summary::of(&p.latency)),
        produce_seconds: (seconds * 100.0).round() / 100.0,
        events_stored_per_s: rate(tasks_accepted * EVENTS_PER_TASK),
        expected_deliveries: expected,
        delivered,
        deliveries_per_s: rate(delivered),
        missing,
        unexpected,
        gaps,
        skipped_ids: skipped,
        duplicates,
        drained: false,
        drain_seconds: 0.0,
        negative_latencies: 0,
        cpu: None,
    }
}

/// CPU used over the produce phase: the server's, and the whole machine's.
fn cpu_use(
    server: &str,
    (server_before, machine_before): (f64, process::MachineCpu),
    produced: Option<&produce::Produced>,
) -> anyhow::Result<Option<report::Cpu>> {
    let Some(p) = produced else {
        return Ok(None);
    };
    let seconds = p.elapsed.as_secs_f64().max(1e-9);
    let server_cpu = process::cpu_seconds(server)? - server_before;
    let (busy, steal) = process::machine_percent(machine_before, process::machine_cpu()?);
    Ok(Some(report::Cpu {
        server_cores: (server_cpu / seconds * 100.0).round() / 100.0,
        machine_busy_percent: round1(busy),
        machine_steal_percent: round1(steal),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
    }))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
