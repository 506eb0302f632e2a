-- One-time stream tickets (see the PostgreSQL migration of the same name for why).
CREATE TABLE stream_tickets (
    hash             BLOB PRIMARY KEY,
    user_id          TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    tier             TEXT,
    token_expires_at TEXT NOT NULL,
    expires_at       TEXT NOT NULL
);
CREATE INDEX stream_tickets_expires ON stream_tickets (expires_at);
