-- Tasks: the single source of truth. The queue is an index that can be rebuilt from here.
-- Same columns as the PostgreSQL schema; UUIDs are 16-byte blobs, times RFC 3339 text in UTC.
CREATE TABLE tasks (
    id                  BLOB PRIMARY KEY,
    user_id             TEXT    NOT NULL,
    task_type           TEXT    NOT NULL,
    status              TEXT    NOT NULL
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    priority            INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 10),
    payload             TEXT    NOT NULL,
    result              TEXT,
    error               TEXT,
    progress            INTEGER NOT NULL DEFAULT 0,
    retry_count         INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_retries         INTEGER NOT NULL,
    idempotency_key     TEXT,
    related_entity_type TEXT,
    related_entity_id   TEXT,
    provider            TEXT,
    worker_id           TEXT,
    lease_expires_at    TEXT,
    timeout_ms          INTEGER NOT NULL,
    run_after           TEXT    NOT NULL,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    started_at          TEXT,
    completed_at        TEXT
);

CREATE INDEX tasks_status_created ON tasks (status, created_at);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_type_status ON tasks (task_type, status);
CREATE INDEX tasks_retry ON tasks (retry_count, status, updated_at) WHERE status = 'failed';
CREATE INDEX tasks_provider_status ON tasks (provider, status) WHERE provider IS NOT NULL;
CREATE INDEX tasks_worker_status ON tasks (worker_id, status) WHERE worker_id IS NOT NULL;
CREATE INDEX tasks_related ON tasks (related_entity_type, related_entity_id)
    WHERE related_entity_id IS NOT NULL;
CREATE INDEX tasks_pending_order ON tasks (priority DESC, created_at) WHERE status = 'pending';
CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key);

CREATE TABLE task_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);
CREATE INDEX task_events_user ON task_events (user_id, id);
