//! The SQLite store's hot-path writes: submits, claims and outcomes of many callers in one
//! transaction.
//!
//! SQLite has one writer, so every write transaction waits for the one before it, and most of a
//! small transaction's cost is fixed: `BEGIN`, `COMMIT` and a trip to the connection's thread
//! for every statement. At 1,000 tasks/s the submits, claims and completions, each committed on
//! its own, kept the writer about 70 % busy and submits queued behind it. Here one loop takes
//! every write waiting when the writer frees up and commits them together: one transaction, one
//! statement per kind of write and one for all their events.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sql::Lead;
use super::{AfterCommit, Finish, Inserted, SqliteTaskStore, StoreError};
use crate::domain::{Task, TaskId, WorkerId};

/// Writes waiting for the loop; callers wait when it is full.
const QUEUE_DEPTH: usize = 1024;
/// Most rows (tasks, claim ids, outcomes) in one transaction.
const MAX_ROWS: usize = 2000;

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

impl Write {
    fn rows(&self) -> usize {
        match self {
            Self::Insert(tasks) => tasks.len(),
            Self::Claim { ids, .. } => ids.len(),
            Self::Finish(finishes) => finishes.len(),
        }
    }
}

/// What a [`Write`] returned.
pub(super) enum Written {
    Inserted(Vec<Inserted>),
    Claimed(Vec<Task>),
    Finished(Vec<bool>),
}

type Reply = oneshot::Sender<Result<Written, StoreError>>;

/// Hands writes to the loop. The loop ends once every clone is gone and it has written what
/// it was given.
#[derive(Clone)]
pub(super) struct WriteQueue(mpsc::Sender<(Write, Reply)>);

impl WriteQueue {
    /// Starts the loop on `writer`; it hands each transaction's events to `publisher`.
    pub(super) fn spawn(writer: SqlitePool, publisher: AfterCommit) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Write, Reply)>(QUEUE_DEPTH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut rows = first.0.rows();
                let mut batch = vec![first];
                while rows < MAX_ROWS {
                    match rx.try_recv() {
                        Ok(next) => {
                            rows += next.0.rows();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let (writes, started) = (batch.len(), std::time::Instant::now());
                write_batch(&writer, &publisher, batch).await;
                tracing::debug!(
                    writes,
                    rows,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "SQLite write transaction"
                );
            }
        });
        Self(tx)
    }

    /// Writes `write` (with whatever else is waiting) and returns its result.
    pub(super) async fn write(&self, write: Write) -> Result<Written, StoreError> {
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        self.0.send((write, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Commits `batch` in one transaction and answers every caller. If that fails, each write is
/// tried on its own, so one caller's bad write cannot fail another's.
async fn write_batch(writer: &SqlitePool, publisher: &AfterCommit, batch: Vec<(Write, Reply)>) {
    if batch.len() > 1 {
        let writes = batch.iter().map(|(w, _)| w.clone()).collect();
        if let Ok(written) = transaction(writer, publisher, writes).await {
            for ((_, reply), result) in batch.into_iter().zip(written) {
                let _ = reply.send(Ok(result));
            }
            return;
        }
    }
    for (write, reply) in batch {
        let result = transaction(writer, publisher, vec![write])
            .await
            .map(|mut w| w.remove(0));
        let _ = reply.send(result);
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
    let result = statements(&mut conn, writes).await;
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

/// The statements of [`transaction`], from its `BEGIN` to its `COMMIT`.
async fn statements(
    tx: &mut sqlx::SqliteConnection,
    writes: Vec<Write>,
) -> Result<(Vec<Written>, Vec<crate::domain::StoredEvent>), StoreError> {
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
                    SqliteTaskStore::claim_in_tx(tx, &ids, &worker, lease_until, now, &mut lead)
                        .await?;
                events.extend(started);
                parts.push(Part::Claimed(claimed));
            }
            Write::Finish(f) => {
                parts.push(Part::Finished(f.len()));
                finishes.extend(f);
            }
        }
    }
    let (inserted, created) = SqliteTaskStore::insert_tasks_in_tx(tx, tasks, &mut lead).await?;
    events.extend(created);
    let (applied, ended) = SqliteTaskStore::finish_in_tx(tx, &finishes, &mut lead).await?;
    events.extend(ended);
    let stored = SqliteTaskStore::insert_events_then(tx, events, &mut lead, "COMMIT").await?;

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
    use std::time::Duration;

    use chrono::Utc;
    use serde_json::json;

    use crate::domain::{NewTask, Task, TaskEventType, UserId, WorkerId};
    use crate::store::{Finish, NotificationStore, Outcome, SqliteTaskStore, TaskStore};

    fn echo(user: &UserId) -> Task {
        let new = NewTask::parse(user.clone(), "echo", json!({}), None, None, None).unwrap();
        Task::create(new, 2, Duration::from_secs(300), Utc::now())
    }

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
            let (store, task) = (store.clone(), echo(&user));
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
