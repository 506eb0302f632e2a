//! The dashboard's once-a-second loop on each instance: publish this instance's counters,
//! read every instance's, add the cluster's new second to the history and, while a dashboard
//! is open, send one frame that every open dashboard shares.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::point::Point;
use super::ring::Ring;
use super::state::{ProviderWindow, State, StateReader};
use super::sum::ClusterSummer;
use crate::clock;
use crate::telemetry::live::board::{SAMPLE_MAX_AGE_MS, SampleBoard};
use crate::telemetry::live::{InstanceSample, LiveCounters, PoolFigures};
use crate::worker::Slots;

/// Samples older than this are not summed: their instance missed a few publishes (it is
/// stopping, or Redis is slow), and its next sample carries what it counted meanwhile.
const FRESH_MS: i64 = 5_000;

/// The latest frame, shared by every open dashboard (`None` while nobody watches).
pub type Frames = watch::Sender<Option<Arc<str>>>;

/// One frame: the newest second and the state now.
#[derive(Serialize)]
struct Frame<'a> {
    point: &'a Point,
    state: &'a State,
}

/// Who this instance is on the board.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its worker pool id.
    pub id: String,
    /// Random at each start.
    pub boot: u64,
    /// When it started, unix milliseconds.
    pub started_ms: i64,
}

/// The loop's parts.
pub struct Aggregator {
    pub(super) me: Identity,
    pub(super) live: Arc<LiveCounters>,
    pub(super) board: Arc<dyn SampleBoard>,
    pub(super) slots: Arc<Slots>,
    pub(super) state: StateReader,
    pub(super) summer: ClusterSummer,
    pub(super) ring: Arc<Mutex<Ring>>,
    pub(super) frames: Arc<Frames>,
    pub(super) interval: Duration,
}

impl Aggregator {
    /// Ticks every interval until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.tick().await,
                _ = shutdown.cancelled() => break,
            }
        }
        // Open streams end with the frames.
        self.frames.send_replace(None);
    }

    /// One second: publish, sum, record, and send a frame if anyone watches.
    pub async fn tick(&mut self) {
        let now = clock::now();
        let now_ms = now.timestamp_millis();
        let own = self.sample(now_ms);
        if let Err(e) = self.board.publish(&own).await {
            tracing::debug!(error = %e, "dashboard sample not published");
        }
        let mut samples = match self.board.read(now_ms - FRESH_MS).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "dashboard samples unread");
                Vec::new()
            }
        };
        // This instance always counts, even when the board is away.
        samples.retain(|s| s.instance != own.instance);
        samples.push(own);
        let delta = self.summer.step(&samples, now_ms);
        let point = Point::from_delta(now.timestamp(), &delta);
        let window = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.push(point.clone());
            ProviderWindow::of(&ring)
        };
        if self.frames.receiver_count() == 0 {
            self.frames.send_replace(None);
            return;
        }
        let state = self.state.read(&self.me.id, &samples, &window).await;
        match serde_json::to_string(&Frame {
            point: &point,
            state: &state,
        }) {
            Ok(json) => {
                self.frames.send_replace(Some(Arc::from(json)));
            }
            Err(e) => tracing::warn!(error = %e, "dashboard frame not serialised"),
        }
    }

    fn sample(&self, now_ms: i64) -> InstanceSample {
        let pool = self.slots.snapshot();
        InstanceSample {
            instance: self.me.id.clone(),
            boot: self.me.boot,
            started_ms: self.me.started_ms,
            at_ms: now_ms,
            series: self.live.series(),
            providers: self.live.providers(),
            pool: PoolFigures {
                slots: pool.max as u64,
                limit: pool.limit as u64,
                busy: pool.running as u64,
                adaptive: pool.adaptive,
            },
        }
    }
}

// A sample is dropped from the board after SAMPLE_MAX_AGE_MS; it must outlive FRESH_MS.
const _: () = assert!(FRESH_MS < SAMPLE_MAX_AGE_MS);
