//! An SSE stream (`/api/v1/events`) on one of the per-source clients: the `subscribed` (or
//! `resync`) event, then every event until told to stop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ai_integration_service::error_text::error_chain;
use chrono::Utc;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Frame, Latency, Spec, Target, Transport, clip, fail};

/// Holds one SSE stream until `stop` (see [`super::hold`]).
pub(super) async fn hold_sse(
    target: &Target,
    spec: Spec,
    latency: &Latency,
    opened: oneshot::Sender<Result<Duration, String>>,
    start: Instant,
    stop: CancellationToken,
) {
    let stats = spec.stats.clone();
    let client = &target.sse_clients[spec.index % target.sse_clients.len()];
    let url = format!("{}/api/v1/events?access_token={}", target.base, spec.token);
    let open = async {
        let resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("sse connect: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!(
                "sse: http {}: {}",
                status.as_u16(),
                clip(&body, 120)
            ));
        }
        let mut events = resp.bytes_stream().eventsource();
        match events.next().await {
            Some(Ok(e)) if e.event == "subscribed" || e.event == "resync" => {
                let first: Frame = serde_json::from_str(&e.data)
                    .map_err(|e| format!("sse: bad first event: {e}"))?;
                stats.last.store(first.id, Ordering::Relaxed);
                Ok(events)
            }
            Some(Ok(e)) => Err(format!("sse: first event {:?}: {}", e.event, e.data)),
            Some(Err(e)) => Err(format!("sse: {e}")),
            None => Err("sse: ended before the first event".into()),
        }
    };
    let mut events = match tokio::time::timeout(target.open_timeout, open).await {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => return fail(&stats, opened, e),
        Err(_) => return fail(&stats, opened, "sse: timed out opening".into()),
    };
    stats.mark_open(opened, start);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            Some(Ok(e)) if e.event == "error" => {
                return stats.end(format!("sse error event: {}", e.data));
            }
            Some(Ok(e)) => {
                let arrived = Utc::now();
                match serde_json::from_str::<Frame>(&e.data) {
                    Ok(Frame {
                        id,
                        created_at: Some(at),
                        kind,
                    }) => {
                        latency.record(Transport::Sse, kind.as_deref(), at, arrived);
                        stats.observe(id);
                    }
                    Ok(_) => {}
                    Err(err) => return stats.end(format!("sse: bad event data: {err}")),
                }
            }
            Some(Err(e)) => return stats.end(format!("sse: {e}")),
            None => return stats.end("sse: stream ended".into()),
        }
    }
}
