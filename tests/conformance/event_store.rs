//! The event store (seed 002) on both databases: appends with optimistic concurrency and
//! idempotent retries, reads by stream, position and type, and snapshots under a policy.
//! The global order under concurrent appenders is in `event_store_order.rs`.
//!
//! The harness is here: [`event_store_tests!`] runs each case against a fresh PostgreSQL
//! database and a fresh SQLite file, on an [`EventStore`] with the policy [`policy`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::domain::UserId;
use ai_integration_service::domain::eventstore::{
    EventEnvelope, EventError, EventId, EventMetadata, EventType, ExpectedVersion, PersistedEvent,
    Snapshot, SnapshotPolicy, StreamId,
};
use ai_integration_service::store::eventstore::{EventStore, EventStoreError};
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};

use crate::fixtures::now;
use crate::support;

/// Snapshots every 5 events, the last 2 kept: small enough to cross in a test.
pub(crate) fn policy() -> SnapshotPolicy {
    SnapshotPolicy::new(5, 2).unwrap()
}

/// Runs an event store case against a fresh PostgreSQL database whose pool has
/// `connections` connections, dropped afterwards (skipped when the server is unreachable
/// outside CI).
pub(crate) async fn on_postgres<F, Fut>(connections: u32, case: F)
where
    F: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = support::pg_url().await else {
        return;
    };
    let store = match PgTaskStore::connect(&url, connections).await {
        Ok(store) => store,
        Err(e) => {
            support::drop_pg_database(&url).await;
            panic!("PgTaskStore::connect({url}): {e}");
        }
    };
    let pool = store.pool().clone();
    support::run_then_cleanup(case(Arc::new(store.event_store(policy()))), async {
        let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
        support::drop_pg_database(&url).await;
    })
    .await;
}

/// Runs an event store case against a fresh SQLite file, removed afterwards.
pub(crate) async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = support::temp_dir();
    let url = support::sqlite_url(dir.path());
    let store = SqliteTaskStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("SqliteTaskStore::connect({url}): {e}"));
    support::run_then_cleanup(case(Arc::new(store.event_store(policy()))), async {}).await;
    drop(dir);
}

/// Declares event store cases: for each `name`, an `async fn name(store: Arc<dyn
/// EventStore>)` must be in scope; the tests are `name::postgres` and `name::sqlite`. With
/// `connections = n;` first, the PostgreSQL pool has `n` connections (else the suite's
/// usual size).
macro_rules! event_store_tests {
    (connections = $n:expr; $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::event_store::on_postgres($n, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::event_store::on_sqlite(super::$name).await;
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {
        $crate::event_store::event_store_tests!(
            connections = $crate::support::PG_TEST_POOL_SIZE; $($name),+
        );
    };
}
pub(crate) use event_store_tests;

event_store_tests!(
    append_then_read_back,
    version_conflict_stores_nothing,
    retry_with_the_same_event_ids_is_idempotent,
    reads_by_stream_and_position,
    reads_by_type_within_time_bounds,
    snapshots_follow_the_policy,
    invalid_appends_store_nothing,
);

pub(crate) fn stream(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

pub(crate) fn kind(s: &str) -> EventType {
    EventType::parse(s).unwrap()
}

/// An event of type `t` with `data`, happening at `at`.
pub(crate) fn event_at(t: &str, data: Value, at: DateTime<Utc>) -> EventEnvelope {
    EventEnvelope::new(kind(t), data, EventMetadata::at(at))
}

/// `n` events of type `t`, happening now.
pub(crate) fn events(t: &str, n: usize) -> Vec<EventEnvelope> {
    (0..n)
        .map(|i| event_at(t, json!({ "i": i }), now()))
        .collect()
}

/// The refusal inside `e`.
fn rejection(e: EventStoreError) -> EventError {
    match e {
        EventStoreError::Rejected(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

fn ids(events: &[PersistedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

async fn append_then_read_back(store: Arc<dyn EventStore>) {
    let s = stream("order-1");
    let at = now() - TimeDelta::minutes(5);
    let meta = EventMetadata::at(at)
        .correlated("corr-1")
        .caused_by("cmd-1")
        .by_user(UserId::parse("u1").unwrap());
    let batch = vec![
        EventEnvelope::new(kind("Placed"), json!({"items": [1, 2]}), meta.clone()),
        EventEnvelope::new(kind("Paid"), json!({"amount": 12.5}), meta.clone()),
        EventEnvelope::new(kind("Placed"), json!(null), EventMetadata::at(at)),
    ];
    let before = now();
    let appended = store
        .append_events(&s, batch.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let after = now();
    assert_eq!(appended.stream_version, 3);
    assert!(!appended.already_stored);
    let versions: Vec<u64> = appended.events.iter().map(|p| p.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let first = appended.events[0].global_position;
    let positions: Vec<u64> = appended.events.iter().map(|p| p.global_position).collect();
    assert_eq!(positions, [first, first + 1, first + 2]);
    assert_eq!(store.last_position().await.unwrap(), first + 2);

    let read = store.read_events(&s, 1, None).await.unwrap();
    assert_eq!(read.len(), 3);
    for ((stored, sent), place) in read.iter().zip(&batch).zip(&appended.events) {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.stream_id, s);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.event_data, sent.data);
        assert_eq!(stored.metadata, sent.metadata);
        assert_eq!(stored.stream_version, place.stream_version);
        assert_eq!(stored.global_position, place.global_position);
        assert!(before <= stored.created_at && stored.created_at <= after);
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);

    // The stream goes on from where it is, by exact version or any.
    let more = store
        .append_events(&s, events("Shipped", 2), ExpectedVersion::Exact(3))
        .await
        .unwrap();
    assert_eq!(more.stream_version, 5);
    assert_eq!(more.events[0].global_position, first + 3);
    let any = store
        .append_events(&s, events("Closed", 1), ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(any.stream_version, 6);
    assert_eq!(store.read_events(&s, 0, None).await.unwrap().len(), 6);

    // A stream nobody wrote to.
    let none = stream("order-2");
    assert_eq!(store.stream_version(&none).await.unwrap(), 0);
    assert!(store.read_events(&none, 1, None).await.unwrap().is_empty());
}

async fn version_conflict_stores_nothing(store: Arc<dyn EventStore>) {
    let s = stream("account-1");
    store
        .append_events(&s, events("Opened", 2), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let last = store.last_position().await.unwrap();
    let stored = ids(&store.read_events(&s, 1, None).await.unwrap());

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ] {
        let err = store
            .append_events(&s, events("Deposited", 3), expected)
            .await
            .unwrap_err();
        assert_eq!(err.conflict_version(), Some(2), "{expected}");
        assert_eq!(
            rejection(err),
            EventError::VersionConflict {
                stream_id: s.clone(),
                expected,
                current: 2
            }
        );
    }
    // A stream that does not exist is at 0.
    let fresh = stream("account-2");
    let err = store
        .append_events(&fresh, events("Opened", 1), ExpectedVersion::Exact(1))
        .await
        .unwrap_err();
    assert_eq!(err.conflict_version(), Some(0));

    // Nothing of any refused batch is stored, and no position was used up.
    assert_eq!(ids(&store.read_events(&s, 1, None).await.unwrap()), stored);
    assert_eq!(store.stream_version(&s).await.unwrap(), 2);
    assert_eq!(store.stream_version(&fresh).await.unwrap(), 0);
    assert_eq!(store.last_position().await.unwrap(), last);
    assert_eq!(store.read_all_events(last + 1, 10).await.unwrap().len(), 0);

    let ok = store
        .append_events(&s, events("Deposited", 1), ExpectedVersion::Exact(2))
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 3);
    assert_eq!(ok.events[0].global_position, last + 1);
}

async fn retry_with_the_same_event_ids_is_idempotent(store: Arc<dyn EventStore>) {
    let s = stream("cart-1");
    let batch = events("ItemAdded", 3);
    let first = store
        .append_events(&s, batch.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let last = store.last_position().await.unwrap();

    // The same batch again, whatever it expects: answered as stored, stored once.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
    ] {
        let retry = store
            .append_events(&s, batch.clone(), expected)
            .await
            .unwrap();
        assert!(retry.already_stored, "{expected}");
        assert_eq!(retry.events, first.events);
        assert_eq!(retry.stream_version, 3);
        assert!(!retry.snapshot_due);
    }
    assert_eq!(store.last_position().await.unwrap(), last);
    assert_eq!(store.read_events(&s, 1, None).await.unwrap().len(), 3);

    // Still recognised once the stream has moved on.
    store
        .append_events(&s, events("ItemAdded", 2), ExpectedVersion::Exact(3))
        .await
        .unwrap();
    let late = store
        .append_events(&s, batch.clone(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert!(late.already_stored);
    assert_eq!(late.events, first.events);
    let last = store.last_position().await.unwrap();

    // Not the same append: part of it, another order, another stream, other versions.
    let fresh = events("ItemAdded", 1).remove(0);
    let partial = vec![batch[0].clone(), fresh];
    let reordered = vec![batch[2].clone(), batch[1].clone(), batch[0].clone()];
    for (target, bad, expected) in [
        (&s, partial, ExpectedVersion::Any),
        (&s, reordered, ExpectedVersion::Any),
        (&stream("cart-2"), batch.clone(), ExpectedVersion::Any),
        (&s, batch.clone(), ExpectedVersion::Exact(1)),
    ] {
        let err = store
            .append_events(target, bad, expected)
            .await
            .unwrap_err();
        assert!(
            matches!(rejection(err), EventError::EventIdsReused { .. }),
            "{target} {expected}"
        );
    }
    assert_eq!(store.last_position().await.unwrap(), last);
    assert_eq!(store.read_events(&s, 1, None).await.unwrap().len(), 5);
    assert_eq!(store.stream_version(&stream("cart-2")).await.unwrap(), 0);
}

async fn reads_by_stream_and_position(store: Arc<dyn EventStore>) {
    let (a, b) = (stream("a-1"), stream("b-1"));
    for round in 0..6 {
        store
            .append_events(&a, events("A", 1 + round % 2), ExpectedVersion::Any)
            .await
            .unwrap();
        store
            .append_events(&b, events("B", 1), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let a_len = store.stream_version(&a).await.unwrap();
    assert_eq!(a_len, 9);

    let range = store.read_events(&a, 3, Some(5)).await.unwrap();
    let versions: Vec<u64> = range.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [3, 4, 5]);
    assert!(range.iter().all(|e| e.stream_id == a));
    let whole = store.read_events(&a, 0, None).await.unwrap();
    assert_eq!(whole, store.read_events(&a, 1, Some(100)).await.unwrap());
    assert_eq!(whole.len(), 9);
    assert!(store.read_events(&a, 10, None).await.unwrap().is_empty());
    assert!(store.read_events(&a, 5, Some(4)).await.unwrap().is_empty());

    // The global stream: every event of both, in position order, from 1.
    let all = store.read_all_events(0, 1000).await.unwrap();
    assert_eq!(all.len(), 15);
    let positions: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=15).collect::<Vec<u64>>());
    assert_eq!(store.last_position().await.unwrap(), 15);
    // Paged as a catch-up reader pages: from the last position + 1.
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let page = store.read_all_events(from, 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        from = page.last().unwrap().global_position + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(store.read_all_events(7, 2).await.unwrap(), all[6..8]);
    assert!(store.read_all_events(16, 10).await.unwrap().is_empty());
    assert!(store.read_all_events(1, 0).await.unwrap().is_empty());
}

async fn reads_by_type_within_time_bounds(store: Arc<dyn EventStore>) {
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    let at = |s: i64, us: i64| t0 + TimeDelta::seconds(s) + TimeDelta::microseconds(us);
    let started =
        |s: i64, us: i64| event_at("SessionStarted", json!({ "s": s, "us": us }), at(s, us));
    // Appended out of time order: positions and timestamps disagree.
    let s1 = stream("session-1");
    store
        .append_events(
            &s1,
            vec![started(3, 0), started(1, 0)],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    store
        .append_events(
            &stream("session-2"),
            vec![
                started(2, 1),
                event_at("SessionCompleted", json!({}), at(2, 0)),
                started(2, 0),
            ],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let t = kind("SessionStarted");
    let times = |events: Vec<PersistedEvent>| -> Vec<DateTime<Utc>> {
        events.iter().map(|e| e.metadata.timestamp).collect()
    };

    let every = store.read_events_by_type(&t, t0, None, 100).await.unwrap();
    assert_eq!(
        times(every.clone()),
        [at(1, 0), at(2, 0), at(2, 1), at(3, 0)]
    );
    assert!(every.iter().all(|e| e.event_type == t));
    // From is included, to is not, to the microsecond.
    let window = store
        .read_events_by_type(&t, at(2, 0), Some(at(3, 0)), 100)
        .await
        .unwrap();
    assert_eq!(times(window), [at(2, 0), at(2, 1)]);
    let after = store
        .read_events_by_type(&t, at(2, 1), None, 100)
        .await
        .unwrap();
    assert_eq!(times(after), [at(2, 1), at(3, 0)]);
    let limited = store.read_events_by_type(&t, t0, None, 2).await.unwrap();
    assert_eq!(times(limited), [at(1, 0), at(2, 0)]);
    let completed = store
        .read_events_by_type(&kind("SessionCompleted"), t0, Some(at(10, 0)), 100)
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert!(
        store
            .read_events_by_type(&kind("Unknown"), t0, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_events_by_type(&t, at(4, 0), None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn snapshots_follow_the_policy(store: Arc<dyn EventStore>) {
    assert_eq!(store.snapshot_policy(), policy());
    let s = stream("user-7");
    // Every 5 events: due when an append passes 5, 10, 15, ... (once per append).
    let mut due = Vec::new();
    for n in [4, 1, 3, 4, 10] {
        let appended = store
            .append_events(&s, events("Reviewed", n), ExpectedVersion::Any)
            .await
            .unwrap();
        due.push((appended.stream_version, appended.snapshot_due));
    }
    assert_eq!(
        due,
        [(4, false), (5, true), (8, false), (12, true), (22, true)]
    );

    let snap = |version: u64, data: Value| Snapshot::new(s.clone(), version, data, now());
    for v in [5, 10, 20] {
        store
            .save_snapshot(snap(v, json!({ "at": v })))
            .await
            .unwrap();
    }
    // The last 2 are kept.
    let kept: Vec<u64> = store
        .list_snapshots(&s)
        .await
        .unwrap()
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(kept, [20, 10]);
    let saved = snap(20, json!({ "at": 20 }));
    store.save_snapshot(saved.clone()).await.unwrap();
    assert_eq!(store.get_latest_snapshot(&s).await.unwrap(), Some(saved));

    // The same version again replaces it; a newer one pushes the oldest out.
    store
        .save_snapshot(snap(20, json!({ "at": "twenty" })))
        .await
        .unwrap();
    store
        .save_snapshot(snap(22, json!({ "at": 22 })))
        .await
        .unwrap();
    let kept = store.list_snapshots(&s).await.unwrap();
    let versions: Vec<u64> = kept.iter().map(|s| s.version).collect();
    assert_eq!(versions, [22, 20]);
    assert_eq!(kept[1].data, json!({ "at": "twenty" }));

    // Not ahead of the stream, not at 0, not of a stream with no events.
    for (snapshot, current) in [
        (snap(23, json!({})), 22),
        (snap(0, json!({})), 22),
        (Snapshot::new(stream("user-8"), 1, json!({}), now()), 0),
    ] {
        let err = store.save_snapshot(snapshot.clone()).await.unwrap_err();
        assert_eq!(
            rejection(err),
            EventError::SnapshotAhead {
                stream_id: snapshot.stream_id,
                version: snapshot.version,
                current
            }
        );
    }
    assert_eq!(store.list_snapshots(&s).await.unwrap().len(), 2);
    assert!(
        store
            .get_latest_snapshot(&stream("user-8"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn invalid_appends_store_nothing(store: Arc<dyn EventStore>) {
    let s = stream("bad-1");
    let one = events("X", 1).remove(0);
    let long = "c".repeat(EventMetadata::MAX_ID_LEN + 1);
    let mut oversized = one.clone();
    oversized.metadata = oversized.metadata.correlated(long);
    for bad in [vec![], vec![one.clone(), one.clone()], vec![oversized]] {
        let err = store
            .append_events(&s, bad, ExpectedVersion::Any)
            .await
            .unwrap_err();
        assert!(matches!(rejection(err), EventError::Invalid(_)));
    }
    assert_eq!(store.last_position().await.unwrap(), 0);
    assert_eq!(store.stream_version(&s).await.unwrap(), 0);
}
