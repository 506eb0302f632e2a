-- Deep-dive chat sessions (seed 001's chat_sessions / chat_messages, issue 22).
--
-- At most one active session per user and item, enforced here by a partial unique index, so
-- two concurrent starts cannot both create one. `turn_holder` / `turn_until` are the turn
-- lock: one message is answered at a time per session, across every instance; a crashed
-- holder's lock lapses at `turn_until`. `deleted_at` is seed 000's logical delete.
CREATE TABLE chat_sessions (
    session_id    UUID         PRIMARY KEY,
    user_id       VARCHAR(100) NOT NULL,
    item_id       VARCHAR(100) NOT NULL,
    status        VARCHAR(20)  NOT NULL CHECK (status IN ('active', 'closed', 'expired')),
    started_at    TIMESTAMPTZ  NOT NULL,
    last_activity TIMESTAMPTZ  NOT NULL,
    context       JSONB,
    message_count INTEGER      NOT NULL DEFAULT 0,
    turn_holder   UUID,
    turn_until    TIMESTAMPTZ,
    deleted_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX chat_sessions_one_active ON chat_sessions (user_id, item_id)
    WHERE status = 'active';
CREATE INDEX chat_sessions_user_started ON chat_sessions (user_id, started_at DESC, session_id DESC);
CREATE INDEX chat_sessions_idle ON chat_sessions (last_activity) WHERE status = 'active';

-- A turn's two messages are written in one transaction, only once the answer is complete.
-- `idempotency_key` is on both of a turn's messages; the unique index on the questions makes
-- a repeated key return the stored turn instead of adding one.
CREATE TABLE chat_messages (
    message_id      UUID         PRIMARY KEY,
    session_id      UUID         NOT NULL REFERENCES chat_sessions (session_id),
    seq             INTEGER      NOT NULL,
    role            VARCHAR(20)  NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT         NOT NULL,
    tokens_used     INTEGER      NOT NULL DEFAULT 0,
    provider        VARCHAR(50),
    model           VARCHAR(100),
    cost_micros     BIGINT       NOT NULL DEFAULT 0,
    idempotency_key VARCHAR(100) NOT NULL,
    created_at      TIMESTAMPTZ  NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE UNIQUE INDEX chat_messages_idempotency ON chat_messages (session_id, idempotency_key, role);

-- Background jobs that one instance at a time runs (the chat expiry job): who holds each,
-- until when.
CREATE TABLE job_leases (
    name        VARCHAR(50) PRIMARY KEY,
    owner       TEXT        NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
