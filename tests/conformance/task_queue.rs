//! The task queue on Redis and in-process: priority and FIFO order, deduplication, blocking
//! pops, delayed entries and concurrent poppers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_integration_service::domain::{Priority, TaskId};
use ai_integration_service::queue::{Promoted, QueueEntry, TaskQueue};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::fixtures::ms;
use crate::support::queue_tests;

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

    // Duplicates within one push count once; the answer counts what was not queued yet.
    let c = entry(5);
    assert_eq!(queue.push(&[c, c, c]).await.unwrap(), 1);
    assert_eq!(queue.push(&[c, entry(5)]).await.unwrap(), 1);
    drain(&queue).await;
    queue.push(&[c]).await.unwrap();
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

/// Depth by priority level reads ready entries per level and delayed ones apart.
async fn depth_by_level_counts_each_level(queue: Arc<dyn TaskQueue>) {
    let name = queue.queues().specs()[0].name;
    let ready: Vec<QueueEntry> = [1, 3, 4, 6, 6, 7, 9, 10, 10, 10]
        .into_iter()
        .map(entry)
        .collect();
    queue.push(&ready).await.unwrap();
    queue
        .push_delayed(&[entry(5), entry(10)], now_ms() + TimeDelta::hours(1))
        .await
        .unwrap();
    let depth = queue.depth_by_level(name).await.unwrap();
    // low (1-3), normal (4-6), high (7-9), critical (10).
    assert_eq!(depth.ready, [2, 3, 2, 3]);
    assert_eq!(depth.delayed, 2);
    assert_eq!(queue.depth(name).await.unwrap(), 12);
    queue.pop(4, Duration::ZERO).await.unwrap();
    assert_eq!(
        queue.depth_by_level(name).await.unwrap().ready,
        [2, 3, 1, 0]
    );
}

queue_tests!(
    depth_by_level_counts_each_level,
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
