//! The manager on a real (SQLite) store: folds what is appended, rebuilds while serving,
//! parks on an event it cannot fold, and lets its lease go on shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::auth::{Caller, Role};
use crate::domain::eventstore::{
    EventEnvelope, EventMetadata, EventType, ExpectedVersion, StreamId,
};
use crate::domain::{Tier, UserId};
use crate::store::SqliteTaskStore;
use crate::store::progress::ProgressReads;

fn event(t: &str, data: Value, user: &str) -> EventEnvelope {
    let mut meta = EventMetadata::at(clock::now());
    meta.user_id = Some(UserId::parse(user).unwrap());
    EventEnvelope::new(EventType::parse(t).unwrap(), data, meta)
}

fn completed(user: &str, secs: u64) -> EventEnvelope {
    event(
        "SessionCompleted",
        json!({"session_id": "s", "score": 3, "duration_seconds": secs}),
        user,
    )
}

/// Waits until `check` holds of the projection's status (5 s at most).
async fn until(
    store: &Arc<dyn ProjectionStore>,
    check: impl Fn(&ProjectionStatus) -> bool,
) -> ProjectionStatus {
    for _ in 0..500 {
        let s = store.status(ProjectionName::Progress).await.unwrap();
        if check(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{:?}", store.status(ProjectionName::Progress).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_rebuilds_parks_and_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteTaskStore::open(dir.path()).await.unwrap();
    let events: Arc<dyn EventStore> = Arc::new(sqlite.event_store(Default::default()));
    let p = Arc::new(sqlite.projection_store());
    let store: Arc<dyn ProjectionStore> = p.clone();
    let reads: Arc<dyn ProgressReads> = p;
    let head = StoreHead::new();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(head.clone().run(
        events.clone(),
        Duration::from_millis(10),
        cancel.child_token(),
    ));
    let manager = ProjectionManager {
        events: events.clone(),
        store: store.clone(),
        head: head.clone(),
        owner: "test-instance".into(),
        settings: RunnerSettings {
            batch: 2,
            lease: Duration::from_secs(2),
            renew_every: Duration::from_millis(50),
            max_failures: 2,
        },
    };
    manager.spawn(&tracker, &cancel);
    let append = |stream: &str, batch: Vec<EventEnvelope>| {
        let events = events.clone();
        let stream = StreamId::parse(stream).unwrap();
        async move {
            events
                .append_events(&stream, batch, ExpectedVersion::Any)
                .await
                .unwrap()
        }
    };
    let alice = UserId::parse("alice").unwrap();

    // Five events in batches of two; an event of another type moves the checkpoint too.
    let batch = vec![
        completed("alice", 60),
        event("Unrelated", json!({"x": 1}), "alice"),
        completed("alice", 120),
        completed("bob", 60),
        completed("alice", 60),
    ];
    let last = append("session-1", batch).await.last_position();
    until(&store, |s| s.position == last).await;
    let a = reads.user_progress(&alice).await.unwrap().unwrap();
    assert_eq!((a.sessions_completed, a.study_seconds), (3, 240));

    // A rebuild from 0 while serving: swapped in once caught up, with the same model.
    let audit = crate::service::audit::AuditLog::new(Arc::new(sqlite.audit_store()));
    let service = ProjectionsService::new(
        events.clone(),
        store.clone(),
        Duration::from_secs(30),
        audit,
    );
    let admin = Caller {
        user_id: UserId::parse("root").unwrap(),
        role: Role::Admin,
        tier: Tier::Free,
    };
    let user = Caller {
        role: Role::User,
        ..admin.clone()
    };
    assert!(matches!(
        service.rebuild(&user, "progress").await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        service.rebuild(&admin, "nope").await,
        Err(ServiceError::Invalid(_))
    ));
    let started = service.rebuild(&admin, "progress").await.unwrap();
    assert_eq!(started.status.rebuild.map(|(g, _)| g), Some(2));
    let s = until(&store, |s| s.active_generation == 2 && s.rebuild.is_none()).await;
    assert_eq!(s.position, last);
    assert_eq!(reads.user_progress(&alice).await.unwrap().unwrap(), a);

    // An event the projection cannot fold parks it there; nothing after it is folded.
    let poison = append(
        "misc-1",
        vec![event("SessionCompleted", json!({"session_id": 5}), "alice")],
    )
    .await
    .last_position();
    append("session-2", vec![completed("alice", 60)]).await;
    let s = until(&store, |s| s.parked.is_some()).await;
    let parked = s.parked.unwrap();
    assert_eq!(parked.position, poison);
    assert!(parked.error.contains("session_id"), "{}", parked.error);
    assert_eq!(s.position, poison - 1);
    let view = service.list(&admin).await.unwrap();
    let progress = view
        .iter()
        .find(|v| v.status.name == ProjectionName::Progress)
        .unwrap();
    assert_eq!((progress.state, progress.lag.events_behind), ("parked", 2));
    let lagging = service.lagging().await.unwrap();
    assert_eq!(lagging.len(), 1, "a parked projection is reported");

    // Shutdown: the runners stop and give their leases up.
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("runners stop on cancel");
    assert_eq!(
        store.status(ProjectionName::Progress).await.unwrap().owner,
        None
    );
}
