//! Notification storage on both databases: per-user gapless ids under concurrent writers,
//! retention, sessions and progress events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_integration_service::bus::{EventPublisher, Hub, HubConfig, Live, MemoryBus};
use ai_integration_service::domain::{
    NewTask, StoredEvent, SubmitPolicy, Submitter, Task, TaskEventType, TaskRequest, UserId,
    WorkerId,
};
use ai_integration_service::service::{Retention, SessionBook};
use ai_integration_service::store::{
    Finish, NotificationSession, NotificationStore, Outcome, PgTaskStore, SqliteTaskStore,
    TaskStoreTesting, Transport,
};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support;

/// Remembers what the store published after each commit.
#[derive(Default)]
struct Recorder(Mutex<Vec<StoredEvent>>);

impl EventPublisher for Recorder {
    fn publish(&self, events: Vec<StoredEvent>) {
        self.0.lock().unwrap().extend(events);
    }
}

/// One store seen through both ports, and what it published.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) tasks: Arc<dyn TaskStoreTesting>,
    pub(crate) notes: Arc<dyn NotificationStore>,
    published: Arc<Recorder>,
}

pub(crate) async fn with_pg<F, Fut>(body: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = support::pg_url().await else {
        return;
    };
    let published = Arc::new(Recorder::default());
    let store = PgTaskStore::connect(&url, 8)
        .await
        .expect("connect")
        .with_publisher(published.clone());
    let pool = store.pool().clone();
    let store = Arc::new(store);
    let stores = Stores {
        tasks: store.clone(),
        notes: store,
        published,
    };
    support::run_then_cleanup(body(stores), async {
        let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
        support::drop_pg_database(&url).await;
    })
    .await;
}

pub(crate) async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let dir = support::temp_dir();
    let published = Arc::new(Recorder::default());
    let store = SqliteTaskStore::connect(&support::sqlite_url(dir.path()))
        .await
        .expect("connect")
        .with_publisher(published.clone());
    let store = Arc::new(store);
    let stores = Stores {
        tasks: store.clone(),
        notes: store,
        published,
    };
    support::run_then_cleanup(body(stores), async {}).await;
    drop(dir);
}

macro_rules! notification_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::with_pg(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::with_sqlite(super::$name).await;
            }
        }
    )+};
}
pub(crate) use notification_tests;

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn task(owner: &str, at: DateTime<Utc>) -> Task {
    let new = NewTask::parse(
        &Submitter::user(user(owner)),
        TaskRequest::new("echo", json!({"n": 1})),
        &SubmitPolicy::default(),
    )
    .unwrap();
    Task::create(new, 3, Duration::from_secs(30), at)
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Reads a user's events after `last` until `want` ids were seen, checking that every read
/// continues exactly where the previous one stopped.
async fn read_contiguously(notes: &Arc<dyn NotificationStore>, who: &UserId, want: u64) -> u64 {
    let mut last = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while last < want {
        let events = notes.events_after(who, last, None, 37).await.unwrap();
        for e in &events {
            assert_eq!(e.id, last + 1, "gap or duplicate after {last}");
            assert_eq!(&e.event.user_id, who);
            last = e.id;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck at {last}");
        if events.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    last
}

/// Many concurrent writers (submits, claims, progress, finishes) of the same users: readers
/// that read "after N" while they write see every id exactly once, in order; what was
/// published after commit is exactly what was stored.
async fn concurrent_writers_get_gapless_ids(s: Stores) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 12;
    let (alice, bob) = (user("alice"), user("bob"));
    // Each round: created + started + progress + completed for alice's task, created for bob's,
    // and created + started (in the insert: worker/dispatch.rs) + completed for alice's task
    // that its submit started directly.
    let alice_total = (WRITERS * ROUNDS * 7) as u64;
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (notes, alice) = (s.notes.clone(), alice.clone());
            tokio::spawn(async move { read_contiguously(&notes, &alice, alice_total).await })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let tasks = s.tasks.clone();
            tokio::spawn(async move {
                let worker = WorkerId::from_stored(format!("w{w}"));
                for _ in 0..ROUNDS {
                    let t0 = now();
                    let mut direct = task("alice", t0);
                    direct
                        .start(worker.clone(), t0 + TimeDelta::seconds(30), t0)
                        .unwrap();
                    let batch = vec![task("alice", t0), task("bob", t0), direct];
                    let ins = tasks.insert_tasks(batch).await.unwrap();
                    let (id, direct) = (ins[0].task.id, ins[2].task.id);
                    let claimed = tasks
                        .claim(&[id], &worker, t0 + TimeDelta::seconds(30), t0)
                        .await
                        .unwrap();
                    assert_eq!(claimed.len(), 1);
                    assert!(
                        tasks
                            .record_progress(id, Some(50), json!({"tokens": "hi"}), now())
                            .await
                            .unwrap()
                    );
                    let completed = |task_id| Finish {
                        task_id,
                        worker_id: worker.clone(),
                        outcome: Outcome::Completed {
                            result: json!({"ok": true}),
                            provider: Some("echo".into()),
                        },
                        at: now(),
                    };
                    let done = tasks
                        .finish(&[completed(id), completed(direct)])
                        .await
                        .unwrap();
                    assert_eq!(done, vec![true, true]);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), alice_total);
    }
    let bounds = s.notes.event_bounds(&alice).await.unwrap();
    assert_eq!((bounds.oldest, bounds.last), (Some(1), alice_total));
    assert_eq!(
        s.notes.event_bounds(&bob).await.unwrap().last,
        (WRITERS * ROUNDS) as u64
    );

    // Published after commit: each user's ids exactly once, and the same events as stored.
    let published = s.published.0.lock().unwrap().clone();
    let mut per_user: HashMap<UserId, Vec<u64>> = HashMap::new();
    for e in &published {
        per_user
            .entry(e.event.user_id.clone())
            .or_default()
            .push(e.id);
    }
    let mut ids = per_user.remove(&alice).unwrap();
    ids.sort_unstable();
    assert_eq!(ids, (1..=alice_total).collect::<Vec<_>>());
    let stored = s.notes.events_after(&alice, 0, None, 10_000).await.unwrap();
    for e in published.iter().filter(|e| e.event.user_id == alice) {
        let db = &stored[(e.id - 1) as usize];
        assert_eq!(
            (db.id, db.event.kind, db.event.task_id),
            (e.id, e.event.kind, e.event.task_id)
        );
        assert_eq!(db.event.created_at, e.event.created_at);
    }
}

/// Retention deletes old events and keeps the counter: ids continue, and the bounds show what
/// is gone.
async fn retention_keeps_ids_increasing(s: Stores) {
    let alice = user("alice");
    let old = now() - TimeDelta::hours(48);
    let ins = s
        .tasks
        .insert_tasks(vec![
            task("alice", old),
            task("alice", old + TimeDelta::seconds(1)),
        ])
        .await
        .unwrap();
    assert_eq!(ins.len(), 2);
    let fresh = s
        .tasks
        .insert_tasks(vec![task("alice", now())])
        .await
        .unwrap();
    let cutoff = now() - TimeDelta::hours(24);
    // A small limit deletes in several passes.
    assert_eq!(s.notes.delete_events_before(cutoff, 1).await.unwrap(), 1);
    assert_eq!(s.notes.delete_events_before(cutoff, 100).await.unwrap(), 1);
    assert_eq!(s.notes.delete_events_before(cutoff, 100).await.unwrap(), 0);
    let bounds = s.notes.event_bounds(&alice).await.unwrap();
    assert_eq!((bounds.oldest, bounds.last), (Some(3), 3));
    // Delete everything: the counter stays, new ids continue after it.
    s.tasks.delete(fresh[0].task.id).await.unwrap();
    let bounds = s.notes.event_bounds(&alice).await.unwrap();
    assert_eq!((bounds.oldest, bounds.last), (None, 3));
    s.tasks
        .insert_tasks(vec![task("alice", now())])
        .await
        .unwrap();
    let events = s.notes.events_after(&alice, 0, None, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4]);
    assert_eq!(
        s.notes.event_bounds(&user("nobody")).await.unwrap(),
        Default::default()
    );
}

/// Sessions: registered, listed while active, delivery marks drive "undelivered", ended ones
/// drop out; history by time.
async fn sessions_and_delivery(s: Stores) {
    let (alice, bob) = (user("alice"), user("bob"));
    let t0 = now();
    let tasks: Vec<Task> = (0..5)
        .map(|i| task("alice", t0 + TimeDelta::milliseconds(i)))
        .collect();
    s.tasks.insert_tasks(tasks).await.unwrap();
    let session = |who: &UserId, transport| NotificationSession {
        id: Uuid::now_v7(),
        user_id: who.clone(),
        instance: "host-a".into(),
        transport,
        connected_at: t0,
        last_seen: t0,
        last_delivered_id: 0,
    };
    let (a1, a2, b1) = (
        session(&alice, Transport::WebSocket),
        session(&alice, Transport::Sse),
        session(&bob, Transport::Grpc),
    );
    for x in [&a1, &a2, &b1] {
        s.notes.register_session(x).await.unwrap();
    }
    let active = s.notes.find_active_sessions_by_user(&alice).await.unwrap();
    assert_eq!(active.len(), 2);
    assert_eq!(active[0].transport, Transport::WebSocket);
    assert_eq!(
        s.notes
            .find_undelivered_notifications(&alice, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    s.notes.mark_as_delivered(a1.id, 3, now()).await.unwrap();
    // Marks never go back.
    s.notes.mark_as_delivered(a1.id, 2, now()).await.unwrap();
    let undelivered = s
        .notes
        .find_undelivered_notifications(&alice, 100)
        .await
        .unwrap();
    assert_eq!(
        undelivered.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![4, 5]
    );
    s.notes.unregister_session(a1.id, now()).await.unwrap();
    let active = s.notes.find_active_sessions_by_user(&alice).await.unwrap();
    assert_eq!(active.iter().map(|x| x.id).collect::<Vec<_>>(), vec![a2.id]);
    // The delivery mark of an ended session still counts.
    assert_eq!(
        s.notes
            .find_undelivered_notifications(&alice, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    // A session not seen since before the cutoff has ended (its instance died).
    assert_eq!(
        s.notes
            .end_stale_sessions(t0 + TimeDelta::seconds(1))
            .await
            .unwrap(),
        2
    );
    assert!(
        s.notes
            .find_active_sessions_by_user(&bob)
            .await
            .unwrap()
            .is_empty()
    );
    let since = s
        .notes
        .find_notifications_by_user(&alice, t0 + TimeDelta::milliseconds(3), 10)
        .await
        .unwrap();
    assert_eq!(since.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
    assert!(
        since
            .iter()
            .all(|e| e.event.kind == TaskEventType::TaskCreated)
    );
}

/// Progress is recorded only while the task runs; the percentage lands on the task too.
async fn progress_only_while_processing(s: Stores) {
    let t0 = now();
    let ins = s.tasks.insert_tasks(vec![task("alice", t0)]).await.unwrap();
    let id = ins[0].task.id;
    assert!(
        !s.tasks
            .record_progress(id, Some(10), json!({}), now())
            .await
            .unwrap()
    );
    let w = WorkerId::from_stored("w".into());
    s.tasks
        .claim(&[id], &w, t0 + TimeDelta::seconds(30), t0)
        .await
        .unwrap();
    assert!(
        s.tasks
            .record_progress(id, Some(40), json!({"tokens": "a"}), now())
            .await
            .unwrap()
    );
    assert!(
        s.tasks
            .record_progress(id, None, json!({"tokens": "b"}), now())
            .await
            .unwrap()
    );
    assert_eq!(s.tasks.find_by_id(id).await.unwrap().unwrap().progress, 40);
    let big = "x".repeat(ai_integration_service::domain::MAX_EVENT_BYTES + 1);
    assert!(
        s.tasks
            .record_progress(id, None, json!({"tokens": big}), now())
            .await
            .unwrap()
    );
    s.tasks.cancel(id, now()).await.unwrap();
    assert!(
        !s.tasks
            .record_progress(id, Some(90), json!({}), now())
            .await
            .unwrap()
    );
    let events = s
        .notes
        .events_after(&user("alice"), 0, Some(id), 100)
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event.kind).collect();
    use TaskEventType::*;
    assert_eq!(
        kinds,
        vec![
            TaskCreated,
            TaskStarted,
            TaskProgress,
            TaskProgress,
            TaskProgress,
            TaskCancelled
        ]
    );
    assert_eq!(events[2].event.data, json!({"tokens": "a", "progress": 40}));
    assert_eq!(events[3].event.data, json!({"tokens": "b"}));
    assert!(events[4].event.data["omitted"].is_string());
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
}

/// Progress of many tasks (two users) in one call: recorded for the running ones only, each
/// user's ids consecutive.
async fn progress_of_many_tasks_at_once(s: Stores) {
    let t0 = now();
    let ins = s
        .tasks
        .insert_tasks(vec![
            task("alice", t0),
            task("bob", t0),
            task("alice", t0),
            task("alice", t0),
        ])
        .await
        .unwrap();
    let ids: Vec<_> = ins.iter().map(|i| i.task.id).collect();
    let w = WorkerId::from_stored("w".into());
    s.tasks
        .claim(&ids[..3], &w, t0 + TimeDelta::seconds(30), t0)
        .await
        .unwrap();
    let applied = s
        .tasks
        .record_progress_many(
            vec![
                (ids[0], Some(20), json!({"tokens": "a0"})),
                (ids[1], None, json!({"tokens": "b1"})),
                (ids[3], None, json!({"tokens": "never"})),
                (ids[2], None, json!({"tokens": "a2"})),
            ],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, false, true]);
    assert_eq!(
        s.tasks.find_by_id(ids[0]).await.unwrap().unwrap().progress,
        20
    );
    let progress = |who: &'static str| {
        let notes = s.notes.clone();
        async move {
            notes
                .events_after(&user(who), 0, None, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.event.kind == TaskEventType::TaskProgress)
                .map(|e| (e.id, e.event.data["tokens"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        }
    };
    // alice: 3 created + 2 started come first.
    assert_eq!(
        progress("alice").await,
        vec![(6, "a0".to_owned()), (7, "a2".to_owned())]
    );
    assert_eq!(progress("bob").await, vec![(3, "b1".to_owned())]);
    assert!(
        s.tasks
            .record_progress_many(vec![(ids[3], None, json!({}))], now())
            .await
            .unwrap()
            == vec![false]
    );
}

/// The retention loop deletes expired events while it runs and stops when told.
async fn retention_loop_deletes_and_stops(s: Stores) {
    let alice = user("alice");
    s.tasks
        .insert_tasks(vec![task("alice", now() - TimeDelta::hours(2))])
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let looping =
        tokio::spawn(Retention::new(s.notes.clone(), Duration::from_secs(3600)).run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.notes.event_bounds(&alice).await.unwrap().oldest.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), looping)
        .await
        .expect("the loop stops")
        .unwrap();
}

/// The hub forwards bus events, finds events that were never published (its sweep), cuts off
/// a subscriber whose buffer overflows, and ends every subscription when it stops.
async fn hub_forwards_sweeps_and_stops(s: Stores) {
    let alice = user("alice");
    let bus = Arc::new(MemoryBus::new());
    let hub = Hub::new(
        s.notes.clone(),
        HubConfig {
            buffer: 4,
            sweep_interval: Duration::from_millis(50),
        },
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(hub.clone().run(bus.clone(), stop.clone()));
    let mut sub = hub.subscribe_user(&alice, 0);
    let mut slow = hub.subscribe_user(&alice, 0);
    // Stored but published only to the recorder, not the bus: the sweep finds it.
    s.tasks
        .insert_tasks(vec![task("alice", now())])
        .await
        .unwrap();
    let got = |l: Live| match l {
        Live::Event(e) => e.id,
        other => panic!("expected an event, got {other:?}"),
    };
    let first = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap();
    assert_eq!(got(first), 1);
    // Published events are forwarded; `slow` never reads and overflows.
    let stored = s.notes.events_after(&alice, 0, None, 1).await.unwrap();
    for i in 2..=8 {
        let mut e = stored[0].clone();
        e.id = i;
        bus.publish(vec![e]);
        let next = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap();
        assert_eq!(got(next), i);
    }
    assert!(matches!(slow.recv().await, Live::Overflowed));
    assert_eq!(hub.connections(), 1);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .expect("the hub stops")
        .unwrap();
    assert!(matches!(sub.recv().await, Live::Closed));
}

/// The session book marks every open session alive in batched writes (more sessions than one
/// statement takes), records what each delivered, leaves ended sessions alone, ends a closed
/// session, and its loop flushes until told to stop.
async fn session_book_marks_in_batches(s: Stores) {
    let alice = user("alice");
    let t0 = now() - TimeDelta::seconds(10);
    let tasks: Vec<Task> = (0..5)
        .map(|i| task("alice", t0 + TimeDelta::milliseconds(i)))
        .collect();
    s.tasks.insert_tasks(tasks).await.unwrap();
    let sessions: Vec<NotificationSession> = (0..1050)
        .map(|_| NotificationSession {
            id: Uuid::now_v7(),
            user_id: alice.clone(),
            instance: "host-a".into(),
            transport: Transport::Sse,
            connected_at: t0,
            last_seen: t0,
            last_delivered_id: 0,
        })
        .collect();
    futures::future::try_join_all(sessions.iter().map(|x| s.notes.register_session(x)))
        .await
        .unwrap();
    let book = Arc::new(SessionBook::new(s.notes.clone(), Duration::from_millis(50)));
    let cells: Vec<_> = sessions.iter().map(|x| book.open(x.id)).collect();
    assert_eq!(book.len(), 1050);
    cells[7].delivered(3);
    cells[7].delivered(2); // never goes back
    assert_eq!(book.flush().await, 1050);
    // Every session was seen after t0, so none is stale.
    assert_eq!(
        s.notes
            .end_stale_sessions(t0 + TimeDelta::seconds(1))
            .await
            .unwrap(),
        0
    );
    let undelivered = s
        .notes
        .find_undelivered_notifications(&alice, 100)
        .await
        .unwrap();
    assert_eq!(
        undelivered.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![4, 5]
    );
    // A closed session ends in the background, with its last delivery recorded.
    cells[8].delivered(5);
    book.close(sessions[8].id);
    assert_eq!(book.len(), 1049);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s
        .notes
        .find_active_sessions_by_user(&alice)
        .await
        .unwrap()
        .len()
        != 1049
    {
        assert!(tokio::time::Instant::now() < deadline, "not ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.notes
            .find_undelivered_notifications(&alice, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Ended sessions are not revived by a batch that names them.
    s.notes
        .mark_sessions_delivered(&[(sessions[8].id, 5), (sessions[9].id, 1)], now())
        .await
        .unwrap();
    assert_eq!(
        s.notes
            .find_active_sessions_by_user(&alice)
            .await
            .unwrap()
            .len(),
        1049
    );
    // The loop marks sessions alive until it is stopped.
    let before = now();
    let stop = CancellationToken::new();
    let looping = tokio::spawn(book.clone().run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s
        .notes
        .find_active_sessions_by_user(&alice)
        .await
        .unwrap()
        .iter()
        .any(|x| x.last_seen < before)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not marked by the loop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), looping)
        .await
        .expect("the loop stops")
        .unwrap();
}

notification_tests!(
    retention_loop_deletes_and_stops,
    hub_forwards_sweeps_and_stops,
    concurrent_writers_get_gapless_ids,
    retention_keeps_ids_increasing,
    sessions_and_delivery,
    progress_only_while_processing,
    session_book_marks_in_batches,
    progress_of_many_tasks_at_once,
);
