-- Tasks: the single source of truth. The queue is an index that can be rebuilt from here.
CREATE TABLE tasks (
    id                  UUID PRIMARY KEY,
    user_id             VARCHAR(100) NOT NULL,
    task_type           VARCHAR(50)  NOT NULL,
    status              VARCHAR(20)  NOT NULL
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    priority            INTEGER      NOT NULL CHECK (priority BETWEEN 1 AND 10),
    payload             JSONB        NOT NULL,
    result              JSONB,
    error               JSONB,
    progress            INTEGER      NOT NULL DEFAULT 0,
    retry_count         INTEGER      NOT NULL DEFAULT 0,
    -- Every attempt ever started, including those before a dead-letter requeue.
    attempts            INTEGER      NOT NULL DEFAULT 0,
    max_retries         INTEGER      NOT NULL,
    idempotency_key     VARCHAR(200),
    related_entity_type VARCHAR(100),
    related_entity_id   VARCHAR(100),
    provider            VARCHAR(50),
    worker_id           VARCHAR(200),
    lease_expires_at    TIMESTAMPTZ,
    timeout_ms          BIGINT       NOT NULL,
    run_after           TIMESTAMPTZ  NOT NULL,
    created_at          TIMESTAMPTZ  NOT NULL,
    updated_at          TIMESTAMPTZ  NOT NULL,
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ
);

-- Seed 000's recommended indexes. A status change rewrites every index entry of the row (no
-- HOT update: status is indexed), so indexes whose queries only look at some rows are partial:
-- retry candidates are failed tasks, worker and provider lookups need a worker or provider.
CREATE INDEX tasks_status_created ON tasks (status, created_at);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_type_status ON tasks (task_type, status);
CREATE INDEX tasks_retry ON tasks (retry_count, status, updated_at) WHERE status = 'failed';
CREATE INDEX tasks_provider_status ON tasks (provider, status) WHERE provider IS NOT NULL;
CREATE INDEX tasks_worker_status ON tasks (worker_id, status) WHERE worker_id IS NOT NULL;
CREATE INDEX tasks_related ON tasks (related_entity_type, related_entity_id)
    WHERE related_entity_id IS NOT NULL;
-- Pending work in queue order, for rebuilding the queue.
CREATE INDEX tasks_pending_order ON tasks (priority DESC, created_at) WHERE status = 'pending';
-- NULL keys are distinct, so tasks without a key never conflict.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key);

-- Every state change, written in the same transaction as the change itself.
CREATE TABLE task_events (
    id          BIGSERIAL PRIMARY KEY,
    task_id     UUID         NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id     VARCHAR(100) NOT NULL,
    event_type  VARCHAR(30)  NOT NULL,
    data        JSONB        NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);
CREATE INDEX task_events_user ON task_events (user_id, id);
