-- Per-user gapless event ids (see the PostgreSQL migration of the same name for why).
CREATE TABLE user_event_counters (
    user_id TEXT    PRIMARY KEY,
    last_id INTEGER NOT NULL
);

ALTER TABLE task_events ADD COLUMN user_seq INTEGER NOT NULL DEFAULT 0;
UPDATE task_events SET user_seq = n.seq
FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS seq FROM task_events) AS n
WHERE task_events.id = n.id;
INSERT INTO user_event_counters (user_id, last_id)
SELECT user_id, MAX(user_seq) FROM task_events GROUP BY user_id;

CREATE UNIQUE INDEX task_events_user_seq ON task_events (user_id, user_seq);
DROP INDEX task_events_user;
CREATE INDEX task_events_created ON task_events (created_at);

CREATE TABLE notification_sessions (
    id                BLOB    PRIMARY KEY,
    user_id           TEXT    NOT NULL,
    instance          TEXT    NOT NULL,
    transport         TEXT    NOT NULL CHECK (transport IN ('websocket', 'sse', 'grpc')),
    connected_at      TEXT    NOT NULL,
    last_seen         TEXT    NOT NULL,
    last_delivered_id INTEGER NOT NULL DEFAULT 0,
    ended_at          TEXT
);
CREATE INDEX notification_sessions_user ON notification_sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX notification_sessions_seen ON notification_sessions (last_seen);
