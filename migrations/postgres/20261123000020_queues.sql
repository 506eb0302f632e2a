-- Named queues (seed 000's TaskQueue). The configuration (type, rate, concurrency) is written
-- from the environment at start; `paused` is operator state, shared by every instance and kept
-- across restarts.
CREATE TABLE task_queues (
    name        VARCHAR(64)  PRIMARY KEY,
    queue_type  VARCHAR(20)  NOT NULL CHECK (queue_type IN ('standard', 'priority', 'rate_limited')),
    rate        VARCHAR(50),
    concurrency INTEGER      NOT NULL CHECK (concurrency > 0),
    paused      BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ  NOT NULL,
    updated_at  TIMESTAMPTZ  NOT NULL
);
CREATE INDEX task_queues_type ON task_queues (queue_type, paused);

-- The queue each task was routed to. A constant default: no table rewrite. No index: only the
-- admin statistics group by it, and every index on `tasks` costs each status change a write.
ALTER TABLE tasks ADD COLUMN queue VARCHAR(64) NOT NULL DEFAULT 'default';
