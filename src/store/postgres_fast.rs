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

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::types::Json;
use uuid::Uuid;

use super::postgres::number_per_user;
use super::row::{TASK_COLUMNS, TaskRow, timeout_ms};
use super::sql::{Dialect, Lead, NewEvent, at_micros, finish_in_tx};
use super::{Finish, Inserted, Outcome, PgTaskStore, StoreError};
use crate::domain::{StoredEvent, Task, TaskId, UserId, WorkerId};

/// Submit: inserts a batch of tasks (passed as arrays) with their numbered events.
const INSERT_TASKS: &str = concat!(
    "WITH input AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::jsonb[], \
         $6::int[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::timestamptz[], \
         $12::text[], $13::text[], $14::int[], $15::text[], $16::timestamptz[], \
         $17::timestamptz[]) \
       WITH ORDINALITY AS u(id, user_id, task_type, priority, payload, max_retries, \
         idempotency_key, related_entity_type, related_entity_id, timeout_ms, at, queue, \
         status, attempts, worker_id, lease_expires_at, started_at, ord) \
     ), ins AS ( \
       INSERT INTO tasks (id, user_id, task_type, status, priority, payload, progress, \
         retry_count, max_retries, idempotency_key, related_entity_type, \
         related_entity_id, timeout_ms, run_after, created_at, updated_at, queue, \
         attempts, worker_id, lease_expires_at, started_at) \
       SELECT id, user_id, task_type, status, priority, payload, 0, 0, max_retries, \
         idempotency_key, related_entity_type, related_entity_id, timeout_ms, at, at, \
         COALESCE(started_at, at), queue, attempts, worker_id, lease_expires_at, started_at \
       FROM input ORDER BY ord \
       ON CONFLICT DO NOTHING \
       RETURNING id, user_id, task_type, priority, created_at, worker_id, attempts, \
         started_at \
     ), new_events AS ( \
       SELECT id, user_id, 0 AS step, 'TaskCreated' AS event_type, \
         jsonb_build_object('status', 'pending', 'task_type', task_type, \
           'priority', priority) AS data, created_at AS at \
       FROM ins \
       UNION ALL \
       SELECT id, user_id, 1, 'TaskStarted', jsonb_build_object('status', 'processing', \
         'worker_id', worker_id, 'attempt', attempts), started_at \
       FROM ins WHERE worker_id IS NOT NULL \
     ), ",
    number_per_user!("new_events", "r.step, r.at, r.id"),
    ", events AS ( \
       INSERT INTO task_events (task_id, user_id, user_seq, event_type, data, created_at) \
       SELECT id, user_id, user_seq, event_type, data, at FROM numbered \
     ) \
     SELECT id, step, user_seq FROM numbered",
);

/// Claim: moves pending tasks to `processing` under a worker, with their `TaskStarted` events.
static CLAIM_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        concat!(
            "WITH claimed AS ( \
               UPDATE tasks SET status = 'processing', attempts = attempts + 1, \
                 worker_id = $1, lease_expires_at = $2, started_at = $3, updated_at = $3 \
               WHERE id = ANY($4) AND status = 'pending' \
               RETURNING {columns} \
             ), ",
            number_per_user!("claimed", "r.id"),
            ", events AS ( \
               INSERT INTO task_events (task_id, user_id, user_seq, event_type, data, \
                 created_at) \
               SELECT id, user_id, user_seq, 'TaskStarted', jsonb_build_object('status', \
                 'processing', 'worker_id', $1::text, 'attempt', attempts), $3 FROM numbered \
             ) \
             SELECT {columns}, user_seq FROM numbered"
        ),
        columns = TASK_COLUMNS
    )
});

/// Completion: applies a batch of completions whose worker still holds the task, with their
/// `TaskCompleted` events.
const COMPLETE_TASKS: &str = concat!(
    "WITH input AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], \
         $5::timestamptz[]) WITH ORDINALITY AS u(id, worker_id, result, provider, at, ord) \
     ), done AS ( \
       UPDATE tasks t SET status = 'completed', progress = 100, result = i.result, \
         provider = i.provider, completed_at = i.at, updated_at = i.at, \
         worker_id = NULL, lease_expires_at = NULL \
       FROM input i \
       WHERE t.id = i.id AND t.status = 'processing' AND t.worker_id = i.worker_id \
       RETURNING t.id, t.user_id, i.provider, i.at, i.ord \
     ), ",
    number_per_user!("done", "r.ord"),
    ", events AS ( \
       INSERT INTO task_events (task_id, user_id, user_seq, event_type, data, created_at) \
       SELECT id, user_id, user_seq, 'TaskCompleted', jsonb_build_object('status', \
         'completed', 'provider', provider), at FROM numbered \
     ) \
     SELECT ord, user_id, user_seq FROM numbered",
);

/// What each connection of the submit pool prepares as it opens.
pub(super) const SUBMIT_STATEMENTS: [&str; 1] = [INSERT_TASKS];

/// What each connection of the asynchronous-commit pool prepares as it opens.
pub(super) static FAST_STATEMENTS: LazyLock<[&'static str; 2]> =
    LazyLock::new(|| [CLAIM_TASKS.as_str(), COMPLETE_TASKS]);

/// A claimed task and the per-user id of its `TaskStarted` event.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    task: TaskRow,
    user_seq: i64,
}

impl PgTaskStore {
    pub(super) async fn insert_tasks_impl(
        &self,
        tasks: Vec<Task>,
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
        let mut queues = Vec::with_capacity(n);
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
        self.publisher.publish(stored);
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
            .fetch_optional(&self.pool)
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

    pub(super) async fn claim_impl(
        &self,
        ids: &[TaskId],
        worker: &WorkerId,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
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
        self.publisher.publish(stored);
        Ok(tasks)
    }

    pub(super) async fn finish_impl(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
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
        self.publisher.publish(stored);
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
