-- Seed 001's audit log: every admin action, who did it, to what, when, how it ended, and the
-- request it came in. Ids are UUIDv7, so their order is their time order (the page cursor).
CREATE TABLE audit_log (
    id          BLOB PRIMARY KEY,
    at          TEXT         NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT  NOT NULL,
    target      TEXT NOT NULL,
    result      TEXT  NOT NULL CHECK (result IN ('ok', 'error')),
    error       TEXT,
    detail      TEXT         NOT NULL,
    request_id  TEXT
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_at ON audit_log (at);
