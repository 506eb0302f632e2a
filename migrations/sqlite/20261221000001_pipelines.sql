-- Pipeline events are stored in task_events under their session's id (see
-- domain/event.rs), which no task has: drop the foreign key from task_events to tasks, as
-- the PostgreSQL schema did in 20261202000002 (every delete of a task deletes its events
-- itself). SQLite cannot drop a constraint, so the table is rebuilt with the same columns,
-- rows and indexes.
CREATE TABLE task_events_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     BLOB    NOT NULL,
    user_id     TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    user_seq    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO task_events_new (id, task_id, user_id, event_type, data, created_at, user_seq)
SELECT id, task_id, user_id, event_type, data, created_at, user_seq FROM task_events;
DROP TABLE task_events;
ALTER TABLE task_events_new RENAME TO task_events;
CREATE INDEX task_events_task ON task_events (task_id, id);
CREATE UNIQUE INDEX task_events_user_seq ON task_events (user_id, user_seq);
CREATE INDEX task_events_created ON task_events (created_at);

-- Pipeline sessions (see the PostgreSQL migration of the same name). UUIDs are 16-byte blobs,
-- times RFC 3339 text in UTC, JSON as text.
CREATE TABLE pipeline_sessions (
    id           BLOB    PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    pipeline     TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    status       TEXT    NOT NULL
        CHECK (status IN ('pending', 'processing', 'completed', 'partially_failed', 'cancelled')),
    item_count   INTEGER NOT NULL,
    error        TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    finished_at  TEXT
);
CREATE INDEX pipeline_sessions_user ON pipeline_sessions (user_id, created_at DESC, id DESC);
CREATE INDEX pipeline_sessions_open ON pipeline_sessions (updated_at)
    WHERE status IN ('pending', 'processing');

CREATE TABLE pipeline_items (
    session_id BLOB    NOT NULL REFERENCES pipeline_sessions (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    item_id    TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    PRIMARY KEY (session_id, position),
    UNIQUE (session_id, item_id)
);
CREATE INDEX pipeline_items_open ON pipeline_items (session_id)
    WHERE status IN ('pending', 'processing');

CREATE TABLE pipeline_stages (
    session_id  BLOB    NOT NULL,
    position    INTEGER NOT NULL,
    stage_index INTEGER NOT NULL,
    stage       TEXT    NOT NULL,
    status      TEXT    NOT NULL
        CHECK (status IN ('waiting', 'ready', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
    task_id     BLOB,
    result      TEXT,
    error       TEXT,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (session_id, position, stage_index),
    FOREIGN KEY (session_id, position) REFERENCES pipeline_items (session_id, position)
        ON DELETE CASCADE
);
CREATE INDEX pipeline_stages_open ON pipeline_stages (session_id, status, position)
    WHERE status IN ('ready', 'running');
CREATE INDEX pipeline_stages_task ON pipeline_stages (task_id) WHERE task_id IS NOT NULL;
