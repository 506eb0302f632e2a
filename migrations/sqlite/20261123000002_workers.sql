CREATE TABLE workers (
    id              TEXT PRIMARY KEY,
    instance        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'stopped', 'dead')),
    started_at      TEXT NOT NULL,
    last_heartbeat  TEXT NOT NULL
);
CREATE INDEX workers_status_heartbeat ON workers (status, last_heartbeat);

CREATE INDEX tasks_processing_lease ON tasks (lease_expires_at) WHERE status = 'processing';
