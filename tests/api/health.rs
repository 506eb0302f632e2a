//! gRPC health tells the truth: NOT_SERVING while PostgreSQL is down and from the first
//! instant of a drain, SERVING otherwise, and `Watch` streams each change; checked with
//! tonic's health client and with grpcurl. Server reflection lists and describes every service.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tonic::Streaming;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::faults::{Cluster, sigterm};
use crate::grpcurl;
use crate::helpers::{Mode, both_modes, spawn_app};
use crate::support;

/// Every name health reports on: the whole server, then each of our services. Spelled out (not
/// taken from the server's constants): these are the names clients send.
const NAMES: [&str; 9] = [
    "",
    "ai.integration.v1.TaskService",
    "ai.integration.v1.AdminService",
    "ai.integration.v1.NotificationService",
    "ai.integration.v1.ProviderService",
    "ai.integration.v1.EventStoreService",
    "ai.integration.v1.ProgressService",
    "ai.integration.v1.ChatService",
    "ai.integration.v1.PipelineService",
];

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

async fn channel(base: &str) -> Channel {
    Channel::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects")
}

async fn client(base: &str) -> HealthClient<Channel> {
    HealthClient::new(channel(base).await)
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let status = client
        .check(request(service))
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// A `Watch` of each name, after checking each one's first message says `first`.
async fn watch_all(
    client: &HealthClient<Channel>,
    first: ServingStatus,
) -> Vec<Streaming<HealthCheckResponse>> {
    let mut watches = Vec::new();
    for name in NAMES {
        let mut watch = client
            .clone()
            .watch(request(name))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            next(&mut watch, Duration::from_secs(5)).await,
            first,
            "{name:?}"
        );
        watches.push(watch);
    }
    watches
}

/// The next status a watch streams, within `within`.
async fn next(watch: &mut Streaming<HealthCheckResponse>, within: Duration) -> ServingStatus {
    let message = tokio::time::timeout(within, watch.message())
        .await
        .expect("a health update in time")
        .expect("the stream is healthy")
        .expect("the stream is still open");
    ServingStatus::try_from(message.status).unwrap()
}

/// PostgreSQL stopped: within a few seconds every name is NOT_SERVING (Check, grpcurl, and each
/// open Watch hears it); started again: SERVING again, without a restart of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_postgres_outage() {
    if !grpcurl::available() {
        return;
    }
    let Some((cluster, pg)) = Cluster::on_private_postgres().await else {
        return;
    };
    let a = cluster.start(&[]).await;
    let mut health = client(&a.base).await;
    let mut watches = watch_all(&health, ServingStatus::Serving).await;
    assert_eq!(grpcurl::health_check(&a.base, ""), "SERVING");

    pg.ctl("stop");
    // The probe runs every second and gives a hanging dependency 2 s.
    for (name, watch) in NAMES.iter().zip(&mut watches) {
        let status = next(watch, Duration::from_secs(5)).await;
        assert_eq!(status, ServingStatus::NotServing, "{name:?}");
    }
    for name in NAMES {
        assert_eq!(
            check(&mut health, name).await,
            ServingStatus::NotServing,
            "{name:?}"
        );
        assert_eq!(grpcurl::health_check(&a.base, name), "NOT_SERVING");
    }

    pg.ctl("start");
    for (name, watch) in NAMES.iter().zip(&mut watches) {
        let status = next(watch, Duration::from_secs(10)).await;
        assert_eq!(status, ServingStatus::Serving, "{name:?}");
    }
    for name in NAMES {
        assert_eq!(check(&mut health, name).await, ServingStatus::Serving);
        assert_eq!(grpcurl::health_check(&a.base, name), "SERVING");
    }
    drop(a);
    support::cleanup_redis_prefix(&cluster.redis, &cluster.prefix).await;
}

/// The drain starts (the shutdown token is cancelled): every open `Watch` hears NOT_SERVING at
/// once, then ends cleanly, and does not hold the drain for its grace period.
async fn a_watch_hears_the_drain_then_ends(mode: Mode) {
    let Some(mut app) = spawn_app(mode, &[("SHUTDOWN_GRACE_PERIOD", "5s")]).await else {
        return;
    };
    let health = client(&app.base).await;
    let mut watches = watch_all(&health, ServingStatus::Serving).await;

    let stopping = tokio::spawn(async move {
        let took = app.stop().await;
        (app, took)
    });
    for (name, watch) in NAMES.iter().zip(&mut watches) {
        let status = next(watch, Duration::from_secs(1)).await;
        assert_eq!(status, ServingStatus::NotServing, "{name:?}");
        let end = tokio::time::timeout(Duration::from_secs(2), watch.message())
            .await
            .expect("the stream ends");
        assert!(
            matches!(end, Ok(None)),
            "{name:?}: ended cleanly, not cut: {end:?}"
        );
    }
    let (app, took) = stopping.await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "open watches held the drain: it took {took:?}"
    );
    app.cleanup().await;
}
both_modes!(drain, a_watch_hears_the_drain_then_ends);

/// SIGTERM to a server process while grpcurl watches its health: grpcurl prints NOT_SERVING
/// and exits 0 (the stream ended, it was not cut), and the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_a_grpcurl_watch() {
    if !grpcurl::available() {
        return;
    }
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let mut a = cluster.start(&[("SHUTDOWN_GRACE_PERIOD", "5s")]).await;
    let mut watch = grpcurl::command(
        &a.base,
        &["-d", r#"{"service": ""}"#],
        &["grpc.health.v1.Health/Watch"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("grpcurl starts");
    let stdout = watch.stdout.take().unwrap();
    let (lines, heard) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let said = |heard: &mpsc::Receiver<String>, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = heard.recv_timeout(left).expect("grpcurl prints a status");
            if line.contains(&format!("\"{want}\"")) {
                return;
            }
        }
    };
    said(&heard, "SERVING");

    sigterm(&a);
    said(&heard, "NOT_SERVING");
    reader.join().unwrap(); // grpcurl's output ended: it exited
    let status = watch.wait().unwrap();
    assert!(status.success(), "grpcurl's watch ended with {status}");
    let status = a.child.wait().unwrap();
    assert!(status.success(), "server exit status {status}");
    drop(a);
    cluster.cleanup().await;
}

/// grpcurl (which speaks reflection v1alpha) lists our services, health and both
/// reflection versions, and describes each; tonic's v1 reflection client sees the same list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_every_service() {
    if !grpcurl::available() {
        return;
    }
    let Some(app) = spawn_app(Mode::Embedded, &[]).await else {
        return;
    };
    let mut expected: Vec<&str> = NAMES[1..].to_vec();
    expected.extend([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    expected.sort_unstable();

    let out = grpcurl::run(&app.base, &[], &["list"]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, expected);
    for service in &expected {
        let out = grpcurl::run(&app.base, &[], &["describe", service]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "describe {service}: {out:?}");
        assert!(text.contains("is a service:"), "describe {service}: {text}");
    }

    assert_eq!(v1_list(&app.base).await, expected);
    app.cleanup().await;
}

/// The services reflection v1 lists, sorted.
async fn v1_list(base: &str) -> Vec<String> {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(channel(base).await);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a list: {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    names
}
