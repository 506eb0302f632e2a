-- Worker pools that claim tasks (seed 000's register_worker / heartbeat / find_stale_workers).
CREATE TABLE workers (
    id              VARCHAR(200) PRIMARY KEY,
    instance        VARCHAR(200) NOT NULL,
    status          VARCHAR(20)  NOT NULL CHECK (status IN ('active', 'stopped', 'dead')),
    started_at      TIMESTAMPTZ  NOT NULL,
    last_heartbeat  TIMESTAMPTZ  NOT NULL
);
CREATE INDEX workers_status_heartbeat ON workers (status, last_heartbeat);

-- Expired leases, for the reaper.
CREATE INDEX tasks_processing_lease ON tasks (lease_expires_at) WHERE status = 'processing';
