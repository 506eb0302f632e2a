//! PostgreSQL's hot paths: submit and claim as single statements (a data-modifying CTE writes
//! the rows and their events together, autocommitted, in one round trip, with the batch passed
//! as arrays); completions as one `UNNEST` update and one events statement.
//!
//! Claims and completions commit on the asynchronous-commit pool, so a user's event counter
//! row is locked only while they run; outcomes then wait for a WAL flush barrier before anyone
//! hears of them (see `wal_flush.rs`). Submits commit synchronously, in one round trip instead
//! of a commit's and a barrier's: the submit loop has one batch in flight, so no submit waits
//! on another's lock, and a claim or outcome of the same user waits at most for one flush (at
//! 1,000 submits/s, submit p50 2.8-4.3 ms against 3.7-5.4 ms with the barrier; BENCHMARKS.md).

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::types::Json;
use uuid::Uuid;

use super::pools::warm_pool;
use super::prepared::{
    CLAIM_TASKS, COMPLETE_TASKS, FAST_STATEMENTS, INSERT_TASKS, SUBMIT_STATEMENTS,
};
use super::wal_flush::WalFlush;
use crate::domain::{StoredEvent, Task, TaskId, UserId, WorkerId};
use crate::store::row::{TASK_COLUMNS, TaskRow, timeout_ms};
use crate::store::sql::{Dialect, Lead, NewEvent, at_micros, finish_in_tx};
use crate::store::{AfterCommit, Finish, Inserted, Outcome, StoreError};

/// Connections of the asynchronous-commit pool: one each for the claim and outcome loops, and
/// one to spare.
const FAST_CONNECTIONS: u32 = 3;
/// Connections of the submit pool: the submit loop has one batch in flight; one to spare.
const SUBMIT_CONNECTIONS: u32 = 2;
/// Rows of `wal_flush_marks` that instances choose from.
const FLUSH_SLOTS: i32 = 1024;

/// A claimed task and the per-user id of its `TaskStarted` event.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    task: TaskRow,
    user_seq: i64,
}

/// The prepared single-statement submit, claim and completion, on warm connections of their
/// own.
#[derive(Clone)]
pub(super) struct OneTrip {
    /// Connections that commit without waiting for the WAL flush, for claims and outcomes:
    /// they hold a user's event counter row only while they run. An outcome, which must be
    /// durable before anyone hears of it, waits for [`Self::flush`] after.
    fast: PgPool,
    /// Connections for submits, which commit synchronously: one round trip where a commit
    /// and a barrier take two (see the top of this file).
    submits: PgPool,
    /// Waits for the WAL flush after a commit on [`Self::fast`].
    flush: WalFlush,
}

impl OneTrip {
    /// Opens both pools on `options` (no more connections than `max_connections` each), every
    /// connection with its statements prepared. Flush barriers commit on `sync`, which must
    /// commit synchronously.
    pub(super) async fn connect(
        options: &PgConnectOptions,
        max_connections: u32,
        sync: &PgPool,
    ) -> Result<Self, StoreError> {
        let fast = warm_pool(
            options.clone().options([("synchronous_commit", "off")]),
            FAST_CONNECTIONS.min(max_connections.max(1)),
            &*FAST_STATEMENTS,
        )
        .await?;
        let submits = warm_pool(
            options.clone(),
            SUBMIT_CONNECTIONS.min(max_connections.max(1)),
            &SUBMIT_STATEMENTS,
        )
        .await?;
        // Instances pick their barrier row at random: two rarely share one.
        let slot = rand::random_range(0..FLUSH_SLOTS);
        Ok(Self {
            fast,
            submits,
            flush: WalFlush::spawn(sync.clone(), slot),
        })
    }

    /// Submits `tasks` in one statement; looks up on `reads` the stored task of any that an
    /// idempotency key (or its id) made a duplicate. Hands the events to `after_commit`.
    pub(super) async fn insert_tasks(
        &self,
        tasks: Vec<Task>,
        reads: &PgPool,
        after_commit: &AfterCommit,
    ) -> Result<Vec<Inserted>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let tasks: Vec<Task> = tasks.into_iter().map(at_micros).collect();
        let n = tasks.len();
        let (mut ids, mut users, mut types, mut prios, mut payloads) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut retries, mut keys, mut rel_types, mut rel_ids, mut timeouts, mut ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut queues, mut traces) = (Vec::with_capacity(n), Vec::with_capacity(n));
        // Set for tasks that a worker of this instance starts directly (worker/dispatch.rs).
        let (mut statuses, mut attempts, mut workers, mut leases, mut starts) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for t in &tasks {
            ids.push(t.id.as_uuid());
            users.push(t.user_id.as_str().to_owned());
            types.push(t.task_type.as_str());
            prios.push(i32::from(t.priority.value()));
            payloads.push(Json(&t.payload));
            retries.push(t.max_retries as i32);
            keys.push(t.idempotency_key.clone());
            rel_types.push(t.related_entity.as_ref().map(|r| r.entity_type.clone()));
            rel_ids.push(t.related_entity.as_ref().map(|r| r.entity_id.clone()));
            timeouts.push(timeout_ms(t));
            ats.push(t.created_at);
            queues.push(t.queue.as_str());
            traces.push(t.trace_context.as_ref().map(|c| c.as_str()));
            statuses.push(t.status.as_str());
            attempts.push(t.attempts as i32);
            workers.push(t.worker_id.as_ref().map(WorkerId::as_str));
            leases.push(t.lease_expires_at);
            starts.push(t.started_at);
        }
        // Any conflict skips a row: an idempotency key seen before, or this very id when a
        // commit whose answer was lost is retried. Duplicates within the batch skip too.
        // Each new task's TaskCreated event (step 0), and TaskStarted (step 1) for a task
        // started directly, is numbered from its owner's counter row, bumped in the same
        // statement (users in sorted order: concurrent statements lock counters in the same
        // order and cannot deadlock). A task's TaskCreated always precedes its TaskStarted.
        let started = std::time::Instant::now();
        let numbered: Vec<(Uuid, i32, i64)> = sqlx::query_as(INSERT_TASKS)
            .bind(ids)
            .bind(users)
            .bind(types)
            .bind(prios)
            .bind(payloads)
            .bind(retries)
            .bind(keys)
            .bind(rel_types)
            .bind(rel_ids)
            .bind(timeouts)
            .bind(ats)
            .bind(queues)
            .bind(statuses)
            .bind(attempts)
            .bind(workers)
            .bind(leases)
            .bind(starts)
            .bind(traces)
            .fetch_all(&self.submits)
            .await?;
        tracing::debug!(
            tasks = n,
            statement_us = started.elapsed().as_micros() as u64,
            "insert"
        );
        let seqs: std::collections::HashMap<(Uuid, i32), i64> = numbered
            .into_iter()
            .map(|(id, step, seq)| ((id, step), seq))
            .collect();
        let mut stored: Vec<StoredEvent> = Vec::with_capacity(seqs.len());
        for t in &tasks {
            let id = t.id.as_uuid();
            if let Some(seq) = seqs.get(&(id, 0)) {
                stored.push(NewEvent::created(t).stored(u64::try_from(*seq).unwrap_or(0)));
            }
            if let (Some(seq), Some(started)) = (seqs.get(&(id, 1)), NewEvent::started(t)) {
                stored.push(started.stored(u64::try_from(*seq).unwrap_or(0)));
            }
        }
        stored.sort_by_key(|e| e.id);
        after_commit.publish(stored);
        let mut out = Vec::with_capacity(n);
        for task in tasks {
            if seqs.contains_key(&(task.id.as_uuid(), 0)) {
                out.push(Inserted {
                    task,
                    created: true,
                });
                continue;
            }
            let row: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE (id = $1 AND user_id = $2) \
                 OR (user_id = $2 AND idempotency_key = $3) ORDER BY created_at LIMIT 1"
            )))
            .bind(task.id.as_uuid())
            .bind(task.user_id.as_str())
            .bind(task.idempotency_key.as_deref())
            .fetch_optional(reads)
            .await?;
            let row = row.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "task {} was neither inserted nor found by id or idempotency key",
                    task.id
                ))
            })?;
            out.push(Inserted {
                task: row.try_into()?,
                created: false,
            });
        }
        Ok(out)
    }

    /// Claims those of `ids` still pending for `worker` in one statement. Hands the events to
    /// `after_commit`.
    pub(super) async fn claim(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        after_commit: &AfterCommit,
    ) -> Result<Vec<Task>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(TaskId::as_uuid).collect();
        // A claim need not wait for its WAL flush: if PostgreSQL crashes before the flush, the
        // claim is lost, the task is pending again and runs again (at least once), while the
        // worker's outcome no longer applies (its compare-and-set expects `processing`). So it
        // is one autocommitted statement on the asynchronous-commit pool, with no barrier.
        let rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM_TASKS.as_str())
            .bind(worker.as_str())
            .bind(lease_until)
            .bind(now)
            .bind(ids)
            .fetch_all(&self.fast)
            .await?;
        let mut tasks = Vec::with_capacity(rows.len());
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let task: Task = row.task.try_into()?;
            if let Some(event) = NewEvent::started(&task) {
                stored.push(event.stored(u64::try_from(row.user_seq).unwrap_or(0)));
            }
            tasks.push(task);
        }
        stored.sort_by_key(|e| e.id);
        after_commit.publish(stored);
        Ok(tasks)
    }

    /// Applies outcomes (completions alone in one statement) and waits for their WAL flush
    /// before it hands the events to `after_commit`.
    pub(super) async fn finish(
        &self,
        finishes: &[Finish],
        after_commit: &AfterCommit,
    ) -> Result<Vec<bool>, StoreError> {
        let all_completed = finishes
            .iter()
            .all(|f| matches!(f.outcome, Outcome::Completed { .. }));
        let (applied, stored) = if all_completed {
            // The common case, one statement: no transaction held open across round trips.
            self.complete_in_one_statement(finishes).await?
        } else {
            let mut tx = self.fast.begin().await?;
            let (applied, events) =
                finish_in_tx::<Postgres>(&mut tx, finishes, &mut Lead::none()).await?;
            // The events last: the user's counter row is locked from here to the commit.
            let stored = Postgres::insert_events(&mut tx, events).await?;
            tx.commit().await?;
            (applied, stored)
        };
        // A retry is pushed to the queue and an outcome announced only once it is durable.
        self.flush.wait().await?;
        after_commit.publish(stored);
        Ok(applied)
    }

    /// Completes `finishes` (all `Completed`) whose worker still holds the task, with their
    /// `TaskCompleted` events, in one autocommitted statement. Returns which applied and the
    /// events.
    async fn complete_in_one_statement(
        &self,
        finishes: &[Finish],
    ) -> Result<(Vec<bool>, Vec<StoredEvent>), StoreError> {
        let n = finishes.len();
        let (mut ids, mut workers, mut results, mut providers, mut ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for f in finishes {
            let Outcome::Completed { result, provider } = &f.outcome else {
                return Err(StoreError::Corrupt(
                    "a non-completion among completions".into(),
                ));
            };
            ids.push(f.task_id.as_uuid());
            workers.push(f.worker_id.as_str());
            results.push(Json(result));
            providers.push(provider.as_deref());
            ats.push(f.at);
        }
        // Events are numbered per user in input order, as `insert_events` does.
        let done: Vec<(i64, String, i64)> = sqlx::query_as(COMPLETE_TASKS)
            .bind(ids)
            .bind(workers)
            .bind(results)
            .bind(&providers[..])
            .bind(ats)
            .fetch_all(&self.fast)
            .await?;
        let mut applied = vec![false; n];
        let mut stored = Vec::with_capacity(done.len());
        for (ord, user, seq) in done {
            let i = usize::try_from(ord - 1)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| StoreError::Corrupt(format!("completion {ord} out of range")))?;
            applied[i] = true;
            let user = UserId::parse(&user)
                .map_err(|_| StoreError::Corrupt(format!("user_id {user:?}")))?;
            let f = &finishes[i];
            let event = NewEvent::completed(f.task_id, user, providers[i], f.at);
            stored.push(event.stored(u64::try_from(seq).unwrap_or(0)));
        }
        stored.sort_by_key(|e| e.id);
        Ok((applied, stored))
    }
}
