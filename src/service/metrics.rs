//! The Prometheus scrape. Gauges that describe shared state (queue depths, breakers, dead
//! letters, this month's spend) are read when the scrape asks, from the shared queue, breakers
//! and store, so every instance reports the cluster's figures and nothing polls between
//! scrapes. Each read is bounded: a `ZCOUNT`/`ZCARD` per queue and level, one breaker read per
//! provider, a capped count and a sum over one row per user.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock;
use crate::domain::{Micros, month_of};
use crate::execution::TaskRunner;
use crate::providers::BreakerState;
use crate::queue::TaskQueue;
use crate::service::ProjectionsService;
use crate::store::{TaskStore, UsageStore};
use crate::telemetry::metrics;
use crate::worker::Slots;

/// Where the scrape reads shared figures.
#[derive(Clone)]
pub struct MetricsSources {
    /// Queue depths.
    pub queue: Arc<dyn TaskQueue>,
    /// Dead letters.
    pub store: Arc<dyn TaskStore>,
    /// This month's spend.
    pub usage: Arc<dyn UsageStore>,
    /// Breakers, through the runner's router.
    pub runner: TaskRunner,
    /// This instance's pool.
    pub slots: Arc<Slots>,
    /// The service-wide monthly budget, exported for the cost alert.
    pub monthly_budget: Option<Micros>,
    /// The projections' lag.
    pub projections: ProjectionsService,
}

/// Renders `/metrics`.
#[derive(Clone)]
pub struct MetricsService {
    sources: MetricsSources,
    /// `None` when metrics are turned off.
    handle: Option<&'static PrometheusHandle>,
}

impl MetricsService {
    /// Scrapes over `sources` into the recorder of `handle` (`None`: metrics are off).
    pub fn new(handle: Option<&'static PrometheusHandle>, sources: MetricsSources) -> Self {
        Self { sources, handle }
    }

    /// The text format: gauges refreshed, then every metric; `None` when metrics are off. A
    /// source that fails leaves its gauges at their last value (logged at debug): the scrape
    /// itself always answers.
    pub async fn render(&self) -> Option<String> {
        let handle = self.handle?;
        let s = &self.sources;
        let (_, _, _, _) = tokio::join!(
            self.queues(),
            self.breakers(),
            self.store_figures(),
            s.projections.export_metrics()
        );
        let pool = s.slots.snapshot();
        metrics::set_pool(pool.limit, pool.max, &pool.per_queue);
        Some(handle.render())
    }

    async fn queues(&self) {
        let queue = &self.sources.queue;
        for spec in queue.queues().specs() {
            match queue.depth_by_level(spec.name).await {
                Ok(d) => metrics::set_queue_depth(spec.name, d.ready, d.delayed),
                Err(e) => tracing::debug!(queue = %spec.name, error = %e, "queue depth unread"),
            }
        }
    }

    async fn breakers(&self) {
        let router = self.sources.runner.router();
        for spec in router.providers() {
            let name = spec.adapter.name();
            match router.breakers().snapshot(name).await {
                Ok(b) => metrics::set_breaker_state(name, breaker_code(b.state)),
                Err(e) => tracing::debug!(provider = name, error = %e, "breaker state unread"),
            }
        }
    }

    async fn store_figures(&self) {
        let s = &self.sources;
        match s.store.count_dead_letters(metrics::DEAD_LETTER_CAP).await {
            Ok(n) => metrics::set_dead_letters(n),
            Err(e) => tracing::debug!(error = %e, "dead letters uncounted"),
        }
        match s.usage.total_spend(&month_of(clock::now())).await {
            Ok(spend) => metrics::set_month_cost(spend.spent.0, s.monthly_budget.map(|b| b.0)),
            Err(e) => tracing::debug!(error = %e, "month spend unread"),
        }
    }
}

/// The gauge's number: worse is higher, so `max` across instances reads the worst.
fn breaker_code(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}
