//! `loadgen`: a load generator and latency meter for the AI integration service.
//!
//! What it measures, in three phases, over gRPC or HTTP/JSON:
//!
//! 1. **Submit.** Sends `N` `echo` tasks (payload `{"i": k}`, plus `"delay_ms"` when
//!    `--delay-ms` > 0), one per `SubmitTask` / `POST /api/v1/tasks`, or `--batch B` per
//!    `SubmitTasks` / `POST /api/v1/tasks/batch`. At most `--concurrency` calls are in flight.
//!    Without `--rate` the calls are sent back to back (closed loop) and each call's latency is
//!    measured from the moment it is sent. With `--rate R` the schedule is open loop: call `j`
//!    is due at `j * B / R` seconds after the start whether or not earlier calls have answered,
//!    and its latency is measured from that *intended* start, so time spent waiting for a free
//!    concurrency slot behind a slow server counts (no coordinated omission). Latencies go to an
//!    HdrHistogram in microseconds; each task's id and wall-clock (UTC) submit start are kept.
//!    In open loop the report also shows the *schedule lag* (how late calls left the client:
//!    tokio's 1 ms timer, or every slot busy), which is part of the measured latency.
//! 2. **Completion.** Pages through the run's tasks with status `completed` (`ListTasks` /
//!    `GET /api/v1/tasks?status=completed`, 1,000 per page) every 200 ms until every submitted
//!    task has been seen, or `--timeout` passes. Most passes read only the newest pages (where
//!    new completions appear), so polling adds little load while the server drains.
//!    Submit-to-complete latency is the server's `completed_at` minus the client's submit start
//!    (client and server share a clock when both run on one machine). End-to-end throughput is
//!    completed tasks divided by the time from the first submit start to the last
//!    `completed_at`.
//! 3. **Reads.** Issues `min(N, 2000)` `GetTask` calls for submitted ids, with the same
//!    concurrency (and `--rate`, if given), and reports their latency.
//!
//! With `--watch`, one SSE stream per user is open from before the first submit, and the
//! report adds *submit→notified*: each task's terminal event's arrival at the client minus its
//! submit start, i.e. when a watching client learned the result (after the outcome's commit and
//! the notification path, which `completed_at` precedes).
//!
//! The token is minted for a fresh user `loadgen-<random>` (from `--jwt-secret`, `JWT_SECRET`,
//! or `$DATA_DIR/jwt_secret` / `./data/jwt_secret` of an embedded-mode server), so a run's tasks
//! are isolated from everyone else's. With `--token`, tasks of that token's user that this run
//! did not submit are ignored. With `--users U`, submit call `j` goes out as fresh user
//! `loadgen-<random>-<j % U>` (traffic from many users, as a shared service sees it), and the
//! completion and read phases use a minted admin token, which sees every user's tasks.
//!
//! Failures are counted by kind, never panicked on. The exit status is 0 for a clean run, 1 when
//! any call failed or the completion wait timed out, 2 for bad arguments or setup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ai_integration_service::api::proto::task_service_client::TaskServiceClient;
use ai_integration_service::api::proto::{
    self, GetTaskRequest, ListTasksRequest, SubmitTaskRequest, SubmitTasksRequest,
};
use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::Secret;
use ai_integration_service::domain::UserId;
use ai_integration_service::error_text::error_chain;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

mod watch;
use watch::Watch;

/// Per-call timeout for every request the load generator sends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `--watch` waits after the completion phase for the last terminal events.
const WATCH_GRACE: Duration = Duration::from_secs(2);
/// Largest page the list API serves.
const LIST_PAGE_SIZE: u32 = 1000;
/// Pause between two passes over the completed tasks.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Every this many passes over the completed tasks reads all pages (see [`wait_phase`]).
const FULL_PASS_EVERY: u32 = 10;
/// Most `GetTask` calls in the read phase.
const MAX_GETS: usize = 2000;
/// Largest batch the service accepts.
const MAX_BATCH: usize = 1000;
/// Lifetime of a minted token: long enough for any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest latency the histograms track: one hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Load generator for the AI integration service: submits echo tasks, waits for them to
/// complete, and reports throughput and latency percentiles.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Base URL of the service (HTTP and gRPC share the port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// Number of tasks to submit.
    #[arg(short = 'n', long = "tasks", default_value_t = 10_000)]
    tasks: usize,
    /// Target submit rate in tasks per second, open loop (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Most calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Tasks per submit call: 1 uses SubmitTask / POST /api/v1/tasks, more uses SubmitTasks /
    /// POST /api/v1/tasks/batch (at most 1000).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Task type to submit. `echo` (the default) runs in the worker; any other type (e.g.
    /// `summarize`) goes to the configured AI providers, with payload `{"text", "cache": false}`
    /// so every task makes a provider call.
    #[arg(long, default_value = "echo")]
    task_type: String,
    /// `delay_ms` of each echo task's payload: how long the worker sleeps (0 = none).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Bearer token to use as is (its user's other tasks are ignored).
    #[arg(long, conflicts_with = "jwt_secret")]
    token: Option<String>,
    /// HS256 secret to mint a token for a fresh user `loadgen-<random>`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Users to spread submit calls over, round-robin (needs the secret, not `--token`).
    #[arg(long, default_value_t = 1, conflicts_with = "token")]
    users: usize,
    /// Longest wait for all tasks to complete, e.g. 120s or 5m.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    timeout: Duration,
    /// gRPC: HTTP/2 connections to open; calls are spread round-robin over them.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Free-form label printed with the report (e.g. "embedded" or "clustered").
    #[arg(long)]
    label: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also time when a watcher learns each task's end: one SSE stream per user, open from
    /// before the first submit (see the module docs).
    #[arg(long)]
    watch: bool,
    /// Write every submit call's intended start (ms after the first) and latency (ms) to this
    /// file, one `start latency` line per call in start order: shows whether slow calls come
    /// in bursts (a stall) or spread evenly (queueing).
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

/// The API the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    /// `ai.integration.v1.TaskService` over h2c.
    Grpc,
    /// HTTP/1.1 JSON API under `/api/v1/tasks`.
    Http,
}

fn parse_timeout(raw: &str) -> Result<Duration, String> {
    ai_integration_service::config::parse_duration(raw)
        .ok_or_else(|| format!("{raw:?} is not a duration such as 120s or 5m"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the three phases and prints the report. `Err` only for setup problems; failures during
/// the run are counted and turn into exit status 1.
async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.batch == 0 || args.batch > MAX_BATCH {
        bail!("--batch must be 1 to {MAX_BATCH}");
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be a non-negative number");
    }
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let credentials = resolve_credentials(&args)?;
    let user = credentials.user.clone();
    let api = Api::connect(&args, &credentials).await?;
    let mut errors = ErrorTally::default();

    let base = args.url.trim_end_matches('/');
    let watch = match args.watch {
        true => Some(Watch::open(&reqwest::Client::new(), base, &credentials.submit).await?),
        false => None,
    };

    // Phase 1: submit.
    let submit = submit_phase(&api, &args).await?;
    errors.absorb("submit", &submit.errors);
    let submitted = submit.tasks.len();

    // Phase 2: wait for completion.
    let wait = wait_phase(&api, &submit.tasks, args.timeout).await;
    errors.absorb("list", &wait.errors);
    let e2e = EndToEnd::compute(&submit, &wait)?;
    let notified = match watch {
        Some(watch) => {
            let (arrived, broken) = watch.close(wait.completed.len(), WATCH_GRACE).await;
            let mut stream_errors = BTreeMap::new();
            for e in broken {
                count_error(&mut stream_errors, &CallError::new("event stream", e), 1);
            }
            errors.absorb("watch", &stream_errors);
            Some(since_submit(&submit, &arrived)?)
        }
        None => None,
    };

    // Phase 3: reads.
    let ids: Vec<String> = spread(&submit.tasks, MAX_GETS.min(args.tasks))
        .into_iter()
        .map(|t| t.id.clone())
        .collect();
    let get = get_phase(&api, &args, ids).await?;
    errors.absorb("get", &get.errors);

    let report = Report {
        label: args.label.clone(),
        protocol: args.protocol,
        url: args.url.clone(),
        user,
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
        submit_seconds: round2(submit.elapsed.as_secs_f64()),
        submit_throughput: round2(submitted as f64 / submit.elapsed.as_secs_f64().max(1e-9)),
        submit_latency_ms: Summary::of(&submit.latency),
        submit_schedule_lag_ms: submit.lag.as_ref().and_then(Summary::of),
        completed: wait.completed.len(),
        timed_out: wait.timed_out,
        failed_tasks: wait.failed,
        e2e_seconds: e2e.seconds.map(round2),
        e2e_throughput: e2e.throughput.map(round2),
        drain_after_submit_seconds: e2e.drain_seconds.map(round2),
        submit_to_complete_ms: Summary::of(&e2e.latency),
        submit_to_notified_ms: notified.as_ref().and_then(Summary::of),
        get_calls: get.calls,
        get_latency_ms: Summary::of(&get.latency),
        errors: errors.kinds,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()?
    };
    // A closed pipe (`loadgen ... | head`) is not worth a panic or an error.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("loadgen: writing the report: {e}");
    }
    if wait.timed_out {
        eprintln!(
            "loadgen: timed out after {} waiting for completion: {} of {} submitted tasks completed{}",
            humantime::format_duration(args.timeout),
            wait.completed.len(),
            submitted,
            match wait.failed {
                Some(f) if f > 0 => format!(", {f} failed"),
                _ => String::new(),
            }
        );
    }
    let clean = report.errors.is_empty() && !wait.timed_out;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// The bearer tokens a run sends.
struct Credentials {
    /// One per user; submit call `j` uses `submit[j % len]`.
    submit: Vec<String>,
    /// For listing and reading the run's tasks: the one user's token, or an admin's.
    read: String,
    /// The minted user (the first of them, with `--users`).
    user: Option<String>,
}

/// The tokens to send: `--token` as is, or minted for fresh users from the secret.
fn resolve_credentials(args: &Args) -> anyhow::Result<Credentials> {
    if let Some(t) = &args.token {
        let t = t.trim().to_owned();
        return Ok(Credentials {
            submit: vec![t.clone()],
            read: t,
            user: None,
        });
    }
    let secret = match &args.jwt_secret {
        Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => read_embedded_secret()?,
    };
    let keys = JwtKeys::new(&Secret::new(secret));
    let mint = |name: &str, role: Role| -> anyhow::Result<String> {
        let id = UserId::parse(name).context("user id")?;
        keys.issue(&id, role, TOKEN_TTL).context("minting a token")
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let base = format!("loadgen-{}", &suffix[..12]);
    if args.users == 1 {
        let token = mint(&base, Role::User)?;
        return Ok(Credentials {
            submit: vec![token.clone()],
            read: token,
            user: Some(base),
        });
    }
    let submit = (0..args.users)
        .map(|i| mint(&format!("{base}-{i}"), Role::User))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Credentials {
        submit,
        read: mint(&format!("{base}-admin"), Role::Admin)?,
        user: Some(format!("{base}-0")),
    })
}

/// The secret an embedded-mode server generated: `$DATA_DIR/jwt_secret`, else
/// `./data/jwt_secret`.
fn read_embedded_secret() -> anyhow::Result<String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("DATA_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("jwt_secret"));
    }
    candidates.push(PathBuf::from("./data/jwt_secret"));
    for path in &candidates {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return Ok(s.trim().to_owned());
        }
    }
    bail!(
        "no credentials: pass --token or --jwt-secret (or set JWT_SECRET); none of {} is readable",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// The two APIs behind one interface
// ---------------------------------------------------------------------------------------------

/// A client of either API. Cheap to clone: clones share connections.
#[derive(Clone)]
enum Api {
    Grpc(Arc<GrpcApi>),
    Http(Arc<HttpApi>),
}

/// gRPC: a few HTTP/2 connections, used round-robin.
struct GrpcApi {
    channels: Vec<Channel>,
    next: AtomicUsize,
    /// `authorization` values: one per submitting user.
    submit_auth: Vec<MetadataValue<tonic::metadata::Ascii>>,
    /// `authorization` for lists and reads.
    read_auth: MetadataValue<tonic::metadata::Ascii>,
}

/// HTTP: one pooled client.
struct HttpApi {
    client: reqwest::Client,
    base: String,
    /// `Authorization` values: one per submitting user.
    submit_auth: Vec<String>,
    /// `Authorization` for lists and reads.
    read_auth: String,
}

/// One task as the list and submit calls return it: just what the load generator needs.
#[derive(Debug, Clone)]
struct TaskInfo {
    id: String,
    completed_at: Option<DateTime<Utc>>,
}

/// One page of a listing.
struct ListPage {
    tasks: Vec<TaskInfo>,
    next_page_token: String,
}

/// HTTP task body (fields the load generator reads).
#[derive(Deserialize)]
struct HttpTask {
    task_id: String,
    completed_at: Option<DateTime<Utc>>,
}

impl From<HttpTask> for TaskInfo {
    fn from(t: HttpTask) -> Self {
        Self {
            id: t.task_id,
            completed_at: t.completed_at,
        }
    }
}

/// HTTP batch and list bodies.
#[derive(Deserialize)]
struct HttpTasks {
    tasks: Vec<HttpTask>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A task status to list by.
#[derive(Debug, Clone, Copy)]
enum ListStatus {
    Completed,
    Failed,
}

impl ListStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn to_proto(self) -> proto::TaskStatus {
        match self {
            Self::Completed => proto::TaskStatus::Completed,
            Self::Failed => proto::TaskStatus::Failed,
        }
    }
}

/// Why a call failed, as a short stable kind plus one detail message.
#[derive(Debug, Clone)]
struct CallError {
    kind: String,
    detail: String,
}

impl CallError {
    fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    fn grpc(s: &tonic::Status) -> Self {
        Self::new(format!("grpc {:?}", s.code()), s.message())
    }

    fn reqwest(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "http timeout"
        } else if e.is_connect() {
            "http connect"
        } else if e.is_decode() {
            "http decode"
        } else {
            "http transport"
        };
        // The chain of sources says what actually went wrong (reset, refused, ...).
        Self::new(kind, error_chain(e))
    }
}

/// What each submitted task is.
#[derive(Debug, Clone)]
struct Workload {
    task_type: String,
    delay_ms: u64,
}

impl Workload {
    /// The payload of task `k`.
    fn payload_json(&self, k: usize) -> serde_json::Value {
        if self.task_type != "echo" {
            json!({ "i": k, "text": format!("Benchmark text number {k}. It is short."), "cache": false })
        } else if self.delay_ms > 0 {
            json!({ "i": k, "delay_ms": self.delay_ms })
        } else {
            json!({ "i": k })
        }
    }

    /// The payload of task `k` as a protobuf `Struct`.
    fn payload_struct(&self, k: usize) -> prost_types::Struct {
        use prost_types::value::Kind;
        fn to_value(v: &serde_json::Value) -> prost_types::Value {
            let kind = match v {
                serde_json::Value::Bool(b) => Kind::BoolValue(*b),
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
                serde_json::Value::String(s) => Kind::StringValue(s.clone()),
                _ => Kind::NullValue(0),
            };
            prost_types::Value { kind: Some(kind) }
        }
        let fields = match self.payload_json(k) {
            serde_json::Value::Object(map) => {
                map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()
            }
            _ => BTreeMap::new(),
        };
        prost_types::Struct { fields }
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass through).
fn encode_query(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Api {
    /// Connects to the service over the chosen protocol.
    async fn connect(args: &Args, credentials: &Credentials) -> anyhow::Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        match args.protocol {
            Protocol::Grpc => {
                let metadata = |token: &str| {
                    MetadataValue::try_from(format!("Bearer {token}"))
                        .context("token is not valid gRPC metadata")
                };
                let submit_auth = credentials
                    .submit
                    .iter()
                    .map(|t| metadata(t))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let read_auth = metadata(&credentials.read)?;
                let endpoint = Endpoint::from_shared(base.clone())
                    .with_context(|| format!("bad --url {base:?}"))?
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(REQUEST_TIMEOUT);
                let mut channels = Vec::new();
                for _ in 0..args.connections.max(1) {
                    // Each `connect` opens its own HTTP/2 connection.
                    let channel = endpoint
                        .connect()
                        .await
                        .with_context(|| format!("connecting to {base} (gRPC)"))?;
                    channels.push(channel);
                }
                Ok(Self::Grpc(Arc::new(GrpcApi {
                    channels,
                    next: AtomicUsize::new(0),
                    submit_auth,
                    read_auth,
                })))
            }
            Protocol::Http => {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(args.concurrency)
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .context("building the HTTP client")?;
                Ok(Self::Http(Arc::new(HttpApi {
                    client,
                    base,
                    submit_auth: credentials
                        .submit
                        .iter()
                        .map(|t| format!("Bearer {t}"))
                        .collect(),
                    read_auth: format!("Bearer {}", credentials.read),
                })))
            }
        }
    }

    /// Submits echo tasks `first..first + count` in one call as submitting user `user` and
    /// returns their ids in order.
    async fn submit(
        &self,
        user: usize,
        first: usize,
        count: usize,
        batched: bool,
        work: &Workload,
    ) -> Result<Vec<String>, CallError> {
        let ids = match self {
            Self::Grpc(g) => {
                let one = |k: usize| SubmitTaskRequest {
                    r#type: work.task_type.clone(),
                    payload: Some(work.payload_struct(k)),
                    ..Default::default()
                };
                if batched {
                    let req = SubmitTasksRequest {
                        tasks: (first..first + count).map(one).collect(),
                    };
                    let resp = g
                        .client()
                        .submit_tasks(g.request_as(g.submit_auth(user), req))
                        .await
                        .map_err(|s| CallError::grpc(&s))?;
                    resp.into_inner()
                        .tasks
                        .into_iter()
                        .map(|t| t.task_id)
                        .collect()
                } else {
                    let resp = g
                        .client()
                        .submit_task(g.request_as(g.submit_auth(user), one(first)))
                        .await
                        .map_err(|s| CallError::grpc(&s))?;
                    vec![resp.into_inner().task_id]
                }
            }
            Self::Http(h) => {
                let one =
                    |k: usize| json!({ "type": work.task_type, "payload": work.payload_json(k) });
                if batched {
                    let body =
                        json!({ "tasks": (first..first + count).map(one).collect::<Vec<_>>() });
                    let resp: HttpTasks = h
                        .send_json(h.submit_auth(user), "/api/v1/tasks/batch", &body)
                        .await?;
                    resp.tasks.into_iter().map(|t| t.task_id).collect()
                } else {
                    let resp: HttpTask = h
                        .send_json(h.submit_auth(user), "/api/v1/tasks", &one(first))
                        .await?;
                    vec![resp.task_id]
                }
            }
        };
        if ids.len() != count {
            return Err(CallError::new(
                "bad response",
                format!("sent {count} tasks, got {} back", ids.len()),
            ));
        }
        Ok(ids)
    }

    /// Reads one task.
    async fn get(&self, id: &str) -> Result<(), CallError> {
        match self {
            Self::Grpc(g) => {
                let req = GetTaskRequest {
                    task_id: id.to_owned(),
                };
                g.client()
                    .get_task(g.request(req))
                    .await
                    .map_err(|s| CallError::grpc(&s))?;
            }
            Self::Http(h) => {
                let _: HttpTask = h
                    .read_json(&format!("/api/v1/tasks/{}", encode_query(id)))
                    .await?;
            }
        }
        Ok(())
    }

    /// One page of the caller's tasks with `status`.
    async fn list(&self, status: ListStatus, page_token: &str) -> Result<ListPage, CallError> {
        match self {
            Self::Grpc(g) => {
                let req = ListTasksRequest {
                    page_size: LIST_PAGE_SIZE as i32,
                    page_token: page_token.to_owned(),
                    status: status.to_proto() as i32,
                    r#type: String::new(),
                };
                let page = g
                    .client()
                    .list_tasks(g.request(req))
                    .await
                    .map_err(|s| CallError::grpc(&s))?
                    .into_inner();
                Ok(ListPage {
                    tasks: page
                        .tasks
                        .into_iter()
                        .map(|t| TaskInfo {
                            id: t.task_id,
                            completed_at: t.completed_at.and_then(|ts| {
                                DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
                            }),
                        })
                        .collect(),
                    next_page_token: page.next_page_token,
                })
            }
            Self::Http(h) => {
                let mut path = format!(
                    "/api/v1/tasks?status={}&page_size={LIST_PAGE_SIZE}",
                    status.as_str()
                );
                if !page_token.is_empty() {
                    path.push_str("&page_token=");
                    path.push_str(&encode_query(page_token));
                }
                let page: HttpTasks = h.read_json(&path).await?;
                Ok(ListPage {
                    tasks: page.tasks.into_iter().map(Into::into).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
        }
    }
}

impl GrpcApi {
    /// A client on the next connection in turn.
    fn client(&self) -> TaskServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        TaskServiceClient::new(self.channels[i].clone()).max_decoding_message_size(64 << 20)
    }

    /// The `authorization` value of submitting user `user`.
    fn submit_auth(&self, user: usize) -> &MetadataValue<tonic::metadata::Ascii> {
        &self.submit_auth[user % self.submit_auth.len()]
    }

    /// `message` with the read token attached.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.request_as(&self.read_auth, message)
    }

    /// `message` with `auth` attached.
    fn request_as<T>(
        &self,
        auth: &MetadataValue<tonic::metadata::Ascii>,
        message: T,
    ) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut().insert("authorization", auth.clone());
        req
    }
}

impl HttpApi {
    /// The `Authorization` value of submitting user `user`.
    fn submit_auth(&self, user: usize) -> &str {
        &self.submit_auth[user % self.submit_auth.len()]
    }

    /// POSTs a JSON body with `auth` and decodes a 2xx JSON answer.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        auth: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CallError> {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, auth)
            .json(body);
        Self::decode(req.send().await).await
    }

    /// GETs `path` and decodes a 2xx JSON answer.
    async fn read_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.read_auth);
        Self::decode(req.send().await).await
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, CallError> {
        let resp = sent.map_err(|e| CallError::reqwest(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CallError::reqwest(&e))?;
        if !status.is_success() {
            return Err(CallError::new(
                format!("http {}", status.as_u16()),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| CallError::new("http bad body", e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Load phases
// ---------------------------------------------------------------------------------------------

/// A histogram of microseconds from 1 µs to one hour, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).context("creating a histogram")
}

/// A duration in whole microseconds.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What one phase of timed calls produced.
struct Phase<T> {
    /// Each successful call's index, intended start (wall clock) and output.
    ok: Vec<(usize, DateTime<Utc>, T)>,
    /// Every call's intended start after the phase's start and its latency, in start order.
    timeline: Vec<(Duration, Duration)>,
    /// Latency of every call, failed ones included, in microseconds.
    latency: Histogram<u64>,
    /// Failures by kind.
    errors: BTreeMap<String, ErrorCount>,
    /// From the first intended start to the last answer.
    elapsed: Duration,
    /// Open loop only: how late each call left the dispatcher (timer granularity, or every
    /// concurrency slot busy), microseconds. Already included in `latency`.
    lag: Option<Histogram<u64>>,
}

/// Runs `calls` calls of `call(j)` with at most `concurrency` in flight. With `calls_per_sec` >
/// 0 call `j` is due at `j / calls_per_sec` seconds (open loop) and its latency counts from that
/// moment; otherwise calls start as soon as a slot is free and latency counts from the send.
async fn run_calls<T, F, Fut>(
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

type CallOutcome<T> = (usize, Instant, Duration, Result<T, CallError>);

impl<T> Phase<T> {
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

/// Writes `start latency` lines, both in milliseconds.
fn write_timeline(path: &std::path::Path, timeline: &[(Duration, Duration)]) -> anyhow::Result<()> {
    use std::io::Write as _;
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

/// One accepted task: its id and when the client started (or was due to start) submitting it.
#[derive(Debug, Clone)]
struct Submitted {
    id: String,
    start: DateTime<Utc>,
}

/// The submit phase's outcome.
struct SubmitPhase {
    /// Accepted tasks, in submit order.
    tasks: Vec<Submitted>,
    /// Per-call latency, microseconds.
    latency: Histogram<u64>,
    /// Open loop: dispatch lag behind the schedule, microseconds.
    lag: Option<Histogram<u64>>,
    /// Failed calls by kind.
    errors: BTreeMap<String, ErrorCount>,
    /// Start of the first call to the last answer.
    elapsed: Duration,
    /// Wall clock of the first intended start.
    first_start: Option<DateTime<Utc>>,
    /// Wall clock of the end of the phase.
    end: DateTime<Utc>,
}

async fn submit_phase(api: &Api, args: &Args) -> anyhow::Result<SubmitPhase> {
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

/// The completion wait's outcome.
struct WaitPhase {
    /// `completed_at` of every submitted task seen completed.
    completed: HashMap<String, DateTime<Utc>>,
    /// Whether the wait gave up.
    timed_out: bool,
    /// On a timeout: how many of the run's tasks had failed.
    failed: Option<usize>,
    /// List calls that failed (retried on the next pass).
    errors: BTreeMap<String, ErrorCount>,
}

/// Lists the caller's completed tasks every [`POLL_INTERVAL`] until every submitted task has
/// been seen or `timeout` passes.
///
/// Keyset pages run newest-created first and tasks complete roughly in creation order, so new
/// completions show up on the first pages: most passes stop at the first page that brings
/// nothing new, which keeps the polling from loading the server while it drains. A task may
/// still complete out of order (a retry, say), so every [`FULL_PASS_EVERY`]-th pass, and any
/// pass after one that found nothing, reads every page. Results accumulate across passes.
async fn wait_phase(api: &Api, submitted: &[Submitted], timeout: Duration) -> WaitPhase {
    let wanted: HashSet<&str> = submitted.iter().map(|t| t.id.as_str()).collect();
    let deadline = Instant::now() + timeout;
    let mut wait = WaitPhase {
        completed: HashMap::with_capacity(wanted.len()),
        timed_out: false,
        failed: None,
        errors: BTreeMap::new(),
    };
    let mut pass = 0u32;
    let mut stale = false;
    while wait.completed.len() < wanted.len() {
        if Instant::now() >= deadline {
            wait.timed_out = true;
            let failed = list_all(api, ListStatus::Failed, &mut wait.errors).await;
            wait.failed = Some(
                failed
                    .iter()
                    .filter(|t| wanted.contains(t.id.as_str()))
                    .count(),
            );
            break;
        }
        let full = stale || pass.is_multiple_of(FULL_PASS_EVERY);
        let found = completed_pass(api, &wanted, &mut wait, full).await;
        stale = !full && found == 0;
        pass = pass.wrapping_add(1);
        if wait.completed.len() < wanted.len() {
            tokio::time::sleep(
                POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
    wait
}

/// One pass over the caller's completed tasks, newest-created first, recording those of
/// `wanted` not seen before; returns how many it recorded. Unless `full`, stops after the first
/// page that adds nothing. A failed call ends the pass (the next pass tries again).
async fn completed_pass(
    api: &Api,
    wanted: &HashSet<&str>,
    wait: &mut WaitPhase,
    full: bool,
) -> usize {
    let mut found = 0;
    let mut token = String::new();
    loop {
        match api.list(ListStatus::Completed, &token).await {
            Ok(page) => {
                let mut new = 0;
                for t in page.tasks {
                    if let Some(at) = t.completed_at
                        && wanted.contains(t.id.as_str())
                        && !wait.completed.contains_key(&t.id)
                    {
                        wait.completed.insert(t.id, at);
                        new += 1;
                    }
                }
                found += new;
                if page.next_page_token.is_empty() || (!full && new == 0) {
                    return found;
                }
                token = page.next_page_token;
            }
            Err(e) => {
                count_error(&mut wait.errors, &e, 1);
                return found;
            }
        }
    }
}

/// Every page of the caller's tasks with `status`; stops early (returning what it has) when a
/// call fails.
async fn list_all(
    api: &Api,
    status: ListStatus,
    errors: &mut BTreeMap<String, ErrorCount>,
) -> Vec<TaskInfo> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        match api.list(status, &token).await {
            Ok(page) => {
                all.extend(page.tasks);
                if page.next_page_token.is_empty() {
                    return all;
                }
                token = page.next_page_token;
            }
            Err(e) => {
                count_error(errors, &e, 1);
                return all;
            }
        }
    }
}

/// Submit-to-complete figures.
struct EndToEnd {
    /// Per task: `completed_at` minus client submit start, microseconds.
    latency: Histogram<u64>,
    /// First submit start to last `completed_at`.
    seconds: Option<f64>,
    /// Completed tasks per second over `seconds`.
    throughput: Option<f64>,
    /// End of the submit phase to the last `completed_at`: how long the backlog took to drain.
    drain_seconds: Option<f64>,
}

impl EndToEnd {
    fn compute(submit: &SubmitPhase, wait: &WaitPhase) -> anyhow::Result<Self> {
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
fn since_submit(
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

fn secs(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

/// The read phase's outcome.
struct GetPhase {
    calls: usize,
    latency: Histogram<u64>,
    errors: BTreeMap<String, ErrorCount>,
}

async fn get_phase(api: &Api, args: &Args, ids: Vec<String>) -> anyhow::Result<GetPhase> {
    let ids = Arc::new(ids);
    let calls = ids.len();
    let phase = run_calls(calls, args.rate, args.concurrency, |j| {
        let (api, ids) = (api.clone(), ids.clone());
        async move { api.get(&ids[j]).await }
    })
    .await?;
    Ok(GetPhase {
        calls,
        latency: phase.latency,
        errors: phase.errors,
    })
}

/// `count` items spread evenly over `items`.
fn spread<T>(items: &[T], count: usize) -> Vec<&T> {
    let count = count.min(items.len());
    (0..count)
        .map(|i| &items[i * items.len() / count])
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// How often one kind of error happened, with one example.
#[derive(Debug, Clone, Serialize)]
struct ErrorCount {
    /// Failed calls.
    calls: u64,
    /// The first message seen.
    example: String,
}

fn count_error(errors: &mut BTreeMap<String, ErrorCount>, e: &CallError, calls: u64) {
    errors
        .entry(e.kind.clone())
        .and_modify(|c| c.calls += calls)
        .or_insert_with(|| ErrorCount {
            calls,
            example: e.detail.clone(),
        });
}

/// All errors of a run, keyed `"<phase>: <kind>"`.
#[derive(Default)]
struct ErrorTally {
    kinds: BTreeMap<String, ErrorCount>,
}

impl ErrorTally {
    fn absorb(&mut self, phase: &str, errors: &BTreeMap<String, ErrorCount>) {
        for (kind, count) in errors {
            self.kinds.insert(format!("{phase}: {kind}"), count.clone());
        }
    }
}

/// Percentiles of one histogram, in milliseconds with two decimals.
#[derive(Debug, Serialize)]
struct Summary {
    count: u64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| round2(us as f64 / 1000.0);
        Some(Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }

    fn line(s: &Option<Self>, with_max: bool) -> String {
        match s {
            None => "n/a".to_owned(),
            Some(s) if with_max => format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms  (n={})",
                s.p50, s.p95, s.p99, s.max, s.count
            ),
            Some(s) => format!(
                "p50 {:.2}  p95 {:.2}  p99 {:.2} ms  (n={})",
                s.p50, s.p95, s.p99, s.count
            ),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Everything a run measured.
#[derive(Serialize)]
struct Report {
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
    /// The report as text, one line per figure.
    fn render(&self) -> Result<String, std::fmt::Error> {
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
