-- Seed 001's audit log: every admin action, who did it, to what, when, how it ended, and the
-- request it came in. Ids are UUIDv7, so their order is their time order (the page cursor).
CREATE TABLE audit_log (
    id          UUID PRIMARY KEY,
    at          TIMESTAMPTZ  NOT NULL,
    actor       VARCHAR(100) NOT NULL,
    action      VARCHAR(50)  NOT NULL,
    target      VARCHAR(200) NOT NULL,
    result      VARCHAR(20)  NOT NULL CHECK (result IN ('ok', 'error')),
    error       TEXT,
    detail      JSONB        NOT NULL,
    request_id  VARCHAR(100)
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_at ON audit_log (at);
