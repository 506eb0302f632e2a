//! What the dashboard shows beside the charts, read once a second while a dashboard is open:
//! queues, instances, providers, dead letters and this month's spend. Each read is bounded
//! (a depth per queue, a breaker per provider, a capped count, one row per instance or user);
//! the database ones are cached for a few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::point::ProviderPoint;
use super::ring::Ring;
use crate::clock;
use crate::domain::{PriorityLevel, month_of};
use crate::execution::TaskRunner;
use crate::queue::{QueueStates, TaskQueue};
use crate::store::{TaskStore, UsageStore, WorkerDirectory, WorkerRecord};
use crate::telemetry::live::{InstanceSample, PoolFigures};

/// How often the database figures (instances, dead letters, spend) are read again.
const DATABASE_REFRESH: Duration = Duration::from_secs(5);
/// Instances whose last heartbeat is older than this many minutes are not listed.
const INSTANCE_WINDOW_MINUTES: i64 = 15;
/// The dead-letter count stops here, so its read stays cheap.
const DEAD_LETTER_CAP: u64 = 100_000;
/// The provider figures cover this many seconds.
const PROVIDER_WINDOW: usize = 60;

/// Where the state is read from.
#[derive(Clone)]
pub struct StateSources {
    /// Queue depths.
    pub queue: Arc<dyn TaskQueue>,
    /// Paused flags and the configured queues.
    pub states: Arc<QueueStates>,
    /// Providers and their breakers.
    pub runner: TaskRunner,
    /// Dead letters.
    pub store: Arc<dyn TaskStore>,
    /// This month's spend.
    pub usage: Arc<dyn UsageStore>,
    /// The `workers` table.
    pub workers: Arc<dyn WorkerDirectory>,
}

/// Everything but the charts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct State {
    /// Configured queues.
    pub queues: Vec<QueueState>,
    /// Instances from the `workers` table, with their pools.
    pub instances: Vec<InstanceState>,
    /// Configured providers.
    pub providers: Vec<ProviderState>,
    /// Failed tasks kept (counted up to 100,000).
    pub dead_letters: Option<u64>,
    /// `YYYY-MM`.
    pub month: String,
    /// Every user's spend this month, micro-dollars.
    pub month_spend_micros: Option<i64>,
}

/// One queue now.
#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    /// Its name.
    pub name: String,
    /// `standard`, `priority` or `rate_limited`.
    pub kind: &'static str,
    /// Whether it is paused.
    pub paused: bool,
    /// Ready tasks per priority band: low, normal, high, critical.
    pub ready: Vec<(&'static str, u64)>,
    /// Tasks waiting out a retry delay.
    pub delayed: u64,
}

/// One instance now.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceState {
    /// Its worker pool id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// `active`, `stopped` or `dead`.
    pub status: String,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Its pool, from its latest sample (`None`: none published lately).
    pub pool: Option<PoolFigures>,
    /// Whether this is the instance serving the dashboard.
    pub this: bool,
}

/// One provider now.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderState {
    /// Its name.
    pub name: String,
    /// Lower goes first.
    pub priority: u32,
    /// `closed`, `open` or `half_open` (`None`: unreadable).
    pub breaker: Option<String>,
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Its configured rate, e.g. `60/1m`.
    pub rate_limit: Option<String>,
    /// Calls in the last minute, cluster-wide.
    pub calls_1m: u64,
    /// Share of those that succeeded.
    pub success_rate_1m: Option<f64>,
    /// Their mean latency, milliseconds.
    pub avg_latency_ms_1m: Option<f64>,
    /// Share of the configured rate left unused over the last minute.
    pub headroom: Option<f64>,
    /// Money spent on it in the last 15 minutes, micro-dollars.
    pub spend_15m_micros: u64,
}

/// The providers' calls over the last minute and their spend over the history.
#[derive(Debug, Default)]
pub struct ProviderWindow {
    /// Calls, successes, latency and cost per provider over the last [`PROVIDER_WINDOW`] s.
    recent: HashMap<String, ProviderPoint>,
    /// Seconds the recent figures cover.
    seconds: usize,
    /// Cost per provider over the whole history, micro-dollars.
    spend: HashMap<String, u64>,
}

impl ProviderWindow {
    /// Sums the points of `ring`.
    pub fn of(ring: &Ring) -> Self {
        let mut w = Self::default();
        for p in ring.last(PROVIDER_WINDOW) {
            w.seconds += 1;
            for (name, c) in &p.providers {
                let r = w.recent.entry(name.clone()).or_default();
                r.0 += c.0;
                r.1 += c.1;
                r.2 += c.2;
                r.3 += c.3;
            }
        }
        for p in ring.points() {
            for (name, c) in &p.providers {
                *w.spend.entry(name.clone()).or_default() += c.3;
            }
        }
        w
    }
}

/// Reads the [`State`], keeping the database figures for [`DATABASE_REFRESH`].
pub struct StateReader {
    sources: StateSources,
    /// The database figures and when they were read.
    cached: Option<(Instant, DatabaseFigures)>,
}

#[derive(Clone, Default)]
struct DatabaseFigures {
    workers: Vec<WorkerRecord>,
    dead_letters: Option<u64>,
    month_spend: Option<i64>,
}

impl StateReader {
    /// Reads from `sources`.
    pub fn new(sources: StateSources) -> Self {
        Self {
            sources,
            cached: None,
        }
    }

    /// The state now. `me` is this instance's pool id; `samples` the latest of each instance;
    /// `window` the providers' recent calls. A source that fails leaves its part empty
    /// (logged at debug): the dashboard keeps updating.
    pub async fn read(
        &mut self,
        me: &str,
        samples: &[InstanceSample],
        window: &ProviderWindow,
    ) -> State {
        let db = self.database_figures().await;
        let (queues, providers) = tokio::join!(self.queues(), self.providers(window));
        State {
            queues,
            instances: instances(me, &db.workers, samples),
            providers,
            dead_letters: db.dead_letters,
            month: month_of(clock::now()),
            month_spend_micros: db.month_spend,
        }
    }

    async fn database_figures(&mut self) -> DatabaseFigures {
        if let Some((at, figures)) = &self.cached
            && at.elapsed() < DATABASE_REFRESH
        {
            return figures.clone();
        }
        let s = &self.sources;
        let now = clock::now();
        let month = month_of(now);
        let (workers, dead, spend) = tokio::join!(
            s.workers
                .workers_seen_since(now - chrono::Duration::minutes(INSTANCE_WINDOW_MINUTES)),
            s.store.count_dead_letters(DEAD_LETTER_CAP),
            s.usage.total_spend(&month),
        );
        let figures = DatabaseFigures {
            workers: workers
                .inspect_err(|e| tracing::debug!(error = %e, "workers unread"))
                .unwrap_or_default(),
            dead_letters: dead
                .inspect_err(|e| tracing::debug!(error = %e, "dead letters uncounted"))
                .ok(),
            month_spend: spend
                .inspect_err(|e| tracing::debug!(error = %e, "month spend unread"))
                .ok()
                .map(|s| s.spent.0),
        };
        self.cached = Some((Instant::now(), figures.clone()));
        figures
    }

    async fn queues(&self) -> Vec<QueueState> {
        let s = &self.sources;
        let mut out = Vec::new();
        for (i, spec) in s.states.set().specs().iter().enumerate() {
            let depth = s
                .queue
                .depth_by_level(spec.name)
                .await
                .inspect_err(|e| tracing::debug!(queue = %spec.name, error = %e, "depth unread"))
                .unwrap_or_default();
            out.push(QueueState {
                name: spec.name.as_str().to_owned(),
                kind: spec.kind.as_str(),
                paused: s.states.is_paused(i),
                ready: PriorityLevel::ALL
                    .iter()
                    .map(|l| (l.as_str(), depth.ready[l.index()]))
                    .collect(),
                delayed: depth.delayed,
            });
        }
        out
    }

    async fn providers(&self, window: &ProviderWindow) -> Vec<ProviderState> {
        let router = self.sources.runner.router();
        let mut out = Vec::new();
        for spec in router.providers() {
            let name = spec.adapter.name();
            let breaker = router
                .breakers()
                .snapshot(name)
                .await
                .inspect_err(|e| tracing::debug!(provider = name, error = %e, "breaker unread"))
                .ok();
            let ProviderPoint(calls, ok, latency, _) =
                window.recent.get(name).cloned().unwrap_or_default();
            let spend = window.spend.get(name).copied().unwrap_or(0);
            let per_second = spec
                .request_rate
                .map(|r| f64::from(r.count) / r.period.as_secs_f64().max(1e-3));
            let used = calls as f64 / window.seconds.max(1) as f64;
            out.push(ProviderState {
                name: name.to_owned(),
                priority: spec.priority,
                breaker: breaker.map(|b| {
                    serde_json::to_value(b.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
                failures: breaker.map_or(0, |b| b.failures),
                rate_limit: spec.request_rate.map(|r| r.to_string()),
                calls_1m: calls,
                success_rate_1m: (calls > 0).then(|| ok as f64 / calls as f64),
                avg_latency_ms_1m: (calls > 0).then(|| latency as f64 / calls as f64),
                headroom: per_second.map(|limit| (1.0 - used / limit).clamp(0.0, 1.0)),
                spend_15m_micros: spend,
            });
        }
        out
    }
}

/// The instances of the `workers` table with their pools, plus any instance that published
/// a sample but is not (yet) in the table.
fn instances(me: &str, workers: &[WorkerRecord], samples: &[InstanceSample]) -> Vec<InstanceState> {
    let pool_of = |id: &str| samples.iter().find(|s| s.instance == id).map(|s| s.pool);
    let mut out: Vec<InstanceState> = workers
        .iter()
        .map(|w| InstanceState {
            id: w.id.clone(),
            host: w.instance.clone(),
            status: w.status.clone(),
            last_heartbeat: w.last_heartbeat,
            pool: pool_of(&w.id),
            this: w.id == me,
        })
        .collect();
    for s in samples {
        if !workers.iter().any(|w| w.id == s.instance) {
            out.push(InstanceState {
                id: s.instance.clone(),
                host: s.instance.clone(),
                status: "active".into(),
                last_heartbeat: DateTime::from_timestamp_millis(s.at_ms).unwrap_or_default(),
                pool: Some(s.pool),
                this: s.instance == me,
            });
        }
    }
    out
}
