-- One row per provider call or skipped provider (seed 001's usage_stats, plus what the router
-- needs: the task, the model, latency and outcome). Cost is in micro-dollars (1e-6 USD).
CREATE TABLE usage_stats (
    id             BLOB PRIMARY KEY,
    task_id        BLOB,
    user_id        TEXT NOT NULL,
    provider       TEXT  NOT NULL,
    model          TEXT NOT NULL,
    task_type      TEXT  NOT NULL,
    month          TEXT      NOT NULL,
    input_tokens   INTEGER       NOT NULL,
    output_tokens  INTEGER       NOT NULL,
    cost_micros    INTEGER       NOT NULL,
    success        INTEGER      NOT NULL,
    outcome        TEXT  NOT NULL,
    error          TEXT,
    latency_ms     INTEGER       NOT NULL,
    created_at     TEXT  NOT NULL
);
CREATE INDEX usage_stats_task ON usage_stats (task_id, created_at);
CREATE INDEX usage_stats_user_month ON usage_stats (user_id, month);
CREATE INDEX usage_stats_provider_created ON usage_stats (provider, created_at);

-- Money per user and month: settled spend plus reservations of calls in flight, so a budget
-- is checked before a call, not after.
CREATE TABLE user_spend (
    user_id         TEXT NOT NULL,
    month           TEXT      NOT NULL,
    spent_micros    INTEGER       NOT NULL DEFAULT 0,
    reserved_micros INTEGER       NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, month)
);

-- Per-user budgets that override USER_MONTHLY_BUDGET.
CREATE TABLE user_budgets (
    user_id        TEXT PRIMARY KEY,
    monthly_micros INTEGER       NOT NULL
);
