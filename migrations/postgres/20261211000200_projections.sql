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
    name               VARCHAR(50)  PRIMARY KEY,
    active_generation  BIGINT       NOT NULL,
    rebuild_generation BIGINT,
    -- The lease: the instance that runs the projection, until when without renewal.
    owner              VARCHAR(200),
    lease_until        TIMESTAMPTZ,
    heartbeat_at       TIMESTAMPTZ,
    -- Set while parked on an event its handler keeps failing on.
    parked_position    BIGINT,
    parked_error       TEXT,
    parked_at          TIMESTAMPTZ
);
INSERT INTO projections (name, active_generation) VALUES ('progress', 1), ('task_stats', 1);

CREATE TABLE projection_checkpoints (
    name       VARCHAR(50) NOT NULL,
    generation BIGINT      NOT NULL,
    -- The last global position folded into this generation.
    position   BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, generation)
);
INSERT INTO projection_checkpoints (name, generation, position, updated_at)
VALUES ('progress', 1, 0, now()), ('task_stats', 1, 0, now());

-- UserProgress, one row per user.
CREATE TABLE progress_users (
    generation          BIGINT       NOT NULL,
    user_id             VARCHAR(100) NOT NULL,
    time_zone           VARCHAR(64)  NOT NULL,
    sessions_completed  BIGINT       NOT NULL,
    study_seconds       BIGINT       NOT NULL,
    correct_answers     BIGINT       NOT NULL,
    wrong_answers       BIGINT       NOT NULL,
    items_learned       BIGINT       NOT NULL,
    streak_days         BIGINT       NOT NULL,
    last_study_day      DATE,
    unlearned           BIGINT       NOT NULL,
    learning            BIGINT       NOT NULL,
    short_term_mastered BIGINT       NOT NULL,
    long_term_mastered  BIGINT       NOT NULL,
    last_event_at       TIMESTAMPTZ,
    PRIMARY KEY (generation, user_id)
);

-- Each item a user met: its latest review interval, for the mastery buckets.
CREATE TABLE progress_items (
    generation    BIGINT       NOT NULL,
    user_id       VARCHAR(100) NOT NULL,
    item_id       VARCHAR(200) NOT NULL,
    interval_days BIGINT,
    learned       BOOLEAN      NOT NULL,
    PRIMARY KEY (generation, user_id, item_id)
);

-- DailyStats, one row per user and day (in the user's time zone).
CREATE TABLE progress_daily (
    generation         BIGINT       NOT NULL,
    user_id            VARCHAR(100) NOT NULL,
    day                DATE         NOT NULL,
    sessions_completed BIGINT       NOT NULL,
    items_learned      BIGINT       NOT NULL,
    items_reviewed     BIGINT       NOT NULL,
    study_seconds      BIGINT       NOT NULL,
    correct_answers    BIGINT       NOT NULL,
    wrong_answers      BIGINT       NOT NULL,
    new_mastery_count  BIGINT       NOT NULL,
    PRIMARY KEY (generation, user_id, day)
);

-- Task statistics: one row per user, UTC day, task type and outcome.
CREATE TABLE task_stats_daily (
    generation    BIGINT       NOT NULL,
    user_id       VARCHAR(100) NOT NULL,
    day           DATE         NOT NULL,
    task_type     VARCHAR(50)  NOT NULL,
    outcome       VARCHAR(20)  NOT NULL,
    tasks         BIGINT       NOT NULL,
    attempts      BIGINT       NOT NULL,
    input_tokens  BIGINT       NOT NULL,
    output_tokens BIGINT       NOT NULL,
    cost_micros   BIGINT       NOT NULL,
    PRIMARY KEY (generation, user_id, day, task_type, outcome)
);
