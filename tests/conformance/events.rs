//! Task events on both databases: every transition recorded, in order, with its data.

use std::sync::Arc;

use ai_integration_service::domain::{TaskEventType, TaskId};
use ai_integration_service::store::{Outcome, TaskStoreTesting};
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;
use crate::store_tests;

async fn events_record_every_transition_in_order(store: Arc<dyn TaskStoreTesting>) {
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

store_tests!(events_record_every_transition_in_order);
