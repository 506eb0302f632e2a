-- The event store (see the PostgreSQL migration of the same name). SQLite has one writer, so
-- positions are commit-ordered whatever assigns them; the counter row keeps the SQL the same.

CREATE TABLE event_streams (
    stream_id  TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version > 0),
    updated_at TEXT    NOT NULL
);

CREATE TABLE event_store_position (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_position INTEGER NOT NULL
);
INSERT INTO event_store_position (id, last_position) VALUES (1, 0);

CREATE TABLE event_store (
    -- The rowid: rows are stored in position order.
    global_position INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    event_data      TEXT    NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    user_id         TEXT,
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX event_store_type_time ON event_store (event_type, occurred_at, global_position);

CREATE TABLE event_snapshots (
    stream_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    data       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (stream_id, version)
);
