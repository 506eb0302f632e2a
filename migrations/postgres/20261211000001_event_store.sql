-- The event store (seed 002): streams of events with optimistic concurrency, one global order
-- a catch-up reader can trust, and snapshots.
--
-- Global positions come from the one row of event_store_position, bumped by the same
-- statement that inserts the events. Its row lock is held until that statement's transaction
-- ends, so appends take their positions one after another in commit order: positions are
-- dense (a rollback gives its numbers back) and become visible in order, and a reader that
-- resumes "from position N" can never skip an event that commits late. See docs/eventstore.md.

CREATE TABLE event_streams (
    stream_id  VARCHAR(200) PRIMARY KEY,
    -- The version of the stream's last event; its row lock orders the stream's appenders.
    version    BIGINT       NOT NULL CHECK (version > 0),
    updated_at TIMESTAMPTZ  NOT NULL
);

CREATE TABLE event_store_position (
    -- One row.
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    last_position BIGINT   NOT NULL
);
INSERT INTO event_store_position (id, last_position) VALUES (1, 0);

CREATE TABLE event_store (
    global_position BIGINT       PRIMARY KEY,
    event_id        UUID         NOT NULL UNIQUE,
    stream_id       VARCHAR(200) NOT NULL,
    stream_version  BIGINT       NOT NULL,
    event_type      VARCHAR(200) NOT NULL,
    event_data      JSONB        NOT NULL,
    correlation_id  VARCHAR(200),
    causation_id    VARCHAR(200),
    user_id         VARCHAR(100),
    -- metadata.timestamp: when it happened, as the appender says.
    occurred_at     TIMESTAMPTZ  NOT NULL,
    -- When the store recorded it.
    recorded_at     TIMESTAMPTZ  NOT NULL,
    -- Reads by stream; also guards the numbering.
    UNIQUE (stream_id, stream_version)
);
-- Reads by type over a time range.
CREATE INDEX event_store_type_time ON event_store (event_type, occurred_at, global_position);

CREATE TABLE event_snapshots (
    stream_id  VARCHAR(200) NOT NULL,
    version    BIGINT       NOT NULL,
    data       JSONB        NOT NULL,
    created_at TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (stream_id, version)
);
