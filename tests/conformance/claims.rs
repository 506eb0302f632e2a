//! Claims and leases on both databases: one owner per task under concurrent claims,
//! heartbeats, expired leases, hand-backs at shutdown, stale workers and `still_held`.

use std::collections::HashSet;
use std::sync::Arc;

use ai_integration_service::domain::{
    ErrorClass, Task, TaskEventType, TaskId, TaskStatus, TraceContext,
};
use ai_integration_service::store::TaskStoreTesting;
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;
use crate::store_tests;

async fn claim_sets_processing_worker_and_lease(store: Arc<dyn TaskStoreTesting>) {
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

async fn concurrent_claims_hand_out_each_task_once(store: Arc<dyn TaskStoreTesting>) {
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

async fn cancelled_tasks_are_not_claimable(store: Arc<dyn TaskStoreTesting>) {
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

/// A heartbeat extends the leases of the tasks the worker names and still holds, and only those.
async fn heartbeat_renews_only_own_leases(store: Arc<dyn TaskStoreTesting>) {
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
async fn requeue_expired_counts_the_lost_attempt(store: Arc<dyn TaskStoreTesting>) {
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
async fn release_hands_back_without_counting(store: Arc<dyn TaskStoreTesting>) {
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
async fn stale_workers_are_reaped_once(store: Arc<dyn TaskStoreTesting>) {
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

/// `still_held` answers which running tasks a worker still owns.
async fn still_held_drops_cancelled_and_foreign_tasks(store: Arc<dyn TaskStoreTesting>) {
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

/// The submit's trace context is stored with the task and comes back with its claim and its
/// hand-back, so a worker on any instance (and every retry) continues the submit's trace.
async fn trace_context_is_stored_and_claimed_with_the_task(store: Arc<dyn TaskStoreTesting>) {
    let t0 = now();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traced = task("alice", t0);
    traced.trace_context = Some(TraceContext::parse(parent).unwrap());
    let untraced = task("alice", t0 + ms(1));
    insert(&store, vec![traced.clone(), untraced.clone()]).await;
    assert_eq!(
        get(&store, traced.id).await.trace_context,
        traced.trace_context
    );

    let w = worker("w");
    let claimed = store
        .claim(&[traced.id, untraced.id], &w, t0 + ms(1000), t0)
        .await
        .unwrap();
    let of = |id| {
        claimed
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .trace_context
            .clone()
    };
    assert_eq!(of(traced.id), traced.trace_context);
    assert_eq!(of(untraced.id), None);

    let released = store.release(&w, t0 + ms(2)).await.unwrap();
    assert!(released.iter().all(|t| t.trace_context == of(t.id)));
    let again = store
        .claim(&[traced.id], &worker("w2"), t0 + ms(1000), t0 + ms(3))
        .await
        .unwrap();
    assert_eq!(again[0].trace_context, traced.trace_context);
}

store_tests!(
    trace_context_is_stored_and_claimed_with_the_task,
    claim_sets_processing_worker_and_lease,
    concurrent_claims_hand_out_each_task_once,
    cancelled_tasks_are_not_claimable,
    heartbeat_renews_only_own_leases,
    requeue_expired_counts_the_lost_attempt,
    release_hands_back_without_counting,
    stale_workers_are_reaped_once,
    still_held_drops_cancelled_and_foreign_tasks,
);
