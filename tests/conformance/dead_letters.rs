//! Dead letters on both databases: requeue and purge of failed tasks.

use std::sync::Arc;

use ai_integration_service::domain::{
    ErrorClass, PageRequest, TaskError, TaskEventType, TaskStatus,
};
use ai_integration_service::store::{Outcome, TaskFilter, TaskStoreTesting};

use crate::fixtures::*;
use crate::store_tests;

/// Dead letters: requeue resets retries but not the attempt count, keeps the last error and
/// adds an event; only failed tasks move; purge deletes only failed tasks; the error-class
/// filter reads the stored error.
async fn dead_letters_requeue_and_purge(store: Arc<dyn TaskStoreTesting>) {
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

    assert_eq!(store.count_dead_letters(100).await.unwrap(), 1);
    assert_eq!(store.count_dead_letters(0).await.unwrap(), 0, "capped");

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
    assert_eq!(store.count_dead_letters(100).await.unwrap(), 1);
    assert_eq!(store.purge_failed(&[dead.id, alive.id]).await.unwrap(), 1);
    assert_eq!(store.count_dead_letters(100).await.unwrap(), 0);
    assert!(store.find_by_id(dead.id).await.unwrap().is_none());
    assert!(store.events_for_task(dead.id).await.unwrap().is_empty());
    assert!(
        store.find_by_id(alive.id).await.unwrap().is_some(),
        "only failed tasks are purged"
    );
}

store_tests!(dead_letters_requeue_and_purge);
