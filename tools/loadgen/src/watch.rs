//! `--watch`: when a watching client learns each task's outcome.
//!
//! `completed_at` is stamped by the worker when the provider answers, before the outcome is
//! committed and published. A client sees the result later: once the commit is done and the
//! event has come through the notification path. With `--watch` the run opens one SSE stream
//! (`/api/v1/events`) per submitting user before the first submit and stamps each terminal
//! event (`TaskCompleted`, `TaskFailed`, `TaskCancelled`) with the client's clock as it
//! arrives, so the report can say how long after its submit a watcher knew each task's end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_integration_service::error_text::error_chain;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest wait for a stream's first event.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Terminal events' arrival times by task id.
type Arrivals = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

/// The open streams.
pub struct Watch {
    arrivals: Arrivals,
    stop: CancellationToken,
    streams: JoinSet<Result<(), String>>,
}

/// The part of an event's data the watch reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: Option<String>,
    task_id: Option<String>,
}

impl Watch {
    /// Opens a stream per token at `base` and returns once every one has said `subscribed`.
    pub async fn open(
        http: &reqwest::Client,
        base: &str,
        tokens: &[String],
    ) -> anyhow::Result<Self> {
        let mut watch = Self {
            arrivals: Arc::default(),
            stop: CancellationToken::new(),
            streams: JoinSet::new(),
        };
        for token in tokens {
            let resp = tokio::time::timeout(
                OPEN_TIMEOUT,
                http.get(format!("{base}/api/v1/events"))
                    .bearer_auth(token)
                    .send(),
            )
            .await
            .context("opening an event stream: timed out")?
            .map_err(|e| anyhow::anyhow!("opening an event stream: {}", error_chain(&e)))?;
            if !resp.status().is_success() {
                bail!("opening an event stream: HTTP {}", resp.status());
            }
            let mut events = resp.bytes_stream().eventsource();
            match tokio::time::timeout(OPEN_TIMEOUT, events.next()).await {
                Ok(Some(Ok(e))) if e.event == "subscribed" => {}
                Ok(Some(Ok(e))) => bail!("event stream: first event {:?}: {}", e.event, e.data),
                Ok(Some(Err(e))) => bail!("event stream: {e}"),
                Ok(None) => bail!("event stream ended before its first event"),
                Err(_) => bail!("event stream: no first event within {OPEN_TIMEOUT:?}"),
            }
            let (arrivals, stop) = (watch.arrivals.clone(), watch.stop.clone());
            watch.streams.spawn(async move {
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        next = events.next() => next,
                    };
                    let event = match next {
                        Some(Ok(e)) => e,
                        Some(Err(e)) => return Err(format!("event stream: {e}")),
                        None => return Err("event stream ended".into()),
                    };
                    let arrived = Utc::now();
                    if event.event == "error" {
                        return Err(format!("event stream closed: {}", event.data));
                    }
                    let Ok(frame) = serde_json::from_str::<Frame>(&event.data) else {
                        continue;
                    };
                    let terminal = matches!(
                        frame.kind.as_deref(),
                        Some("TaskCompleted" | "TaskFailed" | "TaskCancelled")
                    );
                    if let (true, Some(task)) = (terminal, frame.task_id) {
                        lock(&arrivals).entry(task).or_insert(arrived);
                    }
                }
            });
        }
        Ok(watch)
    }

    /// Waits up to `grace` for `expected` tasks' ends (an event leaves the server just after
    /// its task reads as ended), then closes the streams; returns when each task's end arrived,
    /// and what broke a stream early.
    pub async fn close(
        mut self,
        expected: usize,
        grace: Duration,
    ) -> (HashMap<String, DateTime<Utc>>, Vec<String>) {
        let deadline = tokio::time::Instant::now() + grace;
        while lock(&self.arrivals).len() < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.cancel();
        let mut broken = Vec::new();
        while let Some(ended) = self.streams.join_next().await {
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => broken.push(e),
                Err(e) => broken.push(format!("event stream task: {e}")),
            }
        }
        let arrivals = std::mem::take(&mut *lock(&self.arrivals));
        (arrivals, broken)
    }
}

fn lock(a: &Arrivals) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
    a.lock().unwrap_or_else(|e| e.into_inner())
}
