//! The SQLite store's hot-path writes: submits, claims and outcomes of many callers in one
//! transaction.
//!
//! SQLite has one writer, so every write transaction waits for the one before it, and most of a
//! small transaction's cost is fixed: `BEGIN`, `COMMIT` and a trip to the connection's thread
//! for every statement. At 1,000 tasks/s the submits, claims and completions, each committed on
//! its own, kept the writer about 90 % busy and submits queued behind it. Here one loop takes
//! every write waiting when the writer frees up and commits them together: one transaction, one
//! statement per kind of write and one for all their events.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};
use tokio_util::task::TaskTracker;

use super::checkpoint::restart_wal_if_full;
use super::dialect::{events_after, insert_events_then};
use crate::domain::{NewEvent, StoredEvent, Task, TaskId, WorkerId};
use crate::group_commit::{BatchError, Batcher};
use crate::store::sql::{
    INSERT_CHUNK, Lead, claim_in_tx, cut_to_micros, finish_in_tx, insert_tasks_in_tx,
    push_tasks_insert,
};
use crate::store::{AfterCommit, Finish, Inserted, StoreError};

/// Most writes in one transaction.
const MAX_WRITES: usize = 256;

/// One caller's write.
#[derive(Clone)]
pub(super) enum Write {
    Insert(Vec<Task>),
    Claim {
        ids: Vec<TaskId>,
        worker: WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    Finish(Vec<Finish>),
}

/// What a [`Write`] returned.
pub(super) enum Written {
    Inserted(Vec<Inserted>),
    Claimed(Vec<Task>),
    Finished(Vec<bool>),
}

/// Hands writes to the loop: a [`Batcher`] with one loop, whose batch is one transaction (if
/// it fails, the batcher retries each write alone, so one caller's bad write cannot fail
/// another's). The loop ends once every clone is gone and it has written what it was given.
#[derive(Clone)]
pub(super) struct WriteQueue(Batcher<Write, Written, StoreError>);

impl WriteQueue {
    /// Starts the loop on `writer`; it hands each transaction's events to `publisher`.
    /// Before a transaction, when `wal_full` is raised, the loop checkpoints once itself (see
    /// `checkpoint.rs`).
    pub(super) fn spawn(
        writer: SqlitePool,
        publisher: AfterCommit,
        wal_full: Arc<AtomicBool>,
    ) -> Self {
        // The loop's lifetime is the store's, not the service's: nothing waits on this tracker.
        let batcher = Batcher::spawn(&TaskTracker::new(), 1, MAX_WRITES, move |writes| {
            let (writer, publisher, wal_full) =
                (writer.clone(), publisher.clone(), wal_full.clone());
            async move {
                restart_wal_if_full(&writer, &wal_full).await;
                let (count, started) = (writes.len(), std::time::Instant::now());
                let written = transaction(&writer, &publisher, writes).await;
                tracing::debug!(
                    writes = count,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "write transaction"
                );
                written
            }
        });
        Self(batcher)
    }

    /// Writes `write` (with whatever else is waiting) and returns its result.
    pub(super) async fn write(&self, write: Write) -> Result<Written, StoreError> {
        match self.0.call((), vec![write]).await {
            Ok(mut written) => written
                .pop()
                .ok_or_else(|| StoreError::Corrupt("write loop returned no answer".into())),
            // Each failed write has its own error: the Arc has no other owner.
            Err(BatchError::Failed(e)) => Err(std::sync::Arc::try_unwrap(e)
                .unwrap_or_else(|e| StoreError::Corrupt(e.to_string()))),
            Err(BatchError::Closed) => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }
}

/// Where a write's answer sits among the merged rows.
enum Part {
    Inserted(usize),
    Claimed(Vec<Task>),
    Finished(usize),
}

/// One transaction for all of `writes`: the inserts merged into one, each claim, the outcomes
/// merged into one, then every event. Returns one answer per write, in order.
async fn transaction(
    writer: &SqlitePool,
    publisher: &AfterCommit,
    writes: Vec<Write>,
) -> Result<Vec<Written>, StoreError> {
    let mut conn = writer.acquire().await?;
    // BEGIN and COMMIT by hand: the BEGIN goes in the same trip as the first statement, the
    // COMMIT in the same trip as the events.
    let result = match into_new_submits(writes) {
        // Most transactions at a steady rate are one submit of new tasks: one trip.
        Ok(mut submits) => match insert_new_tasks_and_commit(&mut conn, &mut submits).await {
            Ok(stored) => Ok((all_created(submits), stored)),
            Err(e) if is_unique_violation(&e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                statements(&mut conn, submits.into_iter().map(Write::Insert).collect()).await
            }
            Err(e) => Err(e),
        },
        Err(writes) => statements(&mut conn, writes).await,
    };
    match result {
        Ok((written, stored)) => {
            publisher.publish(stored);
            Ok(written)
        }
        Err(e) => {
            // Fails harmlessly when the failed statement was the COMMIT of a transaction
            // SQLite already ended.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// The submits' tasks if every write is a submit and no task has an idempotency key: tasks
/// that can only be new (their ids are fresh), so they need not come back from the insert.
/// Otherwise `writes` unchanged.
fn into_new_submits(writes: Vec<Write>) -> Result<Vec<Vec<Task>>, Vec<Write>> {
    let new = writes
        .iter()
        .all(|w| matches!(w, Write::Insert(t) if t.iter().all(|t| t.idempotency_key.is_none())));
    if !new {
        return Err(writes);
    }
    Ok(writes
        .into_iter()
        .filter_map(|w| match w {
            Write::Insert(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// Each submit's answer when all of its tasks were inserted.
fn all_created(submits: Vec<Vec<Task>>) -> Vec<Written> {
    submits
        .into_iter()
        .map(|tasks| {
            Written::Inserted(
                tasks
                    .into_iter()
                    .map(|task| Inserted {
                        task,
                        created: true,
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// Submits new tasks, none with an idempotency key, in one trip to the connection's
/// thread: `BEGIN`, their rows, their events and `COMMIT` (the general path takes two: the
/// rows' ids must come back before the events can be written). The rows have no conflict
/// clause: an id stored already (a retry of a commit whose answer was lost) fails the
/// statement, and the caller rolls back and takes the general path. Cuts the tasks'
/// timestamps to microseconds, as stored.
async fn insert_new_tasks_and_commit(
    conn: &mut SqliteConnection,
    submits: &mut [Vec<Task>],
) -> Result<Vec<StoredEvent>, StoreError> {
    submits.iter_mut().flatten().for_each(cut_to_micros);
    let mut qb = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
    for chunk in submits.iter().flat_map(|t| t.chunks(INSERT_CHUNK)) {
        push_tasks_insert(&mut qb, chunk);
        qb.push("; ");
    }
    let events = NewEvent::for_new_tasks(submits.iter().flatten());
    events_after(conn, qb, events, "COMMIT").await
}

/// The statements of [`transaction`], from its `BEGIN` to its `COMMIT`.
async fn statements(
    tx: &mut SqliteConnection,
    writes: Vec<Write>,
) -> Result<(Vec<Written>, Vec<StoredEvent>), StoreError> {
    let mut lead = Lead::begin_immediate();
    let mut parts = Vec::with_capacity(writes.len());
    let (mut tasks, mut finishes, mut events) = (Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        match write {
            Write::Insert(t) => {
                parts.push(Part::Inserted(t.len()));
                tasks.extend(t);
            }
            Write::Claim {
                ids,
                worker,
                lease_until,
                now,
            } => {
                let (claimed, started) =
                    claim_in_tx::<Sqlite>(tx, &ids, &worker, lease_until, now, &mut lead).await?;
                events.extend(started);
                parts.push(Part::Claimed(claimed));
            }
            Write::Finish(f) => {
                parts.push(Part::Finished(f.len()));
                finishes.extend(f);
            }
        }
    }
    let (inserted, created) = insert_tasks_in_tx::<Sqlite>(tx, tasks, &mut lead).await?;
    events.extend(created);
    let (applied, ended) = finish_in_tx::<Sqlite>(tx, &finishes, &mut lead).await?;
    events.extend(ended);
    let stored = insert_events_then(tx, events, &mut lead, "COMMIT").await?;

    let (mut inserted, mut applied) = (inserted.into_iter(), applied.into_iter());
    let written = parts
        .into_iter()
        .map(|part| match part {
            Part::Inserted(n) => Written::Inserted(inserted.by_ref().take(n).collect()),
            Part::Claimed(tasks) => Written::Claimed(tasks),
            Part::Finished(n) => Written::Finished(applied.by_ref().take(n).collect()),
        })
        .collect();
    Ok((written, stored))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use crate::domain::{Task, TaskEventType, UserId, WorkerId};
    use crate::store::{Finish, NotificationStore, Outcome, SqliteTaskStore, TaskStore};

    /// Many callers at once: their writes share transactions, every one gets its own answer,
    /// and the user's events are numbered without gaps or repeats.
    #[tokio::test]
    async fn concurrent_submits_claims_and_outcomes_each_get_their_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteTaskStore::open(dir.path()).await.unwrap();
        let user = UserId::parse("u1").unwrap();
        let worker = WorkerId::generate("test");
        const N: usize = 200;

        let submits = (0..N).map(|_| {
            let (store, task) = (store.clone(), Task::echo_for_test("u1"));
            tokio::spawn(async move { store.insert_tasks(vec![task]).await })
        });
        let mut ids = Vec::new();
        for s in submits {
            let inserted = s.await.unwrap().unwrap();
            assert_eq!(inserted.len(), 1);
            assert!(inserted[0].created);
            ids.push(inserted[0].task.id);
        }

        let now = Utc::now();
        let lease = now + chrono::Duration::seconds(30);
        let claims = ids.chunks(3).map(|chunk| {
            let (store, chunk, worker) = (store.clone(), chunk.to_vec(), worker.clone());
            tokio::spawn(async move {
                let claimed = store.claim(&chunk, &worker, lease, now).await.unwrap();
                assert_eq!(claimed.len(), chunk.len());
                let finishes: Vec<Finish> = chunk
                    .iter()
                    .map(|&task_id| Finish {
                        task_id,
                        worker_id: worker.clone(),
                        outcome: Outcome::Completed {
                            result: json!({"ok": true}),
                            provider: None,
                        },
                        at: Utc::now(),
                    })
                    .collect();
                store.finish(&finishes).await.unwrap()
            })
        });
        for c in claims {
            assert!(c.await.unwrap().iter().all(|&applied| applied));
        }

        let events = store.events_after(&user, 0, None, 10_000).await.unwrap();
        let numbered: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(numbered, (1..=3 * N as u64).collect::<Vec<_>>());
        for kind in [
            TaskEventType::TaskCreated,
            TaskEventType::TaskStarted,
            TaskEventType::TaskCompleted,
        ] {
            assert_eq!(events.iter().filter(|e| e.event.kind == kind).count(), N);
        }
    }
}
