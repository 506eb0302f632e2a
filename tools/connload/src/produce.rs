//! The event source: echo tasks submitted at a fixed rate over `POST /api/v1/tasks` (or
//! `POST /api/v1/tasks/batch`, several tasks of one user per call), spread round-robin over the
//! users whose connections are open. Every echo task makes three events (TaskCreated,
//! TaskStarted, TaskCompleted), each delivered to every connection of its user. Also what the
//! server and the machine spent on CPU meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use ai_integration_service::error_text::error_chain;

use crate::client::clip;
use crate::process;
use crate::report::{Cpu, round1};

/// What to submit.
pub struct Plan {
    /// Tasks per second (open loop: task `j` is due at `j / rate` s).
    pub rate: f64,
    /// Tasks in all.
    pub tasks: u64,
    /// Tasks per call: 1 uses `POST /api/v1/tasks`, more the batch endpoint (one user's).
    pub batch: u64,
    /// Most submits in flight.
    pub concurrency: usize,
    /// Users to submit for, in turn (indexes into `tokens`).
    pub users: Vec<usize>,
}

/// What the submits did.
pub struct Produced {
    /// Tasks sent.
    pub sent: u64,
    /// Tasks accepted (their call answered 2xx).
    pub accepted: u64,
    /// From the first due time to the last answer.
    pub elapsed: Duration,
    /// Submit call latency from the due time, microseconds.
    pub latency: Histogram<u64>,
    /// Tasks whose submit call failed, by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Submits `plan.tasks` echo tasks; counts each accepted one in `accepted[user]`.
pub async fn produce(
    client: reqwest::Client,
    base: &str,
    tokens: Arc<Vec<String>>,
    plan: Plan,
    accepted: Arc<Vec<AtomicU64>>,
) -> anyhow::Result<Produced> {
    let batch = plan.batch.max(1);
    let path = if batch > 1 {
        "/api/v1/tasks/batch"
    } else {
        "/api/v1/tasks"
    };
    let url: Arc<str> = format!("{base}{path}").into();
    let slots = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut out = Produced {
        sent: 0,
        accepted: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        errors: BTreeMap::new(),
    };
    let calls = plan.tasks.div_ceil(batch);
    let start = Instant::now();
    let mut running = JoinSet::new();
    for j in 0..calls {
        let due = start + Duration::from_secs_f64((j * batch) as f64 / plan.rate);
        tokio::time::sleep_until(due).await;
        let slot = slots.clone().acquire_owned().await?;
        let user = plan.users[(j % plan.users.len() as u64) as usize];
        let first = j * batch;
        let count = batch.min(plan.tasks - first);
        let (client, url, tokens, accepted) = (
            client.clone(),
            url.clone(),
            tokens.clone(),
            accepted.clone(),
        );
        running.spawn(async move {
            let result = submit(&client, &url, &tokens[user], first, count, batch > 1).await;
            if result.is_ok() {
                accepted[user].fetch_add(count, Ordering::Relaxed);
            }
            drop(slot);
            (due.elapsed(), count, result)
        });
        out.sent += count;
        while let Some(done) = running.try_join_next() {
            out.absorb(done);
        }
    }
    while let Some(done) = running.join_next().await {
        out.absorb(done);
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

impl Produced {
    fn absorb(&mut self, done: Result<Submitted, tokio::task::JoinError>) {
        match done {
            Ok((latency, count, result)) => {
                self.latency
                    .saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                match result {
                    Ok(()) => self.accepted += count,
                    Err(kind) => *self.errors.entry(kind).or_default() += count,
                }
            }
            Err(e) => {
                *self
                    .errors
                    .entry(format!("client task died: {e}"))
                    .or_default() += 1
            }
        }
    }
}

/// One call's latency, task count and outcome.
type Submitted = (Duration, u64, Result<(), String>);

/// Submits echo tasks `first..first + count` of one user in one call; the error is a short
/// kind (status and the start of the body).
async fn submit(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    first: u64,
    count: u64,
    batched: bool,
) -> Result<(), String> {
    let task = |k: u64| json!({ "type": "echo", "payload": { "i": k } });
    let body = if batched {
        json!({ "tasks": (first..first + count).map(task).collect::<Vec<_>>() })
    } else {
        task(first)
    };
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("submit transport: {}", error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        // Read the body so the connection goes back to the pool.
        let _ = resp.bytes().await;
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(format!(
        "submit http {}: {}",
        status.as_u16(),
        clip(&body, 100)
    ))
}

/// CPU used over the produce phase: the server's, and the whole machine's.
pub fn cpu_use(
    server: &str,
    (server_before, machine_before): (f64, process::MachineCpu),
    produced: Option<&Produced>,
) -> anyhow::Result<Option<Cpu>> {
    let Some(p) = produced else {
        return Ok(None);
    };
    let seconds = p.elapsed.as_secs_f64().max(1e-9);
    let server_cpu = process::cpu_seconds(server)? - server_before;
    let (busy, steal) = process::machine_percent(machine_before, process::machine_cpu()?);
    Ok(Some(Cpu {
        server_cores: (server_cpu / seconds * 100.0).round() / 100.0,
        machine_busy_percent: round1(busy),
        machine_steal_percent: round1(steal),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
    }))
}
