//! The one-trip path's statements, prepared by each of its connections as it opens: submit,
//! claim and completion, each a data-modifying CTE that writes the rows and their numbered
//! events together, with the batch passed as arrays.

use std::sync::LazyLock;

use super::numbering::number_per_user;
use crate::store::row::TASK_COLUMNS;

/// Submit: inserts a batch of tasks (passed as arrays) with their numbered events.
pub(super) const INSERT_TASKS: &str = concat!(
    "WITH input AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::jsonb[], \
         $6::int[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::timestamptz[], \
         $12::text[], $13::text[], $14::int[], $15::text[], $16::timestamptz[], \
         $17::timestamptz[], $18::text[]) \
       WITH ORDINALITY AS u(id, user_id, task_type, priority, payload, max_retries, \
         idempotency_key, related_entity_type, related_entity_id, timeout_ms, at, queue, \
         status, attempts, worker_id, lease_expires_at, started_at, trace_context, ord) \
     ), ins AS ( \
       INSERT INTO tasks (id, user_id, task_type, status, priority, payload, progress, \
         retry_count, max_retries, idempotency_key, related_entity_type, \
         related_entity_id, timeout_ms, run_after, created_at, updated_at, queue, \
         attempts, worker_id, lease_expires_at, started_at, trace_context) \
       SELECT id, user_id, task_type, status, priority, payload, 0, 0, max_retries, \
         idempotency_key, related_entity_type, related_entity_id, timeout_ms, at, at, \
         COALESCE(started_at, at), queue, attempts, worker_id, lease_expires_at, started_at, \
         trace_context \
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
pub(super) static CLAIM_TASKS: LazyLock<String> = LazyLock::new(|| {
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
pub(super) const COMPLETE_TASKS: &str = concat!(
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
