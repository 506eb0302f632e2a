-- Per-user gapless event ids. A sequence hands out ids before commit, so a later id can become
-- visible before an earlier one and a reader resuming "after N" would skip the late one for
-- ever. Instead each user's ids come from a counter row bumped in the same transaction that
-- inserts the events: the row lock orders one user's writers, so ids become visible in order
-- and without holes. The counter row outlives retention, so ids never restart.
CREATE TABLE user_event_counters (
    user_id VARCHAR(100) PRIMARY KEY,
    last_id BIGINT       NOT NULL
);

ALTER TABLE task_events ADD COLUMN user_seq BIGINT;
UPDATE task_events e SET user_seq = n.seq
FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS seq FROM task_events) n
WHERE e.id = n.id;
ALTER TABLE task_events ALTER COLUMN user_seq SET NOT NULL;
INSERT INTO user_event_counters (user_id, last_id)
SELECT user_id, MAX(user_seq) FROM task_events GROUP BY user_id;

-- Resume reads "user's events after N"; the unique index also guards the numbering.
CREATE UNIQUE INDEX task_events_user_seq ON task_events (user_id, user_seq);
DROP INDEX task_events_user;
-- Retention deletes by age.
CREATE INDEX task_events_created ON task_events (created_at);

-- Live notification connections (seed 000's NotificationRepository sessions).
CREATE TABLE notification_sessions (
    id                UUID         PRIMARY KEY,
    user_id           VARCHAR(100) NOT NULL,
    instance          VARCHAR(200) NOT NULL,
    transport         VARCHAR(20)  NOT NULL CHECK (transport IN ('websocket', 'sse', 'grpc')),
    connected_at      TIMESTAMPTZ  NOT NULL,
    last_seen         TIMESTAMPTZ  NOT NULL,
    -- The highest per-user event id delivered on this connection.
    last_delivered_id BIGINT       NOT NULL DEFAULT 0,
    ended_at          TIMESTAMPTZ
);
CREATE INDEX notification_sessions_user ON notification_sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX notification_sessions_seen ON notification_sessions (last_seen);
