//! Named queues on both queue backends (Redis, in-process) and both databases: routing to a
//! queue's own sets, FIFO vs priority order, fair sharing of one pop, rate limits shared by
//! instances, and the queue rows (seed 000's TaskQueueRepository).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_integration_service::domain::{
    NewTask, Priority, QueueKind, QueueName, SubmitPolicy, Submitter, Task, TaskId, TaskRequest,
    TaskType, UserId, WorkerId,
};
use ai_integration_service::queue::{
    MemoryQueue, PopRequest, Popped, QueueEntry, QueueSet, QueueSpec, RedisQueue, TaskQueue,
};
use ai_integration_service::ratelimit::Rate;
use ai_integration_service::store::{
    Finish, Outcome, PgTaskStore, QueueStore, SqliteTaskStore, TaskStore,
};
use chrono::{SubsecRound, TimeDelta, Utc};
use serde_json::json;

use crate::support;

fn name(s: &str) -> QueueName {
    QueueName::parse(s).unwrap()
}

/// `hi` (priority), `fifo` (standard) and `slow` (rate limited: 5 per second, bursts of 5).
fn queue_set() -> QueueSet {
    let spec = |n: &str, kind, rate| QueueSpec {
        name: name(n),
        kind,
        rate,
        concurrency: 10,
    };
    QueueSet::new(
        vec![
            spec("hi", QueueKind::Priority, None),
            spec("fifo", QueueKind::Standard, None),
            spec(
                "slow",
                QueueKind::RateLimited,
                Some(Rate {
                    count: 5,
                    period: Duration::from_secs(1),
                    burst: 5,
                }),
            ),
        ],
        HashMap::from([(TaskType::Summarize, name("fifo"))]),
    )
    .unwrap()
}

/// Two handles on one set of queues: two Redis clients on the same keys (two instances), or
/// the same in-process queue twice.
async fn with_redis<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskQueue>, Arc<dyn TaskQueue>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = support::redis_url().await else {
        return;
    };
    let prefix = support::redis_prefix();
    let a = RedisQueue::connect_with(&url, &prefix, queue_set())
        .await
        .unwrap();
    let b = RedisQueue::connect_with(&url, &prefix, queue_set())
        .await
        .unwrap();
    support::run_then_cleanup(
        body(Arc::new(a), Arc::new(b)),
        support::cleanup_redis_prefix(&url, &prefix),
    )
    .await;
}

async fn with_memory<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskQueue>, Arc<dyn TaskQueue>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let q: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::with_queues(queue_set()));
    support::run_then_cleanup(body(q.clone(), q), async {}).await;
}

macro_rules! named_queue_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                super::with_redis(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                super::with_memory(super::$name).await;
            }
        }
    )+};
}

fn entry(queue: &str, priority: i64) -> QueueEntry {
    QueueEntry::new(TaskId::new(), Priority::new(priority).unwrap()).in_queue(name(queue))
}

fn ids(entries: &[QueueEntry]) -> Vec<TaskId> {
    entries.iter().map(|e| e.task_id).collect()
}

fn req(queue: &str, max: usize) -> PopRequest {
    PopRequest {
        queue: name(queue),
        max,
    }
}

fn count(popped: &[Popped], queue: &str) -> usize {
    popped.iter().filter(|p| p.queue == name(queue)).count()
}

async fn entries_stay_in_their_queue(q: Arc<dyn TaskQueue>, _: Arc<dyn TaskQueue>) {
    let (h1, h9) = (entry("hi", 1), entry("hi", 9));
    let (f1, f9, f5) = (entry("fifo", 1), entry("fifo", 9), entry("fifo", 5));
    q.push(&[h1, f1, h9, f9]).await.unwrap();
    q.push(&[f5]).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 5);
    assert_eq!(q.depth(name("hi")).await.unwrap(), 2);
    assert_eq!(q.depth(name("fifo")).await.unwrap(), 3);
    assert_eq!(q.depth(name("nope")).await.unwrap(), 0);

    // A standard queue ignores priority: push order.
    let got = q
        .pop_from(&[req("fifo", 10)], 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(got.iter().all(|p| p.queue == name("fifo")));
    let got: Vec<TaskId> = got.iter().map(|p| p.task_id).collect();
    assert_eq!(got, ids(&[f1, f9, f5]));
    // A priority queue: highest first. `pop` takes from the first configured queue.
    assert_eq!(q.pop(10, Duration::ZERO).await.unwrap(), ids(&[h9, h1]));
    assert_eq!(q.len().await.unwrap(), 0);

    // Removal finds an id in whichever queue holds it.
    let (a, b) = (entry("fifo", 5), entry("slow", 5));
    q.push(&[a]).await.unwrap();
    q.push_delayed(&[b], Utc::now() + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert!(q.remove(a.task_id).await.unwrap());
    assert!(q.remove(b.task_id).await.unwrap());
    assert!(!q.remove(b.task_id).await.unwrap());
    assert_eq!(q.len().await.unwrap(), 0);

    // A queue no longer configured is served by the default route's (here: the first) queue.
    let gone = entry("gone", 5);
    q.push(&[gone]).await.unwrap();
    assert_eq!(q.depth(name("hi")).await.unwrap(), 1);
    assert_eq!(q.pop(1, Duration::ZERO).await.unwrap(), ids(&[gone]));
}

async fn one_pop_shares_its_slots_fairly(q: Arc<dyn TaskQueue>, _: Arc<dyn TaskQueue>) {
    let flood: Vec<QueueEntry> = (0..200).map(|_| entry("hi", 5)).collect();
    q.push(&flood).await.unwrap();
    let few: Vec<QueueEntry> = (0..3).map(|_| entry("fifo", 5)).collect();
    q.push(&few).await.unwrap();

    // 10 slots over a flooded queue and one with 3 tasks: all 3 of those, 7 of the flood.
    let got = q
        .pop_from(&[req("hi", 100), req("fifo", 100)], 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((count(&got, "hi"), count(&got, "fifo")), (7, 3));
    // A queue's own limit caps its share; the rest goes to the other.
    let more: Vec<QueueEntry> = (0..50).map(|_| entry("fifo", 5)).collect();
    q.push(&more).await.unwrap();
    let got = q
        .pop_from(&[req("fifo", 2), req("hi", 100)], 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((count(&got, "hi"), count(&got, "fifo")), (8, 2));
    // Even shares when both have plenty.
    let got = q
        .pop_from(&[req("fifo", 100), req("hi", 100)], 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((count(&got, "hi"), count(&got, "fifo")), (5, 5));
    // Only the queues asked for are popped.
    let got = q
        .pop_from(&[req("fifo", 100)], 1000, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((count(&got, "hi"), count(&got, "fifo")), (0, 43));
}

async fn a_blocking_pop_wakes_for_any_of_its_queues(q: Arc<dyn TaskQueue>, _: Arc<dyn TaskQueue>) {
    let e = entry("fifo", 5);
    let popper = {
        let q = q.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let got = q
                .pop_from(&[req("hi", 5), req("fifo", 5)], 5, Duration::from_secs(3))
                .await
                .unwrap();
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.push(&[e]).await.unwrap();
    let (got, elapsed) = popper.await.unwrap();
    assert_eq!(
        got,
        vec![Popped {
            queue: name("fifo"),
            task_id: e.task_id
        }]
    );
    assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
    // A pop that asks for nothing free times out empty.
    let start = Instant::now();
    assert!(
        q.pop_from(&[req("hi", 0)], 5, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(start.elapsed() >= Duration::from_millis(150));
}

async fn delayed_entries_return_to_their_queue(q: Arc<dyn TaskQueue>, _: Arc<dyn TaskQueue>) {
    let now = Utc::now().trunc_subsecs(3);
    let (h, f) = (entry("hi", 5), entry("fifo", 5));
    q.push_delayed(&[h], now + TimeDelta::seconds(10))
        .await
        .unwrap();
    q.push_delayed(&[f], now + TimeDelta::seconds(5))
        .await
        .unwrap();
    let p = q.promote_due(now).await.unwrap();
    assert_eq!(
        (p.moved, p.next_due),
        (0, Some(now + TimeDelta::seconds(5)))
    );
    let p = q.promote_due(now + TimeDelta::seconds(20)).await.unwrap();
    assert_eq!((p.moved, p.next_due), (2, None));
    let got = q
        .pop_from(&[req("fifo", 10)], 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task_id, f.task_id);
    assert_eq!(q.pop(10, Duration::ZERO).await.unwrap(), ids(&[h]));
}

/// 5 per second with bursts of 5, counted across both handles (instances).
async fn a_rate_limited_queue_starts_no_faster_than_its_rate(
    a: Arc<dyn TaskQueue>,
    b: Arc<dyn TaskQueue>,
) {
    let work: Vec<QueueEntry> = (0..40).map(|_| entry("slow", 5)).collect();
    a.push(&work).await.unwrap();
    let start = Instant::now();
    let burst = a
        .pop_from(&[req("slow", 100)], 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(burst.len(), 5, "the burst");
    assert!(
        b.pop_from(&[req("slow", 100)], 100, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "the other instance sees the same limit"
    );
    // Both instances pop with waits for 1.5 s: at most ~1.5 s x 5/s more between them.
    let mut taken = burst.len();
    let deadline = start + Duration::from_millis(1500);
    while Instant::now() < deadline {
        for q in [&a, &b] {
            let left = deadline.saturating_duration_since(Instant::now());
            taken += q
                .pop_from(
                    &[req("slow", 100), req("hi", 100)],
                    100,
                    left.min(Duration::from_millis(300)),
                )
                .await
                .unwrap()
                .len();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = 5 + (elapsed * 5.0).ceil() as usize;
    assert!(
        taken <= allowed,
        "{taken} started in {elapsed:.2} s; at most {allowed}"
    );
    assert!(
        taken >= 5 + 5,
        "{taken} started in {elapsed:.2} s: the waits should have taken more"
    );
}

named_queue_tests!(
    entries_stay_in_their_queue,
    one_pop_shares_its_slots_fairly,
    a_blocking_pop_wakes_for_any_of_its_queues,
    delayed_entries_return_to_their_queue,
    a_rate_limited_queue_starts_no_faster_than_its_rate,
);

// ------------------------------------------------------------------------------------------
// The queue rows
// ------------------------------------------------------------------------------------------

async fn with_pg_store<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskStore>, Arc<dyn QueueStore>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = support::pg_url().await else {
        return;
    };
    let store = Arc::new(PgTaskStore::connect(&url, 4).await.expect("connect"));
    let pool = store.pool().clone();
    support::run_then_cleanup(body(store.clone(), store), async {
        let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
        support::drop_pg_database(&url).await;
    })
    .await;
}

async fn with_sqlite_store<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn TaskStore>, Arc<dyn QueueStore>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let dir = support::temp_dir();
    let store = Arc::new(
        SqliteTaskStore::connect(&support::sqlite_url(dir.path()))
            .await
            .expect("connect"),
    );
    support::run_then_cleanup(body(store.clone(), store), async {}).await;
    drop(dir);
}

macro_rules! queue_store_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::with_pg_store(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::with_sqlite_store(super::$name).await;
            }
        }
    )+};
}

fn task_in(queue: &str, at: chrono::DateTime<Utc>) -> Task {
    let new = NewTask::parse(
        &Submitter::user(UserId::parse("alice").unwrap()),
        TaskRequest::new("echo", json!({})),
        &SubmitPolicy::default(),
    )
    .unwrap();
    let mut t = Task::create(new, 3, Duration::from_secs(30), at);
    t.queue = name(queue);
    t
}

async fn queues_are_stored_paused_and_counted(
    tasks: Arc<dyn TaskStore>,
    queues: Arc<dyn QueueStore>,
) {
    let now = Utc::now().trunc_subsecs(6);
    let set = queue_set();
    let stored = queues.sync_queues(set.specs(), now).await.unwrap();
    let names: Vec<&str> = stored.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, vec!["fifo", "hi", "slow"]);
    let slow = queues.find_queue(name("slow")).await.unwrap().unwrap();
    assert_eq!(slow.kind, QueueKind::RateLimited);
    assert_eq!(slow.rate.as_deref(), Some("5/1s"));
    assert_eq!((slow.concurrency, slow.paused), (10, false));
    assert!(queues.find_queue(name("nope")).await.unwrap().is_none());

    // Paused survives a re-sync of the configuration (a restart).
    assert!(
        queues
            .set_queue_paused(name("fifo"), true, now)
            .await
            .unwrap()
    );
    assert!(
        !queues
            .set_queue_paused(name("nope"), true, now)
            .await
            .unwrap()
    );
    let mut changed = set.specs().to_vec();
    changed[1].concurrency = 3;
    let stored = queues.sync_queues(&changed, now).await.unwrap();
    let fifo = stored.iter().find(|q| q.name == name("fifo")).unwrap();
    assert_eq!((fifo.paused, fifo.concurrency), (true, 3));
    let active: Vec<&str> = queues
        .find_active_queues()
        .await
        .unwrap()
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(active, vec!["hi", "slow"]);
    let standard = queues
        .find_queues_by_type(QueueKind::Standard)
        .await
        .unwrap();
    assert_eq!(standard.len(), 1);
    assert_eq!(standard[0].name, name("fifo"));

    // The task row records its queue; statistics are per queue.
    let a = task_in("hi", now);
    let b = task_in("fifo", now);
    let c = task_in("fifo", now);
    tasks
        .insert_tasks(vec![a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!(
        tasks.find_by_id(b.id).await.unwrap().unwrap().queue,
        name("fifo")
    );
    let w = WorkerId::generate("test");
    let later = now + TimeDelta::milliseconds(40);
    let claimed = tasks
        .claim(&[a.id, b.id], &w, later + TimeDelta::seconds(1), later)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|t| t.queue == name(if t.id == a.id { "hi" } else { "fifo" }))
    );
    let done = later + TimeDelta::milliseconds(100);
    tasks
        .finish(&[Finish {
            task_id: a.id,
            worker_id: w.clone(),
            outcome: Outcome::Completed {
                result: json!({}),
                provider: None,
            },
            at: done,
        }])
        .await
        .unwrap();
    let stats = queues
        .queue_task_stats(now - TimeDelta::hours(1))
        .await
        .unwrap();
    let get = |q: &str| stats.iter().find(|(n, _)| *n == name(q)).unwrap().1.clone();
    let hi = get("hi");
    assert_eq!((hi.completed, hi.sample_size), (1, 1));
    assert_eq!((hi.average_wait_ms, hi.average_processing_ms), (40, 100));
    let fifo = get("fifo");
    assert_eq!((fifo.pending, fifo.processing, fifo.completed), (1, 1, 0));

    // Expired leases, per queue.
    let expired = queues
        .find_expired_tasks(name("fifo"), later + TimeDelta::seconds(2), 10)
        .await
        .unwrap();
    assert_eq!(expired.iter().map(|t| t.id).collect::<Vec<_>>(), vec![b.id]);
    assert!(
        queues
            .find_expired_tasks(name("hi"), later + TimeDelta::seconds(2), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        queues
            .find_expired_tasks(name("fifo"), later, 10)
            .await
            .unwrap()
            .is_empty(),
        "lease not over yet"
    );
}

queue_store_tests!(queues_are_stored_paused_and_counted);
