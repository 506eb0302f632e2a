//! The aggregator on its own, ticking fast: frames only while watched, one frame shared by
//! every dashboard, its end at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::{Caller, Role};
use crate::domain::{QueueName, TaskType, UserId};
use crate::execution::{ExtractConfig, Extractor, MemoryCache, TaskRunner, TaskRunnerParts};
use crate::providers::{Budget, MemoryBreakers, Router};
use crate::queue::{MemoryQueue, QueueStates, TaskQueue};
use crate::ratelimit::MemoryRateLimiter;
use crate::store::SqliteTaskStore;
use crate::telemetry::live::board::MemoryBoard;
use crate::worker::Slots;

/// A tick for tests.
const FAST: Duration = Duration::from_millis(50);

async fn parts(dir: &std::path::Path) -> (DashboardParts, Arc<LiveCounters>) {
    let store = Arc::new(SqliteTaskStore::open(dir).await.unwrap());
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let states = Arc::new(QueueStates::new(queue.queues().clone()));
    let router = Router::new(
        Vec::new(),
        Arc::new(MemoryBreakers::new(Default::default())),
        Arc::new(MemoryRateLimiter::new()),
        Budget::new(store.clone(), None),
        Duration::ZERO,
    );
    let runner = TaskRunner::new(TaskRunnerParts {
        router,
        chains: Default::default(),
        extractor: Extractor::new(ExtractConfig::default()),
        cache: Arc::new(MemoryCache::default()),
        cache_ttl: Duration::ZERO,
        recorder: None,
        extraction_fallback: false,
    });
    let live = Arc::new(LiveCounters::new());
    let parts = DashboardParts {
        me: Identity {
            id: "host-1".into(),
            boot: 7,
            started_ms: crate::clock::now().timestamp_millis(),
        },
        live: live.clone(),
        board: Arc::new(MemoryBoard::new()),
        slots: Slots::new(&states, 2, 4, false),
        sources: StateSources {
            queue,
            states,
            runner,
            store: store.clone(),
            usage: store.clone(),
            workers: store,
        },
        interval: FAST,
    };
    (parts, live)
}

fn admin() -> Caller {
    Caller {
        user_id: UserId::parse("ops").unwrap(),
        role: Role::Admin,
        tier: Default::default(),
    }
}

#[tokio::test]
async fn ticks_share_frames_while_watched_and_stop_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (parts, live) = parts(dir.path()).await;
    let shutdown = CancellationToken::new();
    let (service, aggregator) = DashboardService::new(parts, shutdown.clone());
    let user = Caller {
        role: Role::User,
        ..admin()
    };
    assert!(matches!(
        service.subscribe(&user),
        Err(ServiceError::Forbidden(_))
    ));
    let run = tokio::spawn(aggregator.run(shutdown.clone()));

    live.submitted(QueueName::default_queue(), TaskType::Echo, 3);
    let mut feed = service.subscribe(&admin()).unwrap();
    assert_eq!(service.watchers(), 1);
    assert!(feed.history.starts_with("{\"points\":"), "{}", feed.history);
    feed.frames.changed().await.unwrap();
    let frame: serde_json::Value = {
        let f = feed.frames.borrow_and_update().clone().expect("a frame");
        serde_json::from_str(&f).unwrap()
    };
    assert_eq!(frame["point"]["series"]["all"][0], 3, "{frame}");
    assert_eq!(frame["state"]["queues"][0]["name"], "default");
    assert_eq!(frame["state"]["instances"][0]["pool"]["slots"], 4);

    // A second dashboard starts with the history, and shares the next frame.
    let mut second = service.subscribe(&admin()).unwrap();
    assert!(second.history.contains("\"all\":[3,"), "{}", second.history);
    second.frames.changed().await.unwrap();
    let a = feed.frames.borrow_and_update().clone();
    let b = second.frames.borrow_and_update().clone();
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()), "one frame for both");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the loop stops at shutdown")
        .unwrap();
    assert!(feed.frames.borrow().is_none(), "frames cleared at the end");
    assert!(feed.shutdown.is_cancelled());
}
