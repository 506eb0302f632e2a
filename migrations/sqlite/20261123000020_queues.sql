-- Named queues (seed 000's TaskQueue); see the PostgreSQL migration.
CREATE TABLE task_queues (
    name        TEXT    PRIMARY KEY,
    queue_type  TEXT    NOT NULL CHECK (queue_type IN ('standard', 'priority', 'rate_limited')),
    rate        TEXT,
    concurrency INTEGER NOT NULL CHECK (concurrency > 0),
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX task_queues_type ON task_queues (queue_type, paused);

ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
