-- Deep-dive chat sessions (seed 001's chat_sessions / chat_messages, issue 22). Same columns
-- as the PostgreSQL schema; UUIDs are 16-byte blobs, times RFC 3339 text in UTC, JSON text.
--
-- At most one active session per user and item, enforced by a partial unique index.
-- `turn_holder` / `turn_until` are the turn lock (one message answered at a time per
-- session); `deleted_at` is seed 000's logical delete.
CREATE TABLE chat_sessions (
    session_id    BLOB    PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    item_id       TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'closed', 'expired')),
    started_at    TEXT    NOT NULL,
    last_activity TEXT    NOT NULL,
    context       TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    turn_holder   BLOB,
    turn_until    TEXT,
    deleted_at    TEXT
);
CREATE UNIQUE INDEX chat_sessions_one_active ON chat_sessions (user_id, item_id)
    WHERE status = 'active';
CREATE INDEX chat_sessions_user_started ON chat_sessions (user_id, started_at DESC, session_id DESC);
CREATE INDEX chat_sessions_idle ON chat_sessions (last_activity) WHERE status = 'active';

CREATE TABLE chat_messages (
    message_id      BLOB    PRIMARY KEY,
    session_id      BLOB    NOT NULL REFERENCES chat_sessions (session_id),
    seq             INTEGER NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT    NOT NULL,
    tokens_used     INTEGER NOT NULL DEFAULT 0,
    provider        TEXT,
    model           TEXT,
    cost_micros     INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE UNIQUE INDEX chat_messages_idempotency ON chat_messages (session_id, idempotency_key, role);

CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
