-- Projections of the event store (issue 21): where each stands, who runs it, and the read
-- models they keep.
--
-- Every read-model row carries the generation it belongs to. Readers read the projection's
-- active generation; a rebuild folds the store from position 0 into a new generation beside
-- it and is swapped in once it has caught up, then the old generation's rows are deleted.
-- A batch's rows and its checkpoint are written in one transaction, and the checkpoint moves
-- only from the position the batch started at (compare-and-set), so a batch applied twice
-- (a retry, or two instances for a moment) commits once.

CREATE TABLE projections (
    name               TEXT  PRIMARY KEY,
    active_generation  INTEGER       NOT NULL,
    rebuild_generation INTEGER,
    -- The lease: the instance that runs the projection, until when without renewal.
    owner              TEXT,
    lease_until        TEXT,
    heartbeat_at       TEXT,
    -- Set while parked on an event its handler keeps failing on.
    parked_position    INTEGER,
    parked_error       TEXT,
    parked_at          TEXT
);
INSERT INTO projections (name, active_generation) VALUES ('progress', 1), ('task_stats', 1);

CREATE TABLE projection_checkpoints (
    name       TEXT NOT NULL,
    generation INTEGER      NOT NULL,
    -- The last global position folded into this generation.
    position   INTEGER      NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, generation)
);
INSERT INTO projection_checkpoints (name, generation, position, updated_at)
VALUES ('progress', 1, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), ('task_stats', 1, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- UserProgress, one row per user.
CREATE TABLE progress_users (
    generation          INTEGER       NOT NULL,
    user_id             TEXT NOT NULL,
    time_zone           TEXT  NOT NULL,
    sessions_completed  INTEGER       NOT NULL,
    study_seconds       INTEGER       NOT NULL,
    correct_answers     INTEGER       NOT NULL,
    wrong_answers       INTEGER       NOT NULL,
    items_learned       INTEGER       NOT NULL,
    streak_days         INTEGER       NOT NULL,
    last_study_day      TEXT,
    unlearned           INTEGER       NOT NULL,
    learning            INTEGER       NOT NULL,
    short_term_mastered INTEGER       NOT NULL,
    long_term_mastered  INTEGER       NOT NULL,
    last_event_at       TEXT,
    PRIMARY KEY (generation, user_id)
);

-- Each item a user met: its latest review interval, for the mastery buckets.
CREATE TABLE progress_items (
    generation    INTEGER       NOT NULL,
    user_id       TEXT NOT NULL,
    item_id       TEXT NOT NULL,
    interval_days INTEGER,
    learned       INTEGER      NOT NULL,
    PRIMARY KEY (generation, user_id, item_id)
);

-- DailyStats, one row per user and day (in the user's time zone).
CREATE TABLE progress_daily (
    generation         INTEGER       NOT NULL,
    user_id            TEXT NOT NULL,
    day                TEXT         NOT NULL,
    sessions_completed INTEGER       NOT NULL,
    items_learned      INTEGER       NOT NULL,
    items_reviewed     INTEGER       NOT NULL,
    study_seconds      INTEGER       NOT NULL,
    correct_answers    INTEGER       NOT NULL,
    wrong_answers      INTEGER       NOT NULL,
    new_mastery_count  INTEGER       NOT NULL,
    PRIMARY KEY (generation, user_id, day)
);

-- Task statistics: one row per user, UTC day, task type and outcome.
CREATE TABLE task_stats_daily (
    generation    INTEGER       NOT NULL,
    user_id       TEXT NOT NULL,
    day           TEXT         NOT NULL,
    task_type     TEXT  NOT NULL,
    outcome       TEXT  NOT NULL,
    tasks         INTEGER       NOT NULL,
    attempts      INTEGER       NOT NULL,
    input_tokens  INTEGER       NOT NULL,
    output_tokens INTEGER       NOT NULL,
    cost_micros   INTEGER       NOT NULL,
    PRIMARY KEY (generation, user_id, day, task_type, outcome)
);
