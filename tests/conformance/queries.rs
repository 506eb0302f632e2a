//! Listing and queries on both databases: pages newest first without gaps, filters, and the
//! repository's finders.

use std::collections::HashSet;
use std::sync::Arc;

use ai_integration_service::domain::{PageRequest, Task, TaskId, TaskStatus, TaskType};
use ai_integration_service::store::{Outcome, TaskFilter, TaskStoreTesting};
use chrono::TimeDelta;
use serde_json::json;

use crate::fixtures::*;
use crate::store_tests;

async fn list_pages_newest_first_without_gaps(store: Arc<dyn TaskStoreTesting>) {
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

async fn list_filters_by_status_and_type(store: Arc<dyn TaskStoreTesting>) {
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

async fn count_active_by_user(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_pending_tasks_in_queue_order(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_processing_tasks_by_provider(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_timed_out_tasks_by_lease(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_by_type_with_status_and_limit(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_by_related_entity(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_tasks_by_worker(store: Arc<dyn TaskStoreTesting>) {
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

async fn find_failed_tasks(store: Arc<dyn TaskStoreTesting>) {
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

/// Pages must not skip tasks whose `created_at` has sub-microsecond digits (as `Utc::now()`
/// has on Linux). SQLite keeps nanoseconds but the page token keeps microseconds, so every
/// task in the same microsecond after the page boundary is skipped.
async fn paging_with_sub_microsecond_timestamps(store: Arc<dyn TaskStoreTesting>) {
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
        crate::on_postgres(super::paging_with_sub_microsecond_timestamps).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        crate::on_sqlite(super::paging_with_sub_microsecond_timestamps).await;
    }
}

store_tests!(
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
);
