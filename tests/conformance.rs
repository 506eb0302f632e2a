//! Conformance suite: the same tests run against every implementation of each port, on real
//! servers (never mocks).
//!
//! - [`TaskStore`]: PostgreSQL (`name::postgres`) and SQLite (`name::sqlite`).
//! - [`TaskQueue`]: Redis (`name::redis`) and in-process (`name::memory`).
//!
//! Each test gets a fresh database / key prefix / temp dir (see `tests/support`), so tests run
//! in parallel. Timestamps are truncated to microseconds, which is what PostgreSQL keeps, so a
//! stored task compares equal to the one written.

mod support;

#[path = "conformance/notifications.rs"]
mod notifications;
#[path = "conformance/queues.rs"]
mod queues;
#[path = "conformance/stream_tickets.rs"]
mod stream_tickets;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_integration_service::domain::{
    ErrorClass, NewTask, Page, PageRequest, Priority, SubmitPolicy, Submitter, Task, TaskError,
    TaskEvent, TaskEventType, TaskId, TaskRequest, TaskStatus, TaskType, UserId, WorkerId,
};
use ai_integration_service::queue::{Promoted, QueueEntry, TaskQueue};
use ai_integration_service::store::{Finish, Inserted, Outcome, TaskFilter, TaskStore};
use chrono::{DateTime, DurationRound, SubsecRound, TimeDelta, Utc};
use serde_json::{Value, json};
use support::{queue_tests, store_tests};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Now, truncated to microseconds.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A fixed point an hour ago, on a whole second, so `base() + ms(i)` orders tasks exactly.
fn base() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap()
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn worker(s: &str) -> WorkerId {
    WorkerId::from_stored(s.to_owned())
}

fn retryable(msg: &str, provider: Option<&str>) -> TaskError {
    TaskError {
        class: ErrorClass::Retryable,
        message: msg.to_owned(),
        provider: provider.map(str::to_owned),
    }
}

/// Builds tasks through [`NewTask::parse`] and [`Task::create`], like the API does.
#[derive(Clone)]
struct Spec {
    user: String,
    task_type: &'static str,
    priority: Option<i64>,
    key: Option<String>,
    related: Option<(String, String)>,
    payload: Value,
    at: DateTime<Utc>,
}

fn spec(user: &str, at: DateTime<Utc>) -> Spec {
    Spec {
        user: user.to_owned(),
        task_type: "echo",
        priority: None,
        key: None,
        related: None,
        payload: json!({"text": "hello"}),
        at,
    }
}

impl Spec {
    fn task_type(mut self, t: &'static str) -> Self {
        self.task_type = t;
        self
    }
    fn priority(mut self, p: i64) -> Self {
        self.priority = Some(p);
        self
    }
    fn key(mut self, k: &str) -> Self {
        self.key = Some(k.to_owned());
        self
    }
    fn related(mut self, t: &str, id: &str) -> Self {
        self.related = Some((t.to_owned(), id.to_owned()));
        self
    }
    fn payload(mut self, p: Value) -> Self {
        self.payload = p;
        self
    }
    fn build(self) -> Task {
        // Parsed as an echo (which takes any payload), so the stores are tried on odd
        // payloads too; the type is set after, as the store must keep whatever it is given.
        let task_type: TaskType = self.task_type.parse().unwrap();
        let request = TaskRequest {
            task_type: "echo".to_owned(),
            payload: self.payload,
            priority: self.priority,
            idempotency_key: self.key,
            related_entity: self.related,
            timeout_seconds: None,
        };
        let new = NewTask::parse(
            &Submitter::user(user(&self.user)),
            request,
            &SubmitPolicy::default(),
        )
        .unwrap();
        let mut task = Task::create(new, 3, Duration::from_secs(30), self.at);
        task.task_type = task_type;
        if self.priority.is_none() {
            task.priority = task_type.default_priority();
        }
        task
    }
}

/// A plain echo task of `user` created at `at`.
fn task(user: &str, at: DateTime<Utc>) -> Task {
    spec(user, at).build()
}

/// Inserts tasks that must all be new; returns them as stored.
async fn insert(store: &Arc<dyn TaskStore>, tasks: Vec<Task>) -> Vec<Task> {
    let n = tasks.len();
    let out = store.insert_tasks(tasks).await.unwrap();
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|i| i.created), "every task must be new");
    out.into_iter().map(|i| i.task).collect()
}

async fn get(store: &Arc<dyn TaskStore>, id: TaskId) -> Task {
    store
        .find_by_id(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("task {id} not found"))
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

fn kinds(events: &[TaskEvent]) -> Vec<TaskEventType> {
    events.iter().map(|e| e.kind).collect()
}

fn finish(id: TaskId, w: &WorkerId, outcome: Outcome, at: DateTime<Utc>) -> Finish {
    Finish {
        task_id: id,
        worker_id: w.clone(),
        outcome,
        at,
    }
}

fn completed(result: Value, provider: &str) -> Outcome {
    Outcome::Completed {
        result,
        provider: Some(provider.to_owned()),
    }
}

/// Reads every page of `filter` with pages of `size`; checks the page shapes and returns the
/// ids in order.
async fn read_all_pages(store: &Arc<dyn TaskStore>, filter: &TaskFilter, size: u32) -> Vec<TaskId> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let req = PageRequest::parse(size, &token).unwrap();
        let page: Page<Task> = store.list(filter, &req).await.unwrap();
        assert!(page.items.len() <= size as usize);
        out.extend(ids(&page.items));
        match page.next_page_token {
            Some(t) => {
                assert_eq!(
                    page.items.len(),
                    size as usize,
                    "a page with a next token must be full"
                );
                token = t;
            }
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// Sorts newest first, as list queries do: `created_at DESC, id DESC`.
fn newest_first(mut tasks: Vec<Task>) -> Vec<TaskId> {
    tasks.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    ids(&tasks)
}

// ------------------------------------------------------------------------------------------
// Store: insert and idempotency
// ------------------------------------------------------------------------------------------

async fn insert_returns_created_tasks_and_they_are_findable(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks = vec![
        task("alice", t0),
        spec("alice", t0 + ms(1))
            .task_type("summarize")
            .key("k1")
            .related("article", "42")
            .payload(json!({"url": "https://example.com", "n": [1, 2, 3]}))
            .build(),
        spec("bob", t0 + ms(2)).priority(9).build(),
    ];
    let out = store.insert_tasks(tasks.clone()).await.unwrap();
    assert_eq!(out.len(), 3);
    for (inserted, original) in out.iter().zip(&tasks) {
        assert!(inserted.created);
        assert_eq!(&inserted.task, original);
        assert_eq!(&get(&store, original.id).await, original);
    }
    assert_eq!(store.find_by_id(TaskId::new()).await.unwrap(), None);
    assert!(store.insert_tasks(Vec::new()).await.unwrap().is_empty());
    store.ping().await.unwrap();
}

async fn idempotency_same_user_and_key_returns_first_task(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let first = spec("alice", t0).key("same").build();
    insert(&store, vec![first.clone()]).await;

    let second = spec("alice", t0 + ms(1))
        .key("same")
        .payload(json!({"text": "different"}))
        .build();
    let out = store.insert_tasks(vec![second.clone()]).await.unwrap();
    assert_eq!(out.len(), 1);
    assert!(!out[0].created);
    assert_eq!(out[0].task, first);

    assert_eq!(store.find_by_id(second.id).await.unwrap(), None);
    let all = read_all_pages(&store, &TaskFilter::default(), 50).await;
    assert_eq!(all, vec![first.id]);
    assert_eq!(
        kinds(&store.events_for_task(first.id).await.unwrap()),
        vec![TaskEventType::TaskCreated]
    );
    assert!(store.events_for_task(second.id).await.unwrap().is_empty());
}

/// A submit whose commit went through but whose answer was lost is retried with the same task:
/// the retry answers the stored task, not created, and writes no second `TaskCreated`. With
/// no idempotency key SQLite first tries its one-trip insert, which the stored id fails.
async fn resubmitting_a_stored_id_answers_the_stored_task(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let first = task("alice", t0);
    insert(&store, vec![first.clone()]).await;
    let other = task("alice", t0 + ms(1));
    let out = store
        .insert_tasks(vec![first.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert!(!out[0].created && out[1].created);
    assert_eq!((&out[0].task, &out[1].task), (&first, &other));
    for t in [&first, &other] {
        assert_eq!(
            kinds(&store.events_for_task(t.id).await.unwrap()),
            vec![TaskEventType::TaskCreated]
        );
    }
}

async fn idempotency_keys_are_per_user(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = spec("alice", t0).key("k").build();
    let b = spec("bob", t0 + ms(1)).key("k").build();
    let out = store
        .insert_tasks(vec![a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(out[0].created && out[1].created);
    assert_eq!(get(&store, a.id).await, a);
    assert_eq!(get(&store, b.id).await, b);

    // Tasks without a key never conflict.
    let c = task("alice", t0 + ms(2));
    let d = task("alice", t0 + ms(3));
    insert(&store, vec![c, d]).await;
    assert_eq!(store.count_active_by_user(&user("alice")).await.unwrap(), 3);
}

async fn idempotency_duplicates_within_one_batch(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let t1 = spec("alice", t0).key("dup").build();
    let t2 = spec("alice", t0 + ms(1)).key("dup").build();
    let t3 = task("alice", t0 + ms(2));
    let t4 = spec("alice", t0 + ms(3)).key("other").build();
    let t5 = spec("alice", t0 + ms(4)).key("dup").build();
    let out = store
        .insert_tasks(vec![
            t1.clone(),
            t2.clone(),
            t3.clone(),
            t4.clone(),
            t5.clone(),
        ])
        .await
        .unwrap();
    let created: Vec<bool> = out.iter().map(|i| i.created).collect();
    assert_eq!(created, vec![true, false, true, true, false]);
    let returned: Vec<TaskId> = out.iter().map(|i| i.task.id).collect();
    assert_eq!(returned, vec![t1.id, t1.id, t3.id, t4.id, t1.id]);
    assert_eq!(out[1].task, t1);
    assert_eq!(store.find_by_id(t2.id).await.unwrap(), None);
    assert_eq!(store.find_by_id(t5.id).await.unwrap(), None);
    let all = read_all_pages(&store, &TaskFilter::default(), 10).await;
    assert_eq!(all, vec![t4.id, t3.id, t1.id]);
}

async fn concurrent_duplicate_inserts_yield_one_row(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..10)
        .map(|i| spec("alice", t0 + ms(i)).key("race").build())
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks.len()));
    let handles: Vec<_> = tasks
        .iter()
        .cloned()
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.insert_tasks(vec![t]).await.unwrap()
            })
        })
        .collect();
    let mut results: Vec<Inserted> = Vec::new();
    for h in handles {
        results.extend(h.await.unwrap());
    }
    assert_eq!(results.len(), 10);
    let winners: Vec<&Inserted> = results.iter().filter(|i| i.created).collect();
    assert_eq!(winners.len(), 1, "exactly one insert must create the task");
    let winner = winners[0].task.clone();
    assert!(tasks.contains(&winner));
    for r in &results {
        assert_eq!(r.task, winner, "every caller must get the one stored task");
    }
    let all = read_all_pages(&store, &TaskFilter::default(), 50).await;
    assert_eq!(all, vec![winner.id]);
    assert_eq!(
        kinds(&store.events_for_task(winner.id).await.unwrap()),
        vec![TaskEventType::TaskCreated]
    );
}

async fn large_batches_span_chunks(store: Arc<dyn TaskStore>) {
    // More rows than one multi-row INSERT (500) and one IN list (1000) hold.
    let t0 = base();
    let mut tasks: Vec<Task> = (0..1200).map(|i| task("alice", t0 + ms(i))).collect();
    tasks[0] = spec("alice", t0).key("k").build();
    tasks[700] = spec("alice", t0 + ms(700)).key("k").build();
    let out = store.insert_tasks(tasks.clone()).await.unwrap();
    assert_eq!(out.len(), 1200);
    assert_eq!(out.iter().filter(|i| i.created).count(), 1199);
    assert!(!out[700].created);
    assert_eq!(out[700].task.id, tasks[0].id);
    assert_eq!(
        store.count_active_by_user(&user("alice")).await.unwrap(),
        1199
    );

    let mut claim_ids: Vec<TaskId> = ids(&tasks);
    claim_ids.remove(700);
    let w = worker("w-big");
    let claimed = store
        .claim(&claim_ids, &w, now() + TimeDelta::minutes(5), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1199);
    let got: HashSet<TaskId> = ids(&claimed).into_iter().collect();
    assert_eq!(got, claim_ids.iter().copied().collect::<HashSet<_>>());
    assert_eq!(store.find_tasks_by_worker(&w).await.unwrap().len(), 1199);
    assert!(store.find_pending_tasks(10).await.unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------
// Store: claim
// ------------------------------------------------------------------------------------------

async fn claim_sets_processing_worker_and_lease(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    let b = task("alice", t0 + ms(1));
    let c = task("alice", t0 + ms(2));
    insert(&store, vec![a.clone(), b.clone(), c.clone()]).await;

    let w = worker("w-1");
    let at = now();
    let lease = at + TimeDelta::seconds(30);
    let claimed = store
        .claim(&[a.id, b.id, TaskId::new()], &w, lease, at)
        .await
        .unwrap();
    let mut claimed_ids = ids(&claimed);
    claimed_ids.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(claimed_ids, want);

    for original in [&a, &b] {
        let mut expected = original.clone();
        expected.status = TaskStatus::Processing;
        expected.worker_id = Some(w.clone());
        expected.lease_expires_at = Some(lease);
        expected.started_at = Some(at);
        expected.updated_at = at;
        expected.attempts = 1;
        let returned = claimed.iter().find(|t| t.id == original.id).unwrap();
        assert_eq!(returned, &expected);
        assert_eq!(get(&store, original.id).await, expected);
    }
    assert_eq!(get(&store, c.id).await, c, "unclaimed task must not change");

    // Already processing: nobody else gets them.
    let again = store
        .claim(&[a.id, b.id], &worker("w-2"), lease, at)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(store.claim(&[], &w, lease, at).await.unwrap().is_empty());
    assert_eq!(get(&store, a.id).await.worker_id, Some(w.clone()));
}

async fn concurrent_claims_hand_out_each_task_once(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..200).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    let all_ids = ids(&tasks);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let workers = [worker("w-a"), worker("w-b")];
    let handles: Vec<_> = workers
        .iter()
        .cloned()
        .map(|w| {
            let store = store.clone();
            let barrier = barrier.clone();
            let all_ids = all_ids.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let at = now();
                let mut got = Vec::new();
                for chunk in all_ids.chunks(10) {
                    let claimed = store
                        .claim(chunk, &w, at + TimeDelta::minutes(1), at)
                        .await
                        .unwrap();
                    for t in &claimed {
                        assert_eq!(t.worker_id.as_ref(), Some(&w));
                        assert_eq!(t.status, TaskStatus::Processing);
                    }
                    got.extend(ids(&claimed));
                }
                // A second sweep over everything races the other worker's first sweep.
                got.extend(ids(&store.claim(&all_ids, &w, at, at).await.unwrap()));
                got
            })
        })
        .collect();
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(h.await.unwrap());
    }
    let a: HashSet<TaskId> = per_worker[0].iter().copied().collect();
    let b: HashSet<TaskId> = per_worker[1].iter().copied().collect();
    assert_eq!(
        a.len(),
        per_worker[0].len(),
        "no duplicates within worker a"
    );
    assert_eq!(
        b.len(),
        per_worker[1].len(),
        "no duplicates within worker b"
    );
    assert!(a.is_disjoint(&b), "a task was claimed by both workers");
    assert_eq!(a.len() + b.len(), all_ids.len());

    for (w, mine) in workers.iter().zip([&a, &b]) {
        let held: HashSet<TaskId> = ids(&store.find_tasks_by_worker(w).await.unwrap())
            .into_iter()
            .collect();
        assert_eq!(&held, mine);
    }
    for id in &all_ids {
        let events = store.events_for_task(*id).await.unwrap();
        assert_eq!(
            kinds(&events),
            vec![TaskEventType::TaskCreated, TaskEventType::TaskStarted],
            "task {id} must be started exactly once"
        );
    }
}

async fn cancelled_tasks_are_not_claimable(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    insert(&store, vec![a.clone()]).await;
    let at = now();
    let (cancelled, now_cancelled) = store.cancel(a.id, at).await.unwrap().unwrap();
    assert!(now_cancelled);
    assert_eq!(cancelled.status, TaskStatus::Cancelled);

    let claimed = store
        .claim(&[a.id], &worker("w"), at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    assert!(claimed.is_empty());
    assert_eq!(get(&store, a.id).await, cancelled);
}

// ------------------------------------------------------------------------------------------
// Store: finish
// ------------------------------------------------------------------------------------------

async fn finish_completed(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    insert(&store, vec![a.clone()]).await;
    let w = worker("w-1");
    let started = now();
    let claimed = store
        .claim(&[a.id], &w, started + TimeDelta::minutes(1), started)
        .await
        .unwrap()
        .remove(0);

    let done_at = started + ms(1500);
    let result = json!({"text": "hello back", "tokens": 3});
    let applied = store
        .finish(&[finish(a.id, &w, completed(result.clone(), "echo"), done_at)])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);

    let mut expected = claimed.clone();
    expected.status = TaskStatus::Completed;
    expected.result = Some(result.clone());
    expected.provider = Some("echo".into());
    expected.progress = 100;
    expected.worker_id = None;
    expected.lease_expires_at = None;
    expected.completed_at = Some(done_at);
    expected.updated_at = done_at;
    assert_eq!(get(&store, a.id).await, expected);

    // A finished task cannot be finished again, by anyone, with any outcome.
    let later = done_at + ms(1);
    let again = store
        .finish(&[
            finish(a.id, &w, completed(json!({"x": 1}), "other"), later),
            finish(
                a.id,
                &w,
                Outcome::Failed {
                    error: retryable("late", None),
                },
                later,
            ),
            finish(
                a.id,
                &w,
                Outcome::Retry {
                    error: retryable("late", None),
                    run_after: later,
                },
                later,
            ),
        ])
        .await
        .unwrap();
    assert_eq!(again, vec![false, false, false]);
    assert_eq!(get(&store, a.id).await, expected);
}

async fn finish_is_guarded_by_worker_id(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    let b = task("alice", t0 + ms(1));
    let pending = task("alice", t0 + ms(2));
    insert(&store, vec![a.clone(), b.clone(), pending.clone()]).await;
    let w1 = worker("w-1");
    let w2 = worker("w-2");
    let at = now();
    store
        .claim(&[a.id, b.id], &w1, at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    let a_claimed = get(&store, a.id).await;

    let done = at + ms(10);
    let applied = store
        .finish(&[
            finish(a.id, &w2, completed(json!({}), "p"), done), // wrong worker
            finish(b.id, &w1, completed(json!({"ok": true}), "p"), done), // right worker
            finish(pending.id, &w1, completed(json!({}), "p"), done), // never claimed
            finish(TaskId::new(), &w1, completed(json!({}), "p"), done), // unknown
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![false, true, false, false]);
    assert_eq!(
        get(&store, a.id).await,
        a_claimed,
        "other worker's finish applied"
    );
    assert_eq!(get(&store, b.id).await.status, TaskStatus::Completed);
    assert_eq!(get(&store, pending.id).await, pending);
    assert_eq!(
        kinds(&store.events_for_task(a.id).await.unwrap()),
        vec![TaskEventType::TaskCreated, TaskEventType::TaskStarted]
    );
    assert!(store.finish(&[]).await.unwrap().is_empty());
}

async fn finish_retry_returns_task_to_pending(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    insert(&store, vec![a.clone()]).await;
    let w = worker("w-1");
    let at = now();
    let claimed = store
        .claim(&[a.id], &w, at + TimeDelta::minutes(1), at)
        .await
        .unwrap()
        .remove(0);

    let failed_at = at + ms(100);
    let run_after = at + TimeDelta::seconds(20);
    let error = retryable("timeout", Some("openai"));
    let applied = store
        .finish(&[finish(
            a.id,
            &w,
            Outcome::Retry {
                error: error.clone(),
                run_after,
            },
            failed_at,
        )])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);

    let mut expected = claimed.clone();
    expected.status = TaskStatus::Pending;
    expected.retry_count = 1;
    expected.run_after = run_after;
    expected.error = Some(error.clone());
    expected.provider = Some("openai".into());
    expected.worker_id = None;
    expected.lease_expires_at = None;
    expected.updated_at = failed_at;
    assert_eq!(get(&store, a.id).await, expected);
    assert_eq!(
        ids(&store.find_pending_tasks(10).await.unwrap()),
        vec![a.id]
    );

    // The old worker cannot finish it any more; it is claimable again.
    let stale = store
        .finish(&[finish(a.id, &w, completed(json!({}), "p"), failed_at)])
        .await
        .unwrap();
    assert_eq!(stale, vec![false]);
    let w2 = worker("w-2");
    let again = store
        .claim(&[a.id], &w2, at + TimeDelta::minutes(2), run_after)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].retry_count, 1);
    assert_eq!(again[0].worker_id, Some(w2.clone()));

    // A second retry increments again.
    store
        .finish(&[finish(
            a.id,
            &w2,
            Outcome::Retry {
                error: error.clone(),
                run_after: run_after + TimeDelta::seconds(40),
            },
            run_after + ms(5),
        )])
        .await
        .unwrap();
    let t = get(&store, a.id).await;
    assert_eq!(t.retry_count, 2);
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(t.run_after, run_after + TimeDelta::seconds(40));
}

async fn finish_failed(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    insert(&store, vec![a.clone()]).await;
    let w = worker("w-1");
    let at = now();
    let claimed = store
        .claim(&[a.id], &w, at + TimeDelta::minutes(1), at)
        .await
        .unwrap()
        .remove(0);

    let error = TaskError {
        class: ErrorClass::NonRetryable,
        message: "content policy".into(),
        provider: Some("anthropic".into()),
    };
    let done = at + ms(250);
    let applied = store
        .finish(&[finish(
            a.id,
            &w,
            Outcome::Failed {
                error: error.clone(),
            },
            done,
        )])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);

    let mut expected = claimed;
    expected.status = TaskStatus::Failed;
    expected.error = Some(error);
    expected.provider = Some("anthropic".into());
    expected.worker_id = None;
    expected.lease_expires_at = None;
    expected.completed_at = Some(done);
    expected.updated_at = done;
    assert_eq!(get(&store, a.id).await, expected);

    let again = store
        .finish(&[finish(a.id, &w, completed(json!({}), "p"), done + ms(1))])
        .await
        .unwrap();
    assert_eq!(again, vec![false]);
    assert_eq!(
        store.cancel(a.id, done + ms(2)).await.unwrap(),
        Some((expected.clone(), false))
    );
    assert_eq!(get(&store, a.id).await, expected);
}

// ------------------------------------------------------------------------------------------
// Store: cancel and events
// ------------------------------------------------------------------------------------------

async fn cancel_pending_processing_and_terminal(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let pending = task("alice", t0);
    let processing = task("alice", t0 + ms(1));
    let done = task("alice", t0 + ms(2));
    insert(
        &store,
        vec![pending.clone(), processing.clone(), done.clone()],
    )
    .await;
    let w = worker("w-1");
    let at = now();
    store
        .claim(
            &[processing.id, done.id],
            &w,
            at + TimeDelta::minutes(1),
            at,
        )
        .await
        .unwrap();
    store
        .finish(&[finish(done.id, &w, completed(json!({}), "p"), at + ms(1))])
        .await
        .unwrap();
    let done_before = get(&store, done.id).await;

    let c_at = at + ms(10);
    let (t, cancelled) = store.cancel(pending.id, c_at).await.unwrap().unwrap();
    assert!(cancelled);
    let mut expected = pending.clone();
    expected.status = TaskStatus::Cancelled;
    expected.updated_at = c_at;
    expected.completed_at = Some(c_at);
    assert_eq!(t, expected);
    assert_eq!(get(&store, pending.id).await, expected);

    let (t, cancelled) = store.cancel(processing.id, c_at).await.unwrap().unwrap();
    assert!(cancelled);
    assert_eq!(t.status, TaskStatus::Cancelled);
    assert_eq!(t.worker_id, None);
    assert_eq!(t.lease_expires_at, None);
    assert_eq!(t.started_at, Some(at));
    assert_eq!(t.completed_at, Some(c_at));
    assert_eq!(get(&store, processing.id).await, t);
    // Its worker can no longer finish it.
    let late = store
        .finish(&[finish(processing.id, &w, completed(json!({}), "p"), c_at)])
        .await
        .unwrap();
    assert_eq!(late, vec![false]);
    assert!(store.find_tasks_by_worker(&w).await.unwrap().is_empty());

    // Terminal tasks: returned unchanged with false.
    let again = store.cancel(pending.id, c_at + ms(1)).await.unwrap();
    assert_eq!(again, Some((expected, false)));
    let again = store.cancel(done.id, c_at + ms(1)).await.unwrap();
    assert_eq!(again, Some((done_before.clone(), false)));
    assert_eq!(get(&store, done.id).await, done_before);

    assert_eq!(store.cancel(TaskId::new(), c_at).await.unwrap(), None);
    assert_eq!(
        kinds(&store.events_for_task(pending.id).await.unwrap()),
        vec![TaskEventType::TaskCreated, TaskEventType::TaskCancelled]
    );
}

async fn events_record_every_transition_in_order(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    let b = spec("alice", t0 + ms(1)).task_type("summarize").build();
    insert(&store, vec![a.clone(), b.clone()]).await;
    let w1 = worker("w-1");
    let w2 = worker("w-2");
    let at1 = now();
    store
        .claim(&[a.id, b.id], &w1, at1 + TimeDelta::minutes(1), at1)
        .await
        .unwrap();
    let at2 = at1 + ms(10);
    let run_after = at1 + TimeDelta::seconds(5);
    let err = retryable("503", Some("openai"));
    store
        .finish(&[
            finish(
                a.id,
                &w1,
                Outcome::Retry {
                    error: err.clone(),
                    run_after,
                },
                at2,
            ),
            finish(b.id, &w1, Outcome::Failed { error: err.clone() }, at2),
        ])
        .await
        .unwrap();
    let at3 = run_after + ms(1);
    store
        .claim(&[a.id], &w2, at3 + TimeDelta::minutes(1), at3)
        .await
        .unwrap();
    let at4 = at3 + ms(20);
    store
        .finish(&[finish(a.id, &w2, completed(json!({"r": 1}), "echo"), at4)])
        .await
        .unwrap();

    let events = store.events_for_task(a.id).await.unwrap();
    let expected = vec![
        (
            TaskEventType::TaskCreated,
            t0,
            json!({"status": "pending", "task_type": "echo", "priority": 5}),
        ),
        (
            TaskEventType::TaskStarted,
            at1,
            json!({"status": "processing", "worker_id": "w-1", "attempt": 1}),
        ),
        (
            TaskEventType::TaskRetrying,
            at2,
            json!({"status": "pending", "error": err, "run_after": run_after, "attempt": 1}),
        ),
        (
            TaskEventType::TaskStarted,
            at3,
            json!({"status": "processing", "worker_id": "w-2", "attempt": 2}),
        ),
        (
            TaskEventType::TaskCompleted,
            at4,
            json!({"status": "completed", "provider": "echo"}),
        ),
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (e, (kind, at, data)) in events.iter().zip(expected) {
        assert_eq!(e.task_id, a.id);
        assert_eq!(e.user_id, user("alice"));
        assert_eq!(e.kind, kind);
        assert_eq!(e.created_at, at, "{kind:?}");
        assert_eq!(e.data, data, "{kind:?}");
    }

    let events = store.events_for_task(b.id).await.unwrap();
    assert_eq!(
        kinds(&events),
        vec![
            TaskEventType::TaskCreated,
            TaskEventType::TaskStarted,
            TaskEventType::TaskFailed
        ]
    );
    assert_eq!(
        events[0].data,
        json!({"status": "pending", "task_type": "summarize", "priority": 7})
    );
    assert_eq!(events[2].data, json!({"status": "failed", "error": err}));
    assert_eq!(events[2].created_at, at2);
    assert!(
        store
            .events_for_task(TaskId::new())
            .await
            .unwrap()
            .is_empty()
    );
}

// ------------------------------------------------------------------------------------------
// Store: listing and queries
// ------------------------------------------------------------------------------------------

async fn list_pages_newest_first_without_gaps(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let mut alice: Vec<Task> = (0..20).map(|i| task("alice", t0 + ms(i * 10))).collect();
    // Several tasks sharing one timestamp: ordered by id, and a page may end among them.
    alice.extend((0..6).map(|_| task("alice", t0 + ms(95))));
    let bob: Vec<Task> = (0..5).map(|i| task("bob", t0 + ms(i * 10 + 5))).collect();
    insert(&store, alice.clone()).await;
    insert(&store, bob.clone()).await;

    let want = newest_first(alice.clone());
    for size in [1, 4, 7, 13, 26, 100] {
        let got = read_all_pages(
            &store,
            &TaskFilter {
                user_id: Some(user("alice")),
                ..TaskFilter::default()
            },
            size,
        )
        .await;
        assert_eq!(got, want, "page size {size}");
    }

    // find_by_user is the same query; check page shapes explicitly.
    let p1 = store
        .find_by_user(&user("alice"), &PageRequest::parse(10, "").unwrap())
        .await
        .unwrap();
    assert_eq!(ids(&p1.items), want[..10]);
    let p2 = store
        .find_by_user(
            &user("alice"),
            &PageRequest::parse(10, p1.next_page_token.as_deref().unwrap()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&p2.items), want[10..20]);
    let p3 = store
        .find_by_user(
            &user("alice"),
            &PageRequest::parse(10, p2.next_page_token.as_deref().unwrap()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&p3.items), want[20..]);
    assert_eq!(p3.next_page_token, None);

    // Exactly full last page: no token after it.
    let p = store
        .find_by_user(&user("bob"), &PageRequest::parse(5, "").unwrap())
        .await
        .unwrap();
    assert_eq!(ids(&p.items), newest_first(bob.clone()));
    assert_eq!(p.next_page_token, None);

    // No filter: everyone's tasks.
    let mut everyone = alice.clone();
    everyone.extend(bob);
    let got = read_all_pages(&store, &TaskFilter::default(), 8).await;
    assert_eq!(got, newest_first(everyone));

    let none = store
        .find_by_user(&user("carol"), &PageRequest::parse(10, "").unwrap())
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.next_page_token, None);
}

async fn list_filters_by_status_and_type(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let types = ["echo", "summarize", "extract_content"];
    let tasks: Vec<Task> = (0..18)
        .map(|i| {
            spec(if i % 4 == 3 { "bob" } else { "alice" }, t0 + ms(i))
                .task_type(types[i as usize % 3])
                .build()
        })
        .collect();
    insert(&store, tasks.clone()).await;
    // Every 2nd task processing, every 5th cancelled (cancel wins where both).
    let w = worker("w");
    let at = now();
    let to_claim: Vec<TaskId> = tasks.iter().step_by(2).map(|t| t.id).collect();
    store
        .claim(&to_claim, &w, at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    for t in tasks.iter().step_by(5) {
        store.cancel(t.id, at).await.unwrap().unwrap();
    }
    let mut current = Vec::new();
    for t in &tasks {
        current.push(get(&store, t.id).await);
    }

    let cases = [
        (Some("alice"), Some(TaskStatus::Processing), None),
        (Some("alice"), Some(TaskStatus::Pending), None),
        (Some("alice"), None, Some(TaskType::Summarize)),
        (
            Some("alice"),
            Some(TaskStatus::Cancelled),
            Some(TaskType::Echo),
        ),
        (
            None,
            Some(TaskStatus::Processing),
            Some(TaskType::ExtractContent),
        ),
        (None, None, Some(TaskType::Echo)),
        (None, Some(TaskStatus::Completed), None),
        (Some("bob"), None, None),
    ];
    for (u, status, task_type) in cases {
        let filter = TaskFilter {
            user_id: u.map(user),
            status,
            task_type,
            error_class: None,
        };
        let expected: Vec<Task> = current
            .iter()
            .filter(|t| u.is_none_or(|u| t.user_id.as_str() == u))
            .filter(|t| status.is_none_or(|s| t.status == s))
            .filter(|t| task_type.is_none_or(|k| t.task_type == k))
            .cloned()
            .collect();
        let got = read_all_pages(&store, &filter, 2).await;
        assert_eq!(got, newest_first(expected), "{filter:?}");
    }
    // Sanity: the cases above are not all trivially empty.
    assert_eq!(
        read_all_pages(
            &store,
            &TaskFilter {
                status: Some(TaskStatus::Processing),
                ..TaskFilter::default()
            },
            100
        )
        .await
        .len(),
        7
    );
}

async fn count_active_by_user(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..6).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    insert(&store, vec![task("bob", t0), task("bob", t0 + ms(1))]).await;
    assert_eq!(store.count_active_by_user(&user("alice")).await.unwrap(), 6);

    let w = worker("w");
    let at = now();
    store
        .claim(&ids(&tasks[0..4]), &w, at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    assert_eq!(store.count_active_by_user(&user("alice")).await.unwrap(), 6);
    store
        .finish(&[
            finish(tasks[0].id, &w, completed(json!({}), "p"), at),
            finish(
                tasks[1].id,
                &w,
                Outcome::Failed {
                    error: retryable("x", None),
                },
                at,
            ),
            finish(
                tasks[2].id,
                &w,
                Outcome::Retry {
                    error: retryable("x", None),
                    run_after: at,
                },
                at,
            ),
        ])
        .await
        .unwrap();
    store.cancel(tasks[4].id, at).await.unwrap();
    // Left active: 2 (retry, pending again), 3 (processing), 5 (pending).
    assert_eq!(store.count_active_by_user(&user("alice")).await.unwrap(), 3);
    assert_eq!(store.count_active_by_user(&user("bob")).await.unwrap(), 2);
    assert_eq!(store.count_active_by_user(&user("carol")).await.unwrap(), 0);
}

async fn find_pending_tasks_in_queue_order(store: Arc<dyn TaskStore>) {
    let t0 = base();
    // (priority, age offset)
    let layout = [
        (5, 3),
        (9, 5),
        (5, 1),
        (1, 0),
        (9, 2),
        (10, 9),
        (5, 2),
        (3, 4),
    ];
    let tasks: Vec<Task> = layout
        .iter()
        .map(|&(p, off)| spec("alice", t0 + ms(off)).priority(p).build())
        .collect();
    insert(&store, tasks.clone()).await;
    let taken = spec("alice", t0).priority(10).build();
    let cancelled = spec("alice", t0).priority(10).build();
    insert(&store, vec![taken.clone(), cancelled.clone()]).await;
    let at = now();
    store
        .claim(&[taken.id], &worker("w"), at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    store.cancel(cancelled.id, at).await.unwrap();

    let mut expected = tasks.clone();
    expected.sort_by(|a, b| (b.priority, a.created_at).cmp(&(a.priority, b.created_at)));
    let expected = ids(&expected);
    assert_eq!(ids(&store.find_pending_tasks(100).await.unwrap()), expected);
    assert_eq!(
        ids(&store.find_pending_tasks(3).await.unwrap()),
        expected[..3]
    );
    let first = store.find_pending_tasks(1).await.unwrap();
    assert_eq!(first, vec![tasks[5].clone()]);
}

async fn find_processing_tasks_by_provider(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..4).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    let w = worker("w");
    let at = now();
    // 0 then 1 claimed (0 earlier); 0 goes through a retry on "openai" and is claimed again last.
    store
        .claim(&[tasks[0].id], &w, at + TimeDelta::minutes(1), at)
        .await
        .unwrap();
    store
        .claim(&[tasks[1].id], &w, at + TimeDelta::minutes(1), at + ms(1))
        .await
        .unwrap();
    store
        .finish(&[finish(
            tasks[0].id,
            &w,
            Outcome::Retry {
                error: retryable("x", Some("openai")),
                run_after: at,
            },
            at + ms(2),
        )])
        .await
        .unwrap();
    store
        .claim(&[tasks[0].id], &w, at + TimeDelta::minutes(1), at + ms(3))
        .await
        .unwrap();
    // 2 saved as processing on "anthropic"; 3 stays pending.
    let mut t2 = tasks[2].clone();
    t2.status = TaskStatus::Processing;
    t2.worker_id = Some(worker("w-other"));
    t2.lease_expires_at = Some(at + TimeDelta::minutes(1));
    t2.started_at = Some(at + ms(2));
    t2.provider = Some("anthropic".into());
    store.save(&t2).await.unwrap();

    assert_eq!(
        ids(&store.find_processing_tasks(None).await.unwrap()),
        vec![tasks[1].id, tasks[2].id, tasks[0].id]
    );
    assert_eq!(
        ids(&store.find_processing_tasks(Some("openai")).await.unwrap()),
        vec![tasks[0].id]
    );
    assert_eq!(
        store
            .find_processing_tasks(Some("anthropic"))
            .await
            .unwrap(),
        vec![t2]
    );
    assert!(
        store
            .find_processing_tasks(Some("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn find_timed_out_tasks_by_lease(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..4).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    let at = now();
    let w = worker("w");
    // 0: lease ended 10 s ago, 1: ended 1 s ago, 2: still valid, 3: pending.
    store
        .claim(&[tasks[0].id], &w, at - TimeDelta::seconds(10), at)
        .await
        .unwrap();
    store
        .claim(&[tasks[1].id], &w, at - TimeDelta::seconds(1), at)
        .await
        .unwrap();
    store
        .claim(&[tasks[2].id], &w, at + TimeDelta::seconds(60), at)
        .await
        .unwrap();

    let timed_out = store.find_timed_out_tasks(at).await.unwrap();
    assert_eq!(ids(&timed_out), vec![tasks[0].id, tasks[1].id]);
    assert_eq!(
        timed_out[0].lease_expires_at,
        Some(at - TimeDelta::seconds(10))
    );
    // The boundary is exclusive; later, the third lease runs out too.
    assert_eq!(
        ids(&store
            .find_timed_out_tasks(at - TimeDelta::seconds(10))
            .await
            .unwrap()),
        Vec::<TaskId>::new()
    );
    assert_eq!(
        ids(&store
            .find_timed_out_tasks(at + TimeDelta::seconds(61))
            .await
            .unwrap()),
        vec![tasks[0].id, tasks[1].id, tasks[2].id]
    );
    // Finished tasks hold no lease.
    store
        .finish(&[finish(tasks[0].id, &w, completed(json!({}), "p"), at)])
        .await
        .unwrap();
    assert_eq!(
        ids(&store.find_timed_out_tasks(at).await.unwrap()),
        vec![tasks[1].id]
    );
}

async fn find_by_type_with_status_and_limit(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..9)
        .map(|i| {
            spec("alice", t0 + ms(i))
                .task_type(if i % 3 == 0 { "summarize" } else { "echo" })
                .build()
        })
        .collect();
    insert(&store, tasks.clone()).await;
    let at = now();
    store
        .claim(&[tasks[3].id], &worker("w"), at + TimeDelta::minutes(1), at)
        .await
        .unwrap();

    let s = |v: Vec<usize>| v.into_iter().map(|i| tasks[i].id).collect::<Vec<_>>();
    assert_eq!(
        ids(&store
            .find_by_type(TaskType::Summarize, None, 10)
            .await
            .unwrap()),
        s(vec![6, 3, 0])
    );
    assert_eq!(
        ids(&store
            .find_by_type(TaskType::Summarize, Some(TaskStatus::Pending), 10)
            .await
            .unwrap()),
        s(vec![6, 0])
    );
    assert_eq!(
        ids(&store
            .find_by_type(TaskType::Summarize, Some(TaskStatus::Processing), 10)
            .await
            .unwrap()),
        s(vec![3])
    );
    assert_eq!(
        ids(&store.find_by_type(TaskType::Echo, None, 4).await.unwrap()),
        s(vec![8, 7, 5, 4])
    );
    assert!(
        store
            .find_by_type(TaskType::ImageGeneration, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn find_by_related_entity(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = spec("alice", t0).related("article", "1").build();
    let b = spec("bob", t0 + ms(1)).related("article", "1").build();
    let c = spec("alice", t0 + ms(2)).related("article", "2").build();
    let d = spec("alice", t0 + ms(3))
        .related("vocabulary_item", "1")
        .build();
    let e = task("alice", t0 + ms(4));
    insert(&store, vec![a.clone(), b.clone(), c.clone(), d.clone(), e]).await;

    assert_eq!(
        store.find_by_related_entity("article", "1").await.unwrap(),
        vec![b, a]
    );
    assert_eq!(
        store.find_by_related_entity("article", "2").await.unwrap(),
        vec![c]
    );
    assert_eq!(
        store
            .find_by_related_entity("vocabulary_item", "1")
            .await
            .unwrap(),
        vec![d]
    );
    assert!(
        store
            .find_by_related_entity("article", "3")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn find_tasks_by_worker(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let tasks: Vec<Task> = (0..5).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    let w1 = worker("w-1");
    let w2 = worker("w-2");
    let at = now();
    let lease = at + TimeDelta::minutes(1);
    store
        .claim(&[tasks[2].id], &w1, lease, at + ms(2))
        .await
        .unwrap();
    store
        .claim(&[tasks[0].id, tasks[1].id], &w1, lease, at + ms(1))
        .await
        .unwrap();
    store.claim(&[tasks[3].id], &w2, lease, at).await.unwrap();

    let mine = store.find_tasks_by_worker(&w1).await.unwrap();
    assert_eq!(mine.len(), 3);
    // Ordered by start time; 0 and 1 started together.
    assert_eq!(mine[2].id, tasks[2].id);
    let first_two: HashSet<TaskId> = ids(&mine[..2]).into_iter().collect();
    assert_eq!(first_two, HashSet::from([tasks[0].id, tasks[1].id]));
    assert!(mine.iter().all(|t| t.worker_id.as_ref() == Some(&w1)));
    assert_eq!(
        ids(&store.find_tasks_by_worker(&w2).await.unwrap()),
        vec![tasks[3].id]
    );

    store
        .finish(&[finish(tasks[2].id, &w1, completed(json!({}), "p"), at)])
        .await
        .unwrap();
    store.cancel(tasks[0].id, at).await.unwrap();
    assert_eq!(
        ids(&store.find_tasks_by_worker(&w1).await.unwrap()),
        vec![tasks[1].id]
    );
    assert!(
        store
            .find_tasks_by_worker(&worker("w-none"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn find_failed_tasks(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let mut tasks: Vec<Task> = (0..6).map(|i| task("alice", t0 + ms(i))).collect();
    insert(&store, tasks.clone()).await;
    // (retry_count, updated_at offset in s)
    let layout = [(0, 30), (2, 10), (3, 20), (1, 50), (0, 5)];
    for (t, &(retries, off)) in tasks.iter_mut().zip(&layout) {
        t.status = TaskStatus::Failed;
        t.retry_count = retries;
        t.error = Some(retryable("boom", Some("openai")));
        t.updated_at = t0 + TimeDelta::seconds(off);
        t.completed_at = Some(t.updated_at);
        store.save(t).await.unwrap();
    }
    // tasks[5] stays pending.
    let s = |v: Vec<usize>| v.into_iter().map(|i| tasks[i].id).collect::<Vec<_>>();

    let older_than = t0 + TimeDelta::seconds(40);
    assert_eq!(
        ids(&store.find_failed_tasks(3, older_than, 10).await.unwrap()),
        s(vec![4, 1, 0])
    );
    assert_eq!(
        ids(&store.find_failed_tasks(4, older_than, 10).await.unwrap()),
        s(vec![4, 1, 2, 0])
    );
    assert_eq!(
        ids(&store.find_failed_tasks(4, older_than, 2).await.unwrap()),
        s(vec![4, 1])
    );
    assert_eq!(
        ids(&store
            .find_failed_tasks(10, t0 + TimeDelta::hours(1), 10)
            .await
            .unwrap()),
        s(vec![4, 1, 2, 0, 3])
    );
    assert_eq!(
        ids(&store.find_failed_tasks(1, older_than, 10).await.unwrap()),
        s(vec![4, 0])
    );
    // updated_at bound is exclusive.
    assert_eq!(
        ids(&store
            .find_failed_tasks(3, t0 + TimeDelta::seconds(5), 10)
            .await
            .unwrap()),
        Vec::<TaskId>::new()
    );
    assert_eq!(
        store.find_failed_tasks(3, older_than, 10).await.unwrap()[0],
        tasks[4]
    );
}

async fn save_round_trips_every_field(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let mut t = spec("alice", t0)
        .task_type("image_generation")
        .priority(8)
        .key("save-key")
        .related("vocabulary_item", "v-9")
        .payload(json!({"prompt": "a cat", "size": [512, 512], "nested": {"a": null}}))
        .build();
    t.status = TaskStatus::Processing;
    t.result = Some(json!({"partial": true, "items": ["x", "y"]}));
    t.error = Some(TaskError {
        class: ErrorClass::RateLimited,
        message: "slow down".into(),
        provider: Some("openai".into()),
    });
    t.progress = 42;
    t.retry_count = 2;
    t.max_retries = 5;
    t.provider = Some("openai".into());
    t.worker_id = Some(worker("host-1-abc"));
    t.lease_expires_at = Some(t0 + TimeDelta::seconds(90));
    t.timeout = Duration::from_millis(123_456);
    t.run_after = t0 + TimeDelta::seconds(7) + TimeDelta::microseconds(123);
    t.updated_at = t0 + TimeDelta::seconds(8) + TimeDelta::microseconds(999_999);
    t.started_at = Some(t0 + TimeDelta::seconds(6) + TimeDelta::microseconds(1));

    // Insert path.
    store.save(&t).await.unwrap();
    assert_eq!(get(&store, t.id).await, t);

    // Update path: every mutable field changes.
    let mut u = t.clone();
    u.status = TaskStatus::Completed;
    u.priority = Priority::new(2).unwrap();
    u.payload = json!({"prompt": "a dog"});
    u.result = Some(json!({"url": "https://img"}));
    u.error = None;
    u.progress = 100;
    u.retry_count = 3;
    u.max_retries = 6;
    u.provider = None;
    u.worker_id = None;
    u.lease_expires_at = None;
    u.timeout = Duration::from_millis(1);
    u.run_after = t0 + TimeDelta::seconds(70);
    u.updated_at = t0 + TimeDelta::seconds(80);
    u.started_at = Some(t0 + TimeDelta::seconds(60));
    u.completed_at = Some(t0 + TimeDelta::seconds(80));
    store.save(&u).await.unwrap();
    assert_eq!(get(&store, t.id).await, u);

    // A minimal task (all optional fields empty) round-trips too.
    let minimal = task("bob", t0 + ms(1));
    store.save(&minimal).await.unwrap();
    assert_eq!(get(&store, minimal.id).await, minimal);
    // save writes no events.
    assert!(store.events_for_task(minimal.id).await.unwrap().is_empty());
}

async fn delete_removes_task_and_events(store: Arc<dyn TaskStore>) {
    let t0 = base();
    let a = task("alice", t0);
    let b = task("alice", t0 + ms(1));
    insert(&store, vec![a.clone(), b.clone()]).await;
    let at = now();
    store
        .claim(&[a.id], &worker("w"), at + TimeDelta::minutes(1), at)
        .await
        .unwrap();

    assert!(store.delete(a.id).await.unwrap());
    assert_eq!(store.find_by_id(a.id).await.unwrap(), None);
    assert!(store.events_for_task(a.id).await.unwrap().is_empty());
    assert!(!store.delete(a.id).await.unwrap());
    assert!(!store.delete(TaskId::new()).await.unwrap());

    assert_eq!(get(&store, b.id).await, b);
    assert_eq!(store.events_for_task(b.id).await.unwrap().len(), 1);
    assert_eq!(
        read_all_pages(&store, &TaskFilter::default(), 10).await,
        vec![b.id]
    );
}

/// A task started by its submit (worker/dispatch.rs) is stored `processing` under its worker,
/// with its `TaskCreated` and then its `TaskStarted` event; a claim cannot take it again, and
/// its worker's outcome applies as for a claimed task.
async fn insert_of_a_started_task(store: Arc<dyn TaskStore>) {
    let at = now();
    let w = worker("w-direct");
    let mut started = task("alice", at);
    started
        .start(w.clone(), at + TimeDelta::minutes(1), at)
        .unwrap();
    let pending = task("alice", at + ms(1));
    let stored = insert(&store, vec![started.clone(), pending.clone()]).await;
    assert_eq!(stored[0], started);
    assert_eq!(get(&store, started.id).await, started);
    assert_eq!(get(&store, pending.id).await, pending);

    let claimed = store
        .claim(
            &ids(&stored),
            &worker("w-other"),
            at + TimeDelta::minutes(1),
            at,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        vec![pending.id],
        "a started task is not claimable"
    );
    assert_eq!(
        kinds(&store.events_for_task(started.id).await.unwrap()),
        vec![TaskEventType::TaskCreated, TaskEventType::TaskStarted]
    );
    let applied = store
        .finish(&[finish(
            started.id,
            &w,
            completed(json!({"ok": 1}), "echo"),
            at + ms(5),
        )])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(
        kinds(&store.events_for_task(started.id).await.unwrap()),
        vec![
            TaskEventType::TaskCreated,
            TaskEventType::TaskStarted,
            TaskEventType::TaskCompleted
        ]
    );
}

store_tests!(
    insert_returns_created_tasks_and_they_are_findable,
    idempotency_same_user_and_key_returns_first_task,
    idempotency_keys_are_per_user,
    idempotency_duplicates_within_one_batch,
    resubmitting_a_stored_id_answers_the_stored_task,
    concurrent_duplicate_inserts_yield_one_row,
    large_batches_span_chunks,
    claim_sets_processing_worker_and_lease,
    concurrent_claims_hand_out_each_task_once,
    cancelled_tasks_are_not_claimable,
    finish_completed,
    finish_is_guarded_by_worker_id,
    finish_retry_returns_task_to_pending,
    finish_failed,
    cancel_pending_processing_and_terminal,
    events_record_every_transition_in_order,
    list_pages_newest_first_without_gaps,
    list_filters_by_status_and_type,
    count_active_by_user,
    find_pending_tasks_in_queue_order,
    find_processing_tasks_by_provider,
    find_timed_out_tasks_by_lease,
    find_by_type_with_status_and_limit,
    find_by_related_entity,
    find_tasks_by_worker,
    find_failed_tasks,
    save_round_trips_every_field,
    delete_removes_task_and_events,
    insert_of_a_started_task,
);

// ------------------------------------------------------------------------------------------
// Store: leases, heartbeats and recovery
// ------------------------------------------------------------------------------------------

/// A heartbeat extends the leases of the tasks the worker names and still holds, and only those.
async fn heartbeat_renews_only_own_leases(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let tasks = insert(&store, (0..3).map(|i| task("alice", t0 + ms(i))).collect()).await;
    let (w1, w2) = (worker("w1"), worker("w2"));
    store.register_worker(&w1, "host-a", t0).await.unwrap();
    store.register_worker(&w2, "host-b", t0).await.unwrap();
    store
        .claim(&ids(&tasks[..2]), &w1, t0 + ms(1000), t0)
        .await
        .unwrap();
    store
        .claim(&ids(&tasks[2..]), &w2, t0 + ms(1000), t0)
        .await
        .unwrap();
    let later = t0 + ms(60_000);
    // w1 runs tasks 0 and 1; it also names task 2, which w2 holds.
    assert_eq!(
        store
            .heartbeat(&w1, &ids(&tasks), later, t0 + ms(500))
            .await
            .unwrap(),
        2
    );
    for t in &tasks[..2] {
        assert_eq!(get(&store, t.id).await.lease_expires_at, Some(later));
    }
    assert_eq!(
        get(&store, tasks[2].id).await.lease_expires_at,
        Some(t0 + ms(1000))
    );
    // A task w1 holds but no longer runs (its outcome could not be written) keeps its old
    // lease, so it lapses and the task goes to another attempt.
    let last = t0 + ms(90_000);
    assert_eq!(
        store
            .heartbeat(&w1, &ids(&tasks[..1]), last, t0 + ms(600))
            .await
            .unwrap(),
        1
    );
    assert_eq!(get(&store, tasks[0].id).await.lease_expires_at, Some(last));
    assert_eq!(get(&store, tasks[1].id).await.lease_expires_at, Some(later));
}

/// Expired leases: back to pending with the attempt counted, or failed when no retry is left;
/// live leases are untouched; each change has its event.
async fn requeue_expired_counts_the_lost_attempt(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let mut exhausted = task("alice", t0);
    exhausted.max_retries = 0;
    let fresh = task("alice", t0 + ms(1));
    let live = task("alice", t0 + ms(2));
    insert(&store, vec![exhausted.clone(), fresh.clone(), live.clone()]).await;
    let w = worker("w");
    store
        .claim(&[exhausted.id, fresh.id], &w, t0 + ms(100), t0)
        .await
        .unwrap();
    store
        .claim(&[live.id], &w, t0 + ms(10_000), t0)
        .await
        .unwrap();

    let requeued = store.requeue_expired(t0 + ms(200), 100).await.unwrap();
    assert_eq!(ids(&requeued), vec![fresh.id]);
    let f = get(&store, fresh.id).await;
    assert_eq!(
        (f.status, f.retry_count, f.worker_id.clone()),
        (TaskStatus::Pending, 1, None)
    );
    assert_eq!(f.error.unwrap().class, ErrorClass::Retryable);
    let e = get(&store, exhausted.id).await;
    assert_eq!(e.status, TaskStatus::Failed);
    assert!(e.completed_at.is_some());
    assert_eq!(get(&store, live.id).await.status, TaskStatus::Processing);
    assert_eq!(
        kinds(&store.events_for_task(fresh.id).await.unwrap()),
        vec![
            TaskEventType::TaskCreated,
            TaskEventType::TaskStarted,
            TaskEventType::TaskRetrying
        ]
    );
    assert_eq!(
        kinds(&store.events_for_task(exhausted.id).await.unwrap()).last(),
        Some(&TaskEventType::TaskFailed)
    );
    // The old worker's late outcome no longer applies.
    let late = finish(fresh.id, &w, completed(json!(1), "echo"), t0 + ms(300));
    assert_eq!(store.finish(&[late]).await.unwrap(), vec![false]);
    assert!(
        store
            .requeue_expired(t0 + ms(200), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A clean shutdown hands held tasks back without counting an attempt.
async fn release_hands_back_without_counting(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let tasks = insert(&store, (0..2).map(|i| task("alice", t0 + ms(i))).collect()).await;
    let (w, other) = (worker("w"), worker("other"));
    store
        .claim(&[tasks[0].id], &w, t0 + ms(1000), t0)
        .await
        .unwrap();
    store
        .claim(&[tasks[1].id], &other, t0 + ms(1000), t0)
        .await
        .unwrap();
    let released = store.release(&w, t0 + ms(10)).await.unwrap();
    assert_eq!(ids(&released), vec![tasks[0].id]);
    let t = get(&store, tasks[0].id).await;
    assert_eq!(
        (t.status, t.retry_count, t.worker_id),
        (TaskStatus::Pending, 0, None)
    );
    assert_eq!(
        get(&store, tasks[1].id).await.status,
        TaskStatus::Processing
    );
    // Claimable again.
    let again = store
        .claim(&[tasks[0].id], &other, t0 + ms(2000), t0 + ms(20))
        .await
        .unwrap();
    assert_eq!(ids(&again), vec![tasks[0].id]);
}

/// Workers that stop heartbeating are reported once, then marked dead.
async fn stale_workers_are_reaped_once(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let (old, alive, stopped) = (worker("old"), worker("alive"), worker("stopped"));
    store.register_worker(&old, "h", t0).await.unwrap();
    store.register_worker(&alive, "h", t0).await.unwrap();
    store.register_worker(&stopped, "h", t0).await.unwrap();
    store.unregister_worker(&stopped, t0).await.unwrap();
    store
        .heartbeat(&alive, &[], t0 + ms(5000), t0 + ms(2000))
        .await
        .unwrap();
    let dead = store.reap_stale_workers(t0 + ms(1000)).await.unwrap();
    assert_eq!(dead, vec![old.clone()]);
    assert!(
        store
            .reap_stale_workers(t0 + ms(1000))
            .await
            .unwrap()
            .is_empty()
    );
    // Re-registering brings a worker back.
    store
        .register_worker(&old, "h", t0 + ms(3000))
        .await
        .unwrap();
    assert!(
        store
            .reap_stale_workers(t0 + ms(1000))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Dead letters: requeue resets retries but not the attempt count, keeps the last error and
/// adds an event; only failed tasks move; purge deletes only failed tasks; the error-class
/// filter reads the stored error.
async fn dead_letters_requeue_and_purge(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let mut dead = task("alice", t0);
    dead.max_retries = 0;
    let alive = task("alice", t0 + ms(1));
    insert(&store, vec![dead.clone(), alive.clone()]).await;
    let w = worker("w");
    store
        .claim(&[dead.id], &w, t0 + ms(1000), t0)
        .await
        .unwrap();
    let fail = Outcome::Failed {
        error: TaskError::new(ErrorClass::NonRetryable, "bad input"),
    };
    store
        .finish(&[finish(dead.id, &w, fail, t0 + ms(5))])
        .await
        .unwrap();
    let filter = |class| TaskFilter {
        status: Some(TaskStatus::Failed),
        error_class: Some(class),
        ..TaskFilter::default()
    };
    let page = PageRequest::parse(10, "").unwrap();
    assert_eq!(
        ids(&store
            .list(&filter(ErrorClass::NonRetryable), &page)
            .await
            .unwrap()
            .items),
        vec![dead.id]
    );
    assert!(
        store
            .list(&filter(ErrorClass::Retryable), &page)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let requeued = store
        .requeue_failed(&[dead.id, alive.id], t0 + ms(10))
        .await
        .unwrap();
    assert_eq!(
        ids(&requeued),
        vec![dead.id],
        "only failed tasks are requeued"
    );
    let t = get(&store, dead.id).await;
    assert_eq!(
        (t.status, t.retry_count, t.attempts),
        (TaskStatus::Pending, 0, 1)
    );
    assert!(t.completed_at.is_none());
    assert_eq!(
        t.error.unwrap().message,
        "bad input",
        "the last error is kept"
    );
    let claimed = store
        .claim(&[dead.id], &w, t0 + ms(1000), t0 + ms(20))
        .await
        .unwrap();
    assert_eq!(claimed[0].attempts, 2);
    assert_eq!(
        kinds(&store.events_for_task(dead.id).await.unwrap()),
        vec![
            TaskEventType::TaskCreated,
            TaskEventType::TaskStarted,
            TaskEventType::TaskFailed,
            TaskEventType::TaskRetrying,
            TaskEventType::TaskStarted,
        ]
    );
    store
        .finish(&[finish(
            dead.id,
            &w,
            Outcome::Failed {
                error: retryable("again", None),
            },
            t0 + ms(30),
        )])
        .await
        .unwrap();
    assert_eq!(store.purge_failed(&[dead.id, alive.id]).await.unwrap(), 1);
    assert!(store.find_by_id(dead.id).await.unwrap().is_none());
    assert!(store.events_for_task(dead.id).await.unwrap().is_empty());
    assert!(
        store.find_by_id(alive.id).await.unwrap().is_some(),
        "only failed tasks are purged"
    );
}

/// `still_held` answers which running tasks a worker still owns.
async fn still_held_drops_cancelled_and_foreign_tasks(store: Arc<dyn TaskStore>) {
    let t0 = now();
    let tasks = insert(&store, (0..3).map(|i| task("alice", t0 + ms(i))).collect()).await;
    let (w, other) = (worker("w"), worker("other"));
    store
        .claim(&ids(&tasks[..2]), &w, t0 + ms(1000), t0)
        .await
        .unwrap();
    store
        .claim(&ids(&tasks[2..]), &other, t0 + ms(1000), t0)
        .await
        .unwrap();
    store.cancel(tasks[1].id, t0 + ms(5)).await.unwrap();
    assert_eq!(
        store.still_held(&ids(&tasks), &w).await.unwrap(),
        vec![tasks[0].id]
    );
    assert!(store.still_held(&[], &w).await.unwrap().is_empty());
}

store_tests!(
    dead_letters_requeue_and_purge,
    still_held_drops_cancelled_and_foreign_tasks
);

store_tests!(
    heartbeat_renews_only_own_leases,
    requeue_expired_counts_the_lost_attempt,
    release_hands_back_without_counting,
    stale_workers_are_reaped_once,
);

// ------------------------------------------------------------------------------------------
// Queue
// ------------------------------------------------------------------------------------------

/// A queue entry for a fresh id.
fn entry(priority: i64) -> QueueEntry {
    QueueEntry::new(TaskId::new(), Priority::new(priority).unwrap())
}

fn entry_ids(entries: &[QueueEntry]) -> Vec<TaskId> {
    entries.iter().map(|e| e.task_id).collect()
}

/// Now, truncated to milliseconds (the Redis delayed set keeps unix milliseconds).
fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Pops everything ready without waiting.
async fn drain(queue: &Arc<dyn TaskQueue>) -> Vec<TaskId> {
    queue.pop(10_000, Duration::ZERO).await.unwrap()
}

async fn priority_order_and_fifo_within_priority(queue: Arc<dyn TaskQueue>) {
    let (a5, b10, c1, d5, e10, f5, g7) = (
        entry(5),
        entry(10),
        entry(1),
        entry(5),
        entry(10),
        entry(5),
        entry(7),
    );
    queue.push(&[a5, b10, c1]).await.unwrap();
    queue.push(&[d5, e10]).await.unwrap();
    queue.push(&[f5]).await.unwrap();
    queue.push(&[g7]).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 7);
    assert_eq!(
        drain(&queue).await,
        entry_ids(&[b10, e10, g7, a5, d5, f5, c1])
    );
    assert_eq!(queue.len().await.unwrap(), 0);
    queue.push(&[]).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 0);
    queue.ping().await.unwrap();
}

async fn push_dedupes_an_id_already_queued(queue: Arc<dyn TaskQueue>) {
    let a1 = entry(1);
    let b5 = entry(5);
    queue.push(&[a1, b5]).await.unwrap();
    // Pushed again with a higher priority: it keeps its place (and priority).
    let a10 = QueueEntry::new(a1.task_id, Priority::new(10).unwrap());
    queue.push(&[a10]).await.unwrap();
    queue.push(&[b5, b5]).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 2);
    assert_eq!(drain(&queue).await, vec![b5.task_id, a1.task_id]);

    // Duplicates within one push count once.
    let c = entry(5);
    queue.push(&[c, c, c]).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 1);
    assert_eq!(drain(&queue).await, vec![c.task_id]);
    // Once popped, the same id can be queued again.
    queue.push(&[c]).await.unwrap();
    assert_eq!(drain(&queue).await, vec![c.task_id]);
}

async fn pop_returns_up_to_max(queue: Arc<dyn TaskQueue>) {
    let entries: Vec<QueueEntry> = (0..5).map(|_| entry(5)).collect();
    queue.push(&entries).await.unwrap();
    let ids = entry_ids(&entries);
    assert_eq!(queue.pop(2, Duration::ZERO).await.unwrap(), ids[..2]);
    assert_eq!(queue.len().await.unwrap(), 3);
    assert_eq!(
        queue.pop(1, Duration::from_secs(1)).await.unwrap(),
        ids[2..3]
    );
    assert_eq!(queue.pop(10, Duration::ZERO).await.unwrap(), ids[3..]);
    assert!(queue.pop(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(queue.len().await.unwrap(), 0);
}

async fn pop_waits_for_a_push(queue: Arc<dyn TaskQueue>) {
    let e = entry(5);
    let popper = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let got = queue.pop(1, Duration::from_secs(2)).await.unwrap();
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.push(&[e]).await.unwrap();
    let (got, elapsed) = popper.await.unwrap();
    assert_eq!(got, vec![e.task_id]);
    assert!(
        elapsed >= Duration::from_millis(250),
        "pop returned before the push: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "pop did not wake promptly on push: {elapsed:?}"
    );
    assert_eq!(queue.len().await.unwrap(), 0);
}

async fn pop_times_out_empty(queue: Arc<dyn TaskQueue>) {
    let start = Instant::now();
    let got = queue.pop(5, Duration::from_millis(500)).await.unwrap();
    let elapsed = start.elapsed();
    assert!(got.is_empty());
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    let start = Instant::now();
    assert!(queue.pop(5, Duration::ZERO).await.unwrap().is_empty());
    assert!(start.elapsed() < Duration::from_millis(500));

    // A delayed entry is not ready: pop still times out.
    queue
        .push_delayed(&[entry(5)], now_ms() + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert!(
        queue
            .pop(5, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn push_delayed_and_promote_due(queue: Arc<dyn TaskQueue>) {
    let t = now_ms();
    let due1 = t + TimeDelta::seconds(60);
    let due2 = t + TimeDelta::seconds(120);
    let a5 = entry(5);
    let (b10, c5) = (entry(10), entry(5));
    queue.push_delayed(&[a5], due1).await.unwrap();
    queue.push_delayed(&[c5, b10], due2).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 3);
    assert!(
        drain(&queue).await.is_empty(),
        "delayed entries are not ready"
    );

    assert_eq!(
        queue.promote_due(t).await.unwrap(),
        Promoted {
            moved: 0,
            next_due: Some(due1)
        }
    );
    assert_eq!(
        queue.promote_due(due1 - ms(1)).await.unwrap(),
        Promoted {
            moved: 0,
            next_due: Some(due1)
        }
    );
    assert!(drain(&queue).await.is_empty());

    // Due is inclusive.
    assert_eq!(
        queue.promote_due(due1).await.unwrap(),
        Promoted {
            moved: 1,
            next_due: Some(due2)
        }
    );
    assert_eq!(queue.len().await.unwrap(), 3);
    assert_eq!(drain(&queue).await, vec![a5.task_id]);

    assert_eq!(
        queue.promote_due(due2 + ms(1)).await.unwrap(),
        Promoted {
            moved: 2,
            next_due: None
        }
    );
    // Promoted entries are ordered by priority.
    assert_eq!(drain(&queue).await, vec![b10.task_id, c5.task_id]);
    assert_eq!(queue.len().await.unwrap(), 0);
    assert_eq!(
        queue.promote_due(due2 + ms(2)).await.unwrap(),
        Promoted::default()
    );

    // Re-parking an id moves its due time instead of adding a second entry.
    let d = entry(5);
    queue.push_delayed(&[d], due2).await.unwrap();
    queue.push_delayed(&[d], due1).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 1);
    assert_eq!(
        queue.promote_due(t).await.unwrap(),
        Promoted {
            moved: 0,
            next_due: Some(due1)
        }
    );
    assert_eq!(queue.promote_due(due1).await.unwrap().moved, 1);
    assert_eq!(drain(&queue).await, vec![d.task_id]);
}

async fn promoted_entries_wake_a_waiting_popper(queue: Arc<dyn TaskQueue>) {
    let e = entry(5);
    let due = now_ms() + ms(200);
    queue.push_delayed(&[e], due).await.unwrap();
    let popper = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.pop(1, Duration::from_secs(2)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    assert_eq!(queue.promote_due(now_ms()).await.unwrap().moved, 1);
    let got = popper.await.unwrap();
    assert_eq!(got, vec![e.task_id]);
    assert!(start.elapsed() < Duration::from_millis(1500));
}

async fn remove_from_ready_and_delayed(queue: Arc<dyn TaskQueue>) {
    let (a, b, c) = (entry(5), entry(5), entry(9));
    let due = now_ms() + TimeDelta::seconds(30);
    queue.push(&[a, b]).await.unwrap();
    queue.push_delayed(&[c], due).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 3);

    assert!(queue.remove(a.task_id).await.unwrap());
    assert!(!queue.remove(a.task_id).await.unwrap());
    assert_eq!(queue.len().await.unwrap(), 2);
    assert!(queue.remove(c.task_id).await.unwrap());
    assert!(!queue.remove(c.task_id).await.unwrap());
    assert!(!queue.remove(TaskId::new()).await.unwrap());
    assert_eq!(queue.len().await.unwrap(), 1);

    assert_eq!(
        queue.promote_due(due + ms(1)).await.unwrap(),
        Promoted::default()
    );
    assert_eq!(drain(&queue).await, vec![b.task_id]);
    assert_eq!(queue.len().await.unwrap(), 0);
}

async fn len_counts_ready_and_delayed(queue: Arc<dyn TaskQueue>) {
    assert_eq!(queue.len().await.unwrap(), 0);
    let ready: Vec<QueueEntry> = (0..3).map(|i| entry(i + 1)).collect();
    let delayed: Vec<QueueEntry> = (0..2).map(|_| entry(5)).collect();
    queue.push(&ready).await.unwrap();
    queue
        .push_delayed(&delayed, now_ms() + TimeDelta::minutes(5))
        .await
        .unwrap();
    assert_eq!(queue.len().await.unwrap(), 5);
    assert_eq!(
        queue.pop(1, Duration::ZERO).await.unwrap(),
        vec![ready[2].task_id]
    );
    assert_eq!(queue.len().await.unwrap(), 4);
    queue.remove(delayed[0].task_id).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 3);
}

async fn concurrent_poppers_never_share_an_id(queue: Arc<dyn TaskQueue>) {
    let entries: Vec<QueueEntry> = (0..1000).map(|i| entry(i % 10 + 1)).collect();
    for chunk in entries.chunks(100) {
        queue.push(chunk).await.unwrap();
    }
    assert_eq!(queue.len().await.unwrap(), 1000);
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let poppers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut got = Vec::new();
                loop {
                    let ids = queue.pop(7, Duration::from_millis(100)).await.unwrap();
                    if ids.is_empty() {
                        return got;
                    }
                    assert!(ids.len() <= 7);
                    got.extend(ids);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for p in poppers {
        all.extend(p.await.unwrap());
    }
    assert_eq!(all.len(), 1000, "every id popped exactly once in total");
    let unique: HashSet<TaskId> = all.iter().copied().collect();
    assert_eq!(unique.len(), 1000, "an id was popped twice");
    assert_eq!(unique, entry_ids(&entries).into_iter().collect());
    assert_eq!(queue.len().await.unwrap(), 0);
}

queue_tests!(
    priority_order_and_fifo_within_priority,
    push_dedupes_an_id_already_queued,
    pop_returns_up_to_max,
    pop_waits_for_a_push,
    pop_times_out_empty,
    push_delayed_and_promote_due,
    promoted_entries_wake_a_waiting_popper,
    remove_from_ready_and_delayed,
    len_counts_ready_and_delayed,
    concurrent_poppers_never_share_an_id,
);

// ------------------------------------------------------------------------------------------
// Regression tests for bugs once found in one backend only.
// ------------------------------------------------------------------------------------------

/// Pages must not skip tasks whose `created_at` has sub-microsecond digits (as `Utc::now()`
/// has on Linux). SQLite keeps nanoseconds but the page token keeps microseconds, so every
/// task in the same microsecond after the page boundary is skipped.
async fn paging_with_sub_microsecond_timestamps(store: Arc<dyn TaskStore>) {
    let at = base() + TimeDelta::nanoseconds(123_456_789);
    let tasks: Vec<Task> = (0..3).map(|_| task("alice", at)).collect();
    insert(&store, tasks.clone()).await;
    let mut got = read_all_pages(&store, &TaskFilter::default(), 1).await;
    got.sort();
    let mut want = ids(&tasks);
    want.sort();
    assert_eq!(got, want);
}

mod paging_with_sub_microsecond_timestamps {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        crate::support::run_with_pg_store(super::paging_with_sub_microsecond_timestamps).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        crate::support::run_with_sqlite_store(super::paging_with_sub_microsecond_timestamps).await;
    }
}

/// PostgreSQL's outcomes commit without waiting for the WAL flush and then wait for a flush
/// barrier that begins after their commit (store/wal_flush.rs): a synchronous commit of a
/// `wal_flush_marks` row. So outcomes one after another each wait for a barrier of their own.
/// (Submits commit synchronously; `faults::an_accepted_submit_survives_a_postgres_crash`
/// checks that they are durable.)
mod postgres_writes_wait_for_a_wal_flush {
    use super::*;
    use ai_integration_service::store::PgTaskStore;

    async fn flushes(pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(SUM(flushes), 0)::bigint FROM wal_flush_marks")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn body(store: PgTaskStore) {
        let pool = store.pool().clone();
        let store: Arc<dyn TaskStore> = Arc::new(store);
        let tasks: Vec<Task> = (0..4).map(|i| task("alice", base() + ms(i))).collect();
        insert(&store, tasks.clone()).await;
        let w = worker("w-1");
        let at = now();
        store
            .claim(&ids(&tasks), &w, at + TimeDelta::minutes(1), at)
            .await
            .unwrap();
        for (i, t) in tasks.iter().enumerate() {
            let before = flushes(&pool).await;
            let outcome = if i % 2 == 0 {
                completed(json!({"i": i}), "echo")
            } else {
                Outcome::Failed {
                    error: retryable("no", None),
                }
            };
            let applied = store
                .finish(&[finish(t.id, &w, outcome, at)])
                .await
                .unwrap();
            assert_eq!(applied, vec![true]);
            assert!(
                flushes(&pool).await > before,
                "outcome {i} returned without a flush"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some((store, url)) = crate::support::pg_store().await else {
            return;
        };
        crate::support::run_then_cleanup(body(store), crate::support::drop_pg_database(&url)).await;
    }
}

/// Several concurrent blocking pops on one queue each wait at most `wait`, and none fails.
async fn concurrent_blocking_pops_honour_wait(queue: Arc<dyn TaskQueue>) {
    let start = Instant::now();
    let poppers: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop(1, Duration::from_secs(2)).await })
        })
        .collect();
    for p in poppers {
        assert_eq!(p.await.unwrap().unwrap(), Vec::<TaskId>::new());
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

mod concurrent_blocking_pops_honour_wait {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis() {
        crate::support::run_with_redis_queue(super::concurrent_blocking_pops_honour_wait).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory() {
        crate::support::run_with_memory_queue(super::concurrent_blocking_pops_honour_wait).await;
    }
}

/// `promote_due` moves every due entry, however many.
async fn promote_due_moves_every_due_entry(queue: Arc<dyn TaskQueue>) {
    let due = now_ms();
    let entries: Vec<QueueEntry> = (0..1500).map(|_| entry(5)).collect();
    queue.push_delayed(&entries, due).await.unwrap();
    assert_eq!(
        queue.promote_due(due).await.unwrap(),
        Promoted {
            moved: 1500,
            next_due: None
        }
    );
    assert_eq!(drain(&queue).await.len(), 1500);
}

mod promote_due_moves_every_due_entry {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis() {
        crate::support::run_with_redis_queue(super::promote_due_moves_every_due_entry).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory() {
        crate::support::run_with_memory_queue(super::promote_due_moves_every_due_entry).await;
    }
}

// ------------------------------------------------------------------------------------------
// Rate limiter (GCRA): Redis and in-process
// ------------------------------------------------------------------------------------------

mod rate_limiter {
    use std::sync::Arc;
    use std::time::Duration;

    use ai_integration_service::ratelimit::{
        Decision, MemoryRateLimiter, Rate, RateLimiter, RedisRateLimiter,
    };

    const RATE: Rate = Rate {
        count: 2,
        period: Duration::from_secs(1),
        burst: 2,
    };

    /// A burst, then a wait of one interval; keys are independent; a cost counts as many events.
    async fn burst_then_wait(a: Arc<dyn RateLimiter>, b: Arc<dyn RateLimiter>) {
        assert_eq!(a.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
        // A second handle (another instance) counts against the same key.
        assert_eq!(b.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
        let Decision::Limited { retry_after } = a.check("k", RATE, 1).await.unwrap() else {
            panic!("third call within the burst window must be limited");
        };
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500),
            "{retry_after:?}"
        );
        assert_eq!(a.check("other", RATE, 2).await.unwrap(), Decision::Allowed);
        assert!(matches!(
            a.check("other", RATE, 1).await.unwrap(),
            Decision::Limited { .. }
        ));
        tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
        assert_eq!(b.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
    }

    #[tokio::test]
    async fn redis() {
        let Some(url) = crate::support::redis_url().await else {
            return;
        };
        let prefix = crate::support::redis_prefix();
        let a = Arc::new(RedisRateLimiter::connect(&url, &prefix).await.unwrap());
        let b = Arc::new(RedisRateLimiter::connect(&url, &prefix).await.unwrap());
        burst_then_wait(a, b).await;
        crate::support::cleanup_redis_prefix(&url, &prefix).await;
    }

    #[tokio::test]
    async fn memory() {
        let l = Arc::new(MemoryRateLimiter::new());
        burst_then_wait(l.clone(), l).await;
    }
}

// ------------------------------------------------------------------------------------------
// Usage store (attempts, usage, budgets): PostgreSQL and SQLite
// ------------------------------------------------------------------------------------------

mod usage_store {
    use std::sync::Arc;

    use ai_integration_service::domain::{
        AttemptOutcome, Micros, ProviderAttempt, TaskId, TaskType, UserId,
    };
    use ai_integration_service::store::{
        PgTaskStore, Reservation, Spend, SqliteTaskStore, UsageStore,
    };
    use chrono::{SubsecRound, Utc};

    fn attempt(
        user: &str,
        task: Option<TaskId>,
        provider: &str,
        outcome: AttemptOutcome,
        cost: i64,
    ) -> ProviderAttempt {
        ProviderAttempt {
            id: uuid::Uuid::now_v7(),
            task_id: task,
            user_id: UserId::parse(user).unwrap(),
            provider: provider.into(),
            model: format!("{provider}-model"),
            task_type: TaskType::Summarize,
            input_tokens: if outcome.called() { 100 } else { 0 },
            output_tokens: if outcome.called() { 20 } else { 0 },
            cost: Micros(cost),
            outcome,
            error: (outcome != AttemptOutcome::Ok).then(|| "boom".to_owned()),
            latency_ms: 40,
            at: Utc::now().trunc_subsecs(6),
        }
    }

    async fn attempts_and_usage(store: Arc<dyn UsageStore>) {
        let task = TaskId::new();
        let tries = vec![
            attempt(
                "alice",
                Some(task),
                "groq",
                AttemptOutcome::SkippedBreaker,
                0,
            ),
            attempt("alice", Some(task), "claude", AttemptOutcome::Retryable, 0),
            attempt("alice", Some(task), "openai", AttemptOutcome::Ok, 250),
            attempt("bob", None, "openai", AttemptOutcome::Ok, 100),
        ];
        store.record_attempts(&tries).await.unwrap();
        let kept = store.attempts_for_task(task).await.unwrap();
        assert_eq!(kept, tries[..3].to_vec(), "a task's attempts, in order");

        let alice = store
            .usage_summary(Some(&UserId::parse("alice").unwrap()), None)
            .await
            .unwrap();
        let providers: Vec<_> = alice.iter().map(|u| u.provider.as_str()).collect();
        assert_eq!(providers, ["claude", "openai"], "skips are not usage");
        let openai = &alice[1];
        assert_eq!(
            (
                openai.calls,
                openai.successes,
                openai.input_tokens,
                openai.output_tokens,
                openai.cost
            ),
            (1, 1, 100, 20, Micros(250))
        );
        let month = ai_integration_service::domain::month_of(Utc::now());
        let all = store.usage_summary(None, Some(&month)).await.unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(
            store
                .usage_summary(None, Some("1999-01"))
                .await
                .unwrap()
                .is_empty()
        );

        let stats = store
            .provider_stats(Utc::now() - chrono::TimeDelta::hours(1))
            .await
            .unwrap();
        let groq = stats.iter().find(|s| s.provider == "groq").unwrap();
        assert_eq!((groq.calls, groq.skipped), (0, 1));
        let openai = stats.iter().find(|s| s.provider == "openai").unwrap();
        assert_eq!((openai.calls, openai.successes), (2, 2));
        assert!((openai.avg_latency_ms - 40.0).abs() < 0.01);
    }

    async fn budgets_reserve_before_and_settle_after(store: Arc<dyn UsageStore>) {
        let user = UserId::parse("carol").unwrap();
        let month = "2026-11";
        let budget = Some(Micros(100));
        assert_eq!(
            store
                .reserve(&user, month, Micros(60), budget)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            store
                .reserve(&user, month, Micros(50), budget)
                .await
                .unwrap(),
            Reservation::OverBudget {
                budget: Micros(100),
                spend: Spend {
                    spent: Micros(0),
                    reserved: Micros(60)
                }
            }
        );
        store
            .settle(&user, month, Micros(60), Micros(30))
            .await
            .unwrap();
        assert_eq!(
            store.spend(&user, month).await.unwrap(),
            Spend {
                spent: Micros(30),
                reserved: Micros(0)
            }
        );
        assert_eq!(
            store
                .reserve(&user, month, Micros(50), budget)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        // Another month starts from zero; no budget at all means unlimited.
        assert_eq!(
            store
                .reserve(&user, "2026-12", Micros(90), budget)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            store
                .reserve(&user, month, Micros(1_000_000), None)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        // A user's own budget overrides the default.
        let dave = UserId::parse("dave").unwrap();
        store.set_budget(&dave, Some(Micros(10))).await.unwrap();
        assert_eq!(store.budget(&dave).await.unwrap(), Some(Micros(10)));
        assert!(matches!(
            store
                .reserve(&dave, month, Micros(11), budget)
                .await
                .unwrap(),
            Reservation::OverBudget {
                budget: Micros(10),
                ..
            }
        ));
        store.set_budget(&dave, None).await.unwrap();
        assert_eq!(store.budget(&dave).await.unwrap(), None);
        assert_eq!(
            store
                .reserve(&dave, month, Micros(11), budget)
                .await
                .unwrap(),
            Reservation::Reserved
        );
    }

    /// Concurrent reservations never overspend: exactly budget / amount of them succeed.
    async fn concurrent_reservations_never_overspend(store: Arc<dyn UsageStore>) {
        let user = UserId::parse("erin").unwrap();
        let calls = (0..20).map(|_| {
            let store = store.clone();
            let user = user.clone();
            tokio::spawn(async move {
                store
                    .reserve(&user, "2026-11", Micros(10), Some(Micros(100)))
                    .await
                    .unwrap()
            })
        });
        let mut reserved = 0;
        for c in calls {
            if c.await.unwrap() == Reservation::Reserved {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 10);
        assert_eq!(
            store.spend(&user, "2026-11").await.unwrap().reserved,
            Micros(100)
        );
    }

    macro_rules! usage_tests {
        ($($name:ident),+ $(,)?) => {$(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(url) = crate::support::pg_url().await else { return };
                    let store = super::PgTaskStore::connect(&url, 10).await.unwrap();
                    let pool = store.pool().clone();
                    crate::support::run_then_cleanup(
                        super::$name(std::sync::Arc::new(store)),
                        async move {
                            pool.close().await;
                            crate::support::drop_pg_database(&url).await;
                        },
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let dir = crate::support::temp_dir();
                    let store = super::SqliteTaskStore::connect(&crate::support::sqlite_url(dir.path()))
                        .await
                        .unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            }
        )+};
    }

    usage_tests!(
        attempts_and_usage,
        budgets_reserve_before_and_settle_after,
        concurrent_reservations_never_overspend,
    );
}

// ------------------------------------------------------------------------------------------
// Circuit breakers: Redis (shared by instances) and in-process
// ------------------------------------------------------------------------------------------

mod breakers {
    use std::sync::Arc;
    use std::time::Duration;

    use ai_integration_service::providers::{
        BreakerPolicy, BreakerState, Breakers, MemoryBreakers, Permit, RedisBreakers,
    };

    const POLICY: BreakerPolicy = BreakerPolicy {
        failure_threshold: 5,
        success_threshold: 2,
        open_for: Duration::from_millis(300),
        half_open_trials: 1,
    };

    /// One instance's connection to Redis.
    async fn connect(url: &str) -> redis::aio::ConnectionManager {
        let client = redis::Client::open(url).unwrap();
        redis::aio::ConnectionManager::new(client).await.unwrap()
    }

    /// `a` and `b` are two instances' handles on the same breakers.
    async fn full_cycle(a: Arc<dyn Breakers>, b: Arc<dyn Breakers>) {
        for _ in 0..4 {
            assert_eq!(a.acquire("p").await.unwrap(), Permit::Allowed);
            a.record("p", Permit::Allowed, false).await.unwrap();
        }
        assert_eq!(b.snapshot("p").await.unwrap().failures, 4);
        b.record("p", Permit::Allowed, false).await.unwrap();
        assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Open);
        assert!(
            !b.acquire("p").await.unwrap().is_allowed(),
            "open for every instance"
        );
        assert_eq!(
            a.acquire("other").await.unwrap(),
            Permit::Allowed,
            "per provider"
        );

        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(a.acquire("p").await.unwrap(), Permit::Trial);
        assert!(
            !b.acquire("p").await.unwrap().is_allowed(),
            "one trial across instances"
        );
        a.record("p", Permit::Trial, true).await.unwrap();
        assert_eq!(b.snapshot("p").await.unwrap().state, BreakerState::HalfOpen);
        assert_eq!(b.acquire("p").await.unwrap(), Permit::Trial);
        b.record("p", Permit::Trial, true).await.unwrap();
        assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Closed);

        for _ in 0..5 {
            a.record("p", Permit::Allowed, false).await.unwrap();
        }
        assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Open);
        b.reset("p").await.unwrap();
        assert_eq!(
            a.acquire("p").await.unwrap(),
            Permit::Allowed,
            "reset closes it"
        );
    }

    #[tokio::test]
    async fn redis() {
        let Some(url) = crate::support::redis_url().await else {
            return;
        };
        let prefix = crate::support::redis_prefix();
        let conn = || connect(&url);
        let a = Arc::new(RedisBreakers::new(conn().await, &prefix, POLICY));
        let b = Arc::new(RedisBreakers::new(conn().await, &prefix, POLICY));
        full_cycle(a, b).await;
        crate::support::cleanup_redis_prefix(&url, &prefix).await;
    }

    /// An instance trusts a closed breaker it read from Redis for its sync interval, no longer:
    /// a breaker another instance opened is skipped here once that interval passes. Its own
    /// failures count at once, and a success clears earlier failures.
    #[tokio::test]
    async fn redis_view_of_a_closed_breaker_expires() {
        let Some(url) = crate::support::redis_url().await else {
            return;
        };
        let prefix = crate::support::redis_prefix();
        let conn = || connect(&url);
        let sync = Duration::from_millis(200);
        let policy = BreakerPolicy {
            open_for: Duration::from_secs(60),
            ..POLICY
        };
        let a = RedisBreakers::new(conn().await, &prefix, policy).with_sync(sync);
        let b = RedisBreakers::new(conn().await, &prefix, policy).with_sync(sync);

        for _ in 0..3 {
            a.record("q", Permit::Allowed, false).await.unwrap();
        }
        assert_eq!(b.snapshot("q").await.unwrap().failures, 3);
        a.record("q", Permit::Allowed, true).await.unwrap();
        assert_eq!(
            b.snapshot("q").await.unwrap().failures,
            0,
            "a success clears"
        );

        assert_eq!(a.acquire("q").await.unwrap(), Permit::Allowed);
        for _ in 0..5 {
            b.record("q", Permit::Allowed, false).await.unwrap();
        }
        assert_eq!(b.snapshot("q").await.unwrap().state, BreakerState::Open);
        // `a` read "closed" just now and may go on trusting it for `sync`, never longer.
        tokio::time::sleep(sync + Duration::from_millis(50)).await;
        assert!(!a.acquire("q").await.unwrap().is_allowed());
        // Its own failure, counted in Redis, opens the breaker for it at once.
        b.reset("q").await.unwrap();
        assert_eq!(a.acquire("q").await.unwrap(), Permit::Allowed);
        for _ in 0..5 {
            a.record("q", Permit::Allowed, false).await.unwrap();
        }
        assert!(!a.acquire("q").await.unwrap().is_allowed());
        crate::support::cleanup_redis_prefix(&url, &prefix).await;
    }

    #[tokio::test]
    async fn memory() {
        let b = Arc::new(MemoryBreakers::new(POLICY));
        full_cycle(b.clone(), b).await;
    }
}

/// The hot-path pools open all their connections when the store connects, each having
/// prepared its statements (the completion's is the last the claim and outcome pool prepares),
/// so a fresh server's first submits and outcomes do not wait for connections or statement
/// preparation.
mod postgres_hot_pool_is_warm_at_start {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some((store, url)) = crate::support::pg_store().await else {
            return;
        };
        let pool = store.pool().clone();
        crate::support::run_then_cleanup(
            async move {
                // Each connection's last statement is the last one it prepared.
                let warm = |last: &'static str| {
                    let pool = pool.clone();
                    async move {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT count(*) FROM pg_stat_activity \
                             WHERE datname = current_database() AND pid <> pg_backend_pid() \
                               AND query LIKE $1",
                        )
                        .bind(last)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                    }
                };
                // One each for the claim and outcome loops, plus one to spare.
                assert_eq!(
                    warm("WITH input AS (%UPDATE tasks t SET status = 'completed'%").await,
                    3,
                    "claim and outcome connections with their statements prepared"
                );
                // One for the submit loop, plus one to spare.
                assert_eq!(
                    warm("WITH input AS (%INSERT INTO tasks%").await,
                    2,
                    "submit connections with their statement prepared"
                );
                drop(store);
            },
            crate::support::drop_pg_database(&url),
        )
        .await;
    }
}
