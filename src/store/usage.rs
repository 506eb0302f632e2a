//! Provider attempts, usage and budgets: the port (its SQL is in `sql/usage.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::{Micros, ProviderAttempt, TaskId, UserId};

/// Usage summed per month, provider and task type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageSummary {
    /// Whose (absent in an admin's total over all users when grouped without users).
    pub user_id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// e.g. `openai`.
    pub provider: String,
    /// e.g. `summarize`.
    pub task_type: String,
    /// Provider calls made.
    pub calls: i64,
    /// Calls that succeeded.
    pub successes: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Generated tokens.
    pub output_tokens: i64,
    /// Money spent.
    pub cost: Micros,
}

/// How a provider has been doing lately, from its recorded calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderStats {
    /// e.g. `openai`.
    pub provider: String,
    /// Calls made.
    pub calls: i64,
    /// Calls that succeeded.
    pub successes: i64,
    /// Times it was skipped (breaker open, our rate limit).
    pub skipped: i64,
    /// Mean latency of calls, ms.
    pub avg_latency_ms: f64,
    /// Slowest call, ms.
    pub max_latency_ms: i64,
}

/// A user's money in one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Spend {
    /// Settled cost of finished calls.
    pub spent: Micros,
    /// Held for calls in flight.
    pub reserved: Micros,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Held; settle it when the call ends.
    Reserved,
    /// Refused: the month's budget cannot cover it.
    OverBudget {
        /// The user's monthly budget.
        budget: Micros,
        /// What the month already holds.
        spend: Spend,
    },
}

/// Where attempts, usage and budgets are kept.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Appends attempts.
    async fn record_attempts(&self, attempts: &[ProviderAttempt]) -> Result<(), StoreError>;

    /// A task's attempts, oldest first.
    async fn attempts_for_task(&self, task: TaskId) -> Result<Vec<ProviderAttempt>, StoreError>;

    /// Usage of calls made (skips excluded) per user, month, provider and type; only `user`'s
    /// when given, only `month`'s when given.
    async fn usage_summary(
        &self,
        user: Option<&UserId>,
        month: Option<&str>,
    ) -> Result<Vec<UsageSummary>, StoreError>;

    /// Per-provider stats of attempts since `since`.
    async fn provider_stats(&self, since: DateTime<Utc>) -> Result<Vec<ProviderStats>, StoreError>;

    /// Holds `amount` of `user`'s budget for `month` if spent + reserved + amount stays within
    /// their budget (their own, else `default_budget`; no budget at all means unlimited).
    async fn reserve(
        &self,
        user: &UserId,
        month: &str,
        amount: Micros,
        default_budget: Option<Micros>,
    ) -> Result<Reservation, StoreError>;

    /// Releases a reservation of `reserved` and books the real `cost`.
    async fn settle(
        &self,
        user: &UserId,
        month: &str,
        reserved: Micros,
        cost: Micros,
    ) -> Result<(), StoreError>;

    /// The user's money in `month`.
    async fn spend(&self, user: &UserId, month: &str) -> Result<Spend, StoreError>;

    /// Every user's money in `month`, summed (one row per user and month is read).
    async fn total_spend(&self, month: &str) -> Result<Spend, StoreError>;

    /// Sets (or with `None` removes) a user's own monthly budget.
    async fn set_budget(&self, user: &UserId, budget: Option<Micros>) -> Result<(), StoreError>;

    /// The user's own monthly budget, if one is set.
    async fn budget(&self, user: &UserId) -> Result<Option<Micros>, StoreError>;
}
