//! Tasks on both databases: insert and idempotency, a task inserted already started, save,
//! delete and cancel.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::domain::{
    ErrorClass, Priority, Task, TaskError, TaskEventType, TaskId, TaskStatus,
};
use ai_integration_service::store::{Inserted, TaskFilter, TaskStoreTesting};
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;
use crate::store_tests;

async fn insert_returns_created_tasks_and_they_are_findable(store: Arc<dyn TaskStoreTesting>) {
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

async fn idempotency_same_user_and_key_returns_first_task(store: Arc<dyn TaskStoreTesting>) {
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
async fn resubmitting_a_stored_id_answers_the_stored_task(store: Arc<dyn TaskStoreTesting>) {
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

async fn idempotency_keys_are_per_user(store: Arc<dyn TaskStoreTesting>) {
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

async fn idempotency_duplicates_within_one_batch(store: Arc<dyn TaskStoreTesting>) {
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

async fn concurrent_duplicate_inserts_yield_one_row(store: Arc<dyn TaskStoreTesting>) {
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

async fn large_batches_span_chunks(store: Arc<dyn TaskStoreTesting>) {
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

async fn save_round_trips_every_field(store: Arc<dyn TaskStoreTesting>) {
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

async fn delete_removes_task_and_events(store: Arc<dyn TaskStoreTesting>) {
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
async fn insert_of_a_started_task(store: Arc<dyn TaskStoreTesting>) {
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

async fn cancel_pending_processing_and_terminal(store: Arc<dyn TaskStoreTesting>) {
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

store_tests!(
    insert_returns_created_tasks_and_they_are_findable,
    idempotency_same_user_and_key_returns_first_task,
    resubmitting_a_stored_id_answers_the_stored_task,
    idempotency_keys_are_per_user,
    idempotency_duplicates_within_one_batch,
    concurrent_duplicate_inserts_yield_one_row,
    large_batches_span_chunks,
    save_round_trips_every_field,
    delete_removes_task_and_events,
    insert_of_a_started_task,
    cancel_pending_processing_and_terminal,
);
