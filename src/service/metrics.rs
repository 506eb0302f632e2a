//! The Prometheus scrape: gauges that describe shared state (queue depth) are read when the
//! scrape asks, from the shared queue, so every instance reports the cluster's depth, and
//! nothing polls between scrapes.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::queue::TaskQueue;
use crate::telemetry::metrics;
use crate::worker::Slots;

/// Renders `/metrics`.
#[derive(Clone)]
pub struct MetricsService {
    queue: Arc<dyn TaskQueue>,
    slots: Arc<Slots>,
    handle: &'static PrometheusHandle,
}

impl MetricsService {
    /// Scrapes over `queue` (depths) and this instance's `slots` (pool gauges).
    pub fn new(queue: Arc<dyn TaskQueue>, slots: Arc<Slots>) -> Self {
        Self {
            queue,
            slots,
            handle: metrics::recorder(),
        }
    }

    /// The text format: gauges refreshed, then every metric. One depth read per configured
    /// queue (a `ZCARD` in Redis), whatever the number of tasks stored.
    pub async fn render(&self) -> String {
        for spec in self.queue.queues().specs() {
            match self.queue.depth(spec.name).await {
                Ok(depth) => metrics::set_queue_depth(spec.name, depth),
                Err(e) => tracing::debug!(queue = %spec.name, error = %e, "queue depth unread"),
            }
        }
        let pool = self.slots.snapshot();
        metrics::set_pool(pool.limit, pool.max, &pool.per_queue);
        self.handle.render()
    }
}
