-- One-time stream tickets: a browser trades its JWT (sent in a header) for a ticket that opens
-- one SSE or WebSocket stream (sent in the URL, where the JWT would be logged by proxies). Only
-- the ticket's SHA-256 is stored, so a copy of this table opens nothing. In the database rather
-- than in memory so that a ticket minted on one instance opens a stream on any other.
CREATE TABLE stream_tickets (
    hash             BYTEA        PRIMARY KEY,
    user_id          VARCHAR(100) NOT NULL,
    role             VARCHAR(20)  NOT NULL CHECK (role IN ('user', 'admin')),
    -- The caller's tier (free, pro, enterprise) when their token carries one.
    tier             VARCHAR(20),
    -- When the minting JWT expires: a stream opened with the ticket closes then.
    token_expires_at TIMESTAMPTZ  NOT NULL,
    expires_at       TIMESTAMPTZ  NOT NULL
);
-- Retention deletes expired tickets.
CREATE INDEX stream_tickets_expires ON stream_tickets (expires_at);
