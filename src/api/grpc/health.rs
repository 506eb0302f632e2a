//! `grpc.health.v1.Health` that tells the truth: the whole server ("") and each of our
//! services report NOT_SERVING while [`Readiness`] fails (the database or the queue is down)
//! and from the moment the drain starts; SERVING otherwise. `Watch` streams each change.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::api::proto::{
    admin_service_server, chat_service_server, event_store_service_server,
    notification_service_server, pipeline_service_server, progress_service_server,
    provider_service_server, task_service_server,
};
use crate::service::Readiness;

/// How often [`HealthWatch`] probes readiness: a dependency that goes down (or comes back) shows
/// in health within about this long.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Every name whose status we report: the whole server ("", by the health protocol) and each of
/// our services. They share one status: every service needs the database and the queue.
pub const SERVICES: [&str; 9] = [
    "",
    task_service_server::SERVICE_NAME,
    admin_service_server::SERVICE_NAME,
    notification_service_server::SERVICE_NAME,
    provider_service_server::SERVICE_NAME,
    event_store_service_server::SERVICE_NAME,
    progress_service_server::SERVICE_NAME,
    chat_service_server::SERVICE_NAME,
    pipeline_service_server::SERVICE_NAME,
];

/// Keeps the reported statuses in step with [`Readiness`]; run it on the app's tracker.
pub struct HealthWatch {
    reporter: HealthReporter,
    readiness: Readiness,
    /// Time between probes.
    interval: Duration,
    /// What every name reports now. Only a change is sent: each send, even of the same status,
    /// is a new message on every `Watch`.
    status: ServingStatus,
}

/// The health service, and the loop that feeds it every `interval`: every name starts SERVING
/// (the app has just reached its database and queue) until the loop's first probe says
/// otherwise.
pub async fn health_service(readiness: Readiness, interval: Duration) -> (HealthWatch, HealthApi) {
    let reporter = HealthReporter::new();
    for name in SERVICES {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let api = HealthApi {
        inner: HealthService::from_health_reporter(reporter.clone()),
        readiness: readiness.clone(),
    };
    let watch = HealthWatch {
        reporter,
        readiness,
        interval,
        status: ServingStatus::Serving,
    };
    (watch, api)
}

impl HealthWatch {
    /// Probes every `interval` until `shutdown`, then reports NOT_SERVING for good.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        // A probe slower than the interval (a hanging dependency) must not cause a burst after.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let probed = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                probed = async {
                    ticks.tick().await;
                    self.readiness.check().await
                } => probed,
            };
            match (&probed, self.status) {
                (Ok(()), ServingStatus::NotServing) => {
                    tracing::info!("ready again: gRPC health SERVING");
                }
                (Err(e), ServingStatus::Serving) => {
                    tracing::warn!(reason = %e, "not ready: gRPC health NOT_SERVING");
                }
                _ => {}
            }
            self.set(match probed {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            })
            .await;
        }
        // `HealthApi` already answers NOT_SERVING for the drain; the reporter agrees from now.
        self.set(ServingStatus::NotServing).await;
    }

    /// Sets every name to `status`, when that is a change.
    async fn set(&mut self, status: ServingStatus) {
        if status == self.status {
            return;
        }
        for name in SERVICES {
            self.reporter.set_service_status(name, status).await;
        }
        self.status = status;
    }
}

/// tonic's health service, with the drain applied the moment it starts rather than at the
/// loop's next look, and with `Watch` streams that end once they have said NOT_SERVING for
/// the drain (an endless stream would hold its connection open through the whole grace period).
pub struct HealthApi {
    inner: HealthService,
    readiness: Readiness,
}

#[tonic::async_trait]
impl Health for HealthApi {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let mut response = self.inner.check(request).await?;
        if self.readiness.is_draining() {
            response.get_mut().status = WireStatus::NotServing as i32;
        }
        Ok(response)
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let updates = self.inner.watch(request).await?.into_inner().boxed();
        Ok(Response::new(
            until_drained(updates, self.readiness.clone()).boxed(),
        ))
    }
}

/// What one `Watch` stream holds between messages.
struct Watching {
    updates: BoxStream<'static, Result<HealthCheckResponse, Status>>,
    readiness: Readiness,
    /// The status last sent, so the drain's NOT_SERVING is not sent twice.
    last: Option<i32>,
}

/// What a `Watch` stream does next.
enum Next {
    Send(Result<HealthCheckResponse, Status>),
    /// The drain began: say NOT_SERVING (unless already said), then end.
    Drain,
    End,
}

/// Passes `updates` on until the drain starts; then sends NOT_SERVING and ends.
fn until_drained(
    updates: BoxStream<'static, Result<HealthCheckResponse, Status>>,
    readiness: Readiness,
) -> impl futures::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static {
    let start = Watching {
        updates,
        readiness,
        last: None,
    };
    futures::stream::unfold(Some(start), |state| async move {
        let mut w = state?;
        let next = tokio::select! {
            // The drain first: a SERVING update racing it must not be the last word.
            biased;
            () = w.readiness.drained() => Next::Drain,
            item = w.updates.next() => item.map_or(Next::End, Next::Send),
        };
        match next {
            Next::Send(item) => {
                if let Ok(r) = &item {
                    w.last = Some(r.status);
                }
                Some((item, Some(w)))
            }
            Next::Drain => {
                let not_serving = WireStatus::NotServing as i32;
                (w.last != Some(not_serving)).then_some((
                    Ok(HealthCheckResponse {
                        status: not_serving,
                    }),
                    None,
                ))
            }
            Next::End => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use tokio_util::sync::CancellationToken;
    use tonic::Request;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
    use tonic_health::pb::health_server::Health;

    use super::{HealthApi, SERVICES, health_service};
    use crate::queue::MemoryQueue;
    use crate::service::Readiness;
    use crate::store::SqliteTaskStore;

    /// A readiness over a real (embedded) store and queue, drained by the returned token.
    async fn readiness(dir: &std::path::Path) -> (Readiness, CancellationToken) {
        let store = Arc::new(SqliteTaskStore::open(dir).await.unwrap());
        let draining = CancellationToken::new();
        let r = Readiness::new(store, Arc::new(MemoryQueue::new()), draining.clone());
        (r, draining)
    }

    async fn check(api: &HealthApi, service: &str) -> i32 {
        let request = Request::new(HealthCheckRequest {
            service: service.into(),
        });
        api.check(request).await.unwrap().into_inner().status
    }

    #[tokio::test]
    async fn the_loop_stops_on_shutdown_and_leaves_every_name_not_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (readiness, _draining) = readiness(dir.path()).await;
        let (watch, api) = health_service(readiness, Duration::from_millis(10)).await;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(watch.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for name in SERVICES {
            assert_eq!(
                check(&api, name).await,
                WireStatus::Serving as i32,
                "{name}"
            );
        }

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), running)
            .await
            .expect("the loop stops on shutdown")
            .unwrap();
        for name in SERVICES {
            assert_eq!(
                check(&api, name).await,
                WireStatus::NotServing as i32,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_watch_says_not_serving_when_the_drain_starts_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (readiness, draining) = readiness(dir.path()).await;
        // The loop is never run here: the drain alone must reach the stream.
        let (_watch, api) = health_service(readiness, Duration::from_secs(60)).await;
        let request = Request::new(HealthCheckRequest {
            service: SERVICES[1].into(),
        });
        let mut stream = api.watch(request).await.unwrap().into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.status, WireStatus::Serving as i32);

        draining.cancel();
        let last = tokio::time::timeout(Duration::from_secs(1), stream.next())
            .await
            .expect("NOT_SERVING at once")
            .unwrap()
            .unwrap();
        assert_eq!(last.status, WireStatus::NotServing as i32);
        assert!(stream.next().await.is_none(), "the stream ends after it");
        assert_eq!(check(&api, "").await, WireStatus::NotServing as i32);
    }
}
