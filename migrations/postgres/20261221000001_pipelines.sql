-- Pipeline sessions (seed 004): a session holds items, each item one row per stage of the
-- session's pipeline. The definition is kept with the session, so a changed PIPELINES_FILE
-- never changes a session already running. Every stage run is an ordinary task (task_id).
CREATE TABLE pipeline_sessions (
    id           UUID         PRIMARY KEY,
    user_id      VARCHAR(100) NOT NULL,
    pipeline     VARCHAR(64)  NOT NULL,
    definition   JSONB        NOT NULL,
    status       VARCHAR(20)  NOT NULL
        CHECK (status IN ('pending', 'processing', 'completed', 'partially_failed', 'cancelled')),
    item_count   BIGINT       NOT NULL,
    error        TEXT,
    created_at   TIMESTAMPTZ  NOT NULL,
    -- Last activity (a stage started or ended, items added): expiry counts from here.
    updated_at   TIMESTAMPTZ  NOT NULL,
    -- Last heartbeat event: one instance sends each (compare-and-set).
    heartbeat_at TIMESTAMPTZ  NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX pipeline_sessions_user ON pipeline_sessions (user_id, created_at DESC, id DESC);
CREATE INDEX pipeline_sessions_open ON pipeline_sessions (updated_at)
    WHERE status IN ('pending', 'processing');

CREATE TABLE pipeline_items (
    session_id UUID         NOT NULL REFERENCES pipeline_sessions (id) ON DELETE CASCADE,
    position   BIGINT       NOT NULL,
    item_id    VARCHAR(200) NOT NULL,
    data       JSONB        NOT NULL,
    status     VARCHAR(20)  NOT NULL,
    PRIMARY KEY (session_id, position),
    UNIQUE (session_id, item_id)
);
CREATE INDEX pipeline_items_open ON pipeline_items (session_id)
    WHERE status IN ('pending', 'processing');

CREATE TABLE pipeline_stages (
    session_id  UUID        NOT NULL,
    position    BIGINT      NOT NULL,
    stage_index BIGINT      NOT NULL,
    stage       VARCHAR(64) NOT NULL,
    status      VARCHAR(20) NOT NULL
        CHECK (status IN ('waiting', 'ready', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    task_id     UUID,
    result      JSONB,
    error       TEXT,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, position, stage_index),
    FOREIGN KEY (session_id, position) REFERENCES pipeline_items (session_id, position)
        ON DELETE CASCADE
);
-- The scheduler's reads: a session's ready stages in item order, its running count.
CREATE INDEX pipeline_stages_open ON pipeline_stages (session_id, status, position)
    WHERE status IN ('ready', 'running');
-- A finished task finds its stage.
CREATE INDEX pipeline_stages_task ON pipeline_stages (task_id) WHERE task_id IS NOT NULL;
