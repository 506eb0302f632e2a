-- One row per provider call or skipped provider (seed 001's usage_stats, plus what the router
-- needs: the task, the model, latency and outcome). Cost is in micro-dollars (1e-6 USD).
CREATE TABLE usage_stats (
    id             UUID PRIMARY KEY,
    task_id        UUID,
    user_id        VARCHAR(100) NOT NULL,
    provider       VARCHAR(50)  NOT NULL,
    model          VARCHAR(100) NOT NULL,
    task_type      VARCHAR(50)  NOT NULL,
    month          CHAR(7)      NOT NULL,
    input_tokens   BIGINT       NOT NULL,
    output_tokens  BIGINT       NOT NULL,
    cost_micros    BIGINT       NOT NULL,
    success        BOOLEAN      NOT NULL,
    outcome        VARCHAR(30)  NOT NULL,
    error          TEXT,
    latency_ms     BIGINT       NOT NULL,
    created_at     TIMESTAMPTZ  NOT NULL
);
CREATE INDEX usage_stats_task ON usage_stats (task_id, created_at);
CREATE INDEX usage_stats_user_month ON usage_stats (user_id, month);
CREATE INDEX usage_stats_provider_created ON usage_stats (provider, created_at);

-- Money per user and month: settled spend plus reservations of calls in flight, so a budget
-- is checked before a call, not after.
CREATE TABLE user_spend (
    user_id         VARCHAR(100) NOT NULL,
    month           CHAR(7)      NOT NULL,
    spent_micros    BIGINT       NOT NULL DEFAULT 0,
    reserved_micros BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, month)
);

-- Per-user budgets that override USER_MONTHLY_BUDGET.
CREATE TABLE user_budgets (
    user_id        VARCHAR(100) PRIMARY KEY,
    monthly_micros BIGINT       NOT NULL
);
