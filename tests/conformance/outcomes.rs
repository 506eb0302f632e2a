//! Outcomes on both databases: completion, retry and failure, each guarded by the worker that
//! holds the task.

use std::sync::Arc;

use ai_integration_service::domain::{ErrorClass, TaskError, TaskEventType, TaskId, TaskStatus};
use ai_integration_service::store::{Outcome, TaskStoreTesting};
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;
use crate::store_tests;

async fn finish_completed(store: Arc<dyn TaskStoreTesting>) {
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

async fn finish_is_guarded_by_worker_id(store: Arc<dyn TaskStoreTesting>) {
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

async fn finish_retry_returns_task_to_pending(store: Arc<dyn TaskStoreTesting>) {
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

async fn finish_failed(store: Arc<dyn TaskStoreTesting>) {
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

store_tests!(
    finish_completed,
    finish_is_guarded_by_worker_id,
    finish_retry_returns_task_to_pending,
    finish_failed,
);
