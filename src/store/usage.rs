//! Provider attempts, usage and budgets: the port and its SQL, written once for both databases.

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

    /// Sets (or with `None` removes) a user's own monthly budget.
    async fn set_budget(&self, user: &UserId, budget: Option<Micros>) -> Result<(), StoreError>;

    /// The user's own monthly budget, if one is set.
    async fn budget(&self, user: &UserId) -> Result<Option<Micros>, StoreError>;
}

/// Implements [`UsageStore`] for `$store` (with `pool` and `writer` fields) on `$db`.
macro_rules! impl_usage_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::UsageStore for $store {
            async fn record_attempts(
                &self,
                attempts: &[$crate::domain::ProviderAttempt],
            ) -> Result<(), $crate::store::StoreError> {
                if attempts.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer.begin().await?;
                // Attempts are written in the background after they happen (a crash of this
                // process loses what was not yet written), so waiting for the WAL flush buys
                // little; it would put these inserts into every task commit's flush queue.
                if <$db as sqlx::Database>::NAME == "PostgreSQL" {
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                }
                for chunk in attempts.chunks($crate::store::sql::INSERT_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO usage_stats (id, task_id, user_id, provider, model, \
                         task_type, month, input_tokens, output_tokens, cost_micros, success, \
                         outcome, error, latency_ms, created_at) ",
                    );
                    qb.push_values(chunk, |mut b, a| {
                        b.push_bind(a.id)
                            .push_bind(a.task_id.map(|t| t.as_uuid()))
                            .push_bind(a.user_id.as_str().to_owned())
                            .push_bind(a.provider.clone())
                            .push_bind(a.model.clone())
                            .push_bind(a.task_type.as_str())
                            .push_bind($crate::domain::month_of(a.at))
                            .push_bind(a.input_tokens as i64)
                            .push_bind(a.output_tokens as i64)
                            .push_bind(a.cost.0)
                            .push_bind(a.outcome == $crate::domain::AttemptOutcome::Ok)
                            .push_bind(a.outcome.as_str())
                            .push_bind(a.error.clone())
                            .push_bind(a.latency_ms as i64)
                            .push_bind(a.at);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn attempts_for_task(
                &self,
                task: $crate::domain::TaskId,
            ) -> Result<Vec<$crate::domain::ProviderAttempt>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, task_id, user_id, provider, model, task_type, input_tokens, \
                     output_tokens, cost_micros, outcome, error, latency_ms, created_at \
                     FROM usage_stats WHERE task_id = ",
                );
                qb.push_bind(task.as_uuid())
                    .push(" ORDER BY created_at, id");
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| {
                        let corrupt = |e: &dyn std::fmt::Display| {
                            $crate::store::StoreError::Corrupt(format!("usage_stats row: {e}"))
                        };
                        Ok($crate::domain::ProviderAttempt {
                            id: r.try_get("id")?,
                            task_id: r
                                .try_get::<Option<uuid::Uuid>, _>("task_id")?
                                .map($crate::domain::TaskId::from_uuid),
                            user_id: $crate::domain::UserId::parse(
                                &r.try_get::<String, _>("user_id")?,
                            )
                            .map_err(|e| corrupt(&e))?,
                            provider: r.try_get("provider")?,
                            model: r.try_get("model")?,
                            task_type: r
                                .try_get::<String, _>("task_type")?
                                .parse()
                                .map_err(|e| corrupt(&e))?,
                            input_tokens: r.try_get::<i64, _>("input_tokens")?.max(0) as u64,
                            output_tokens: r.try_get::<i64, _>("output_tokens")?.max(0) as u64,
                            cost: $crate::domain::Micros(r.try_get("cost_micros")?),
                            outcome: $crate::domain::AttemptOutcome::parse(
                                &r.try_get::<String, _>("outcome")?,
                            )
                            .map_err(|e| corrupt(&e))?,
                            error: r.try_get("error")?,
                            latency_ms: r.try_get::<i64, _>("latency_ms")?.max(0) as u64,
                            at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn usage_summary(
                &self,
                user: Option<&$crate::domain::UserId>,
                month: Option<&str>,
            ) -> Result<Vec<$crate::store::UsageSummary>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT user_id, month, provider, task_type, COUNT(*) AS calls, \
                     CAST(SUM(CASE WHEN success THEN 1 ELSE 0 END) AS BIGINT) AS successes, \
                     CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                     CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
                     CAST(SUM(cost_micros) AS BIGINT) AS cost \
                     FROM usage_stats WHERE outcome NOT IN ('skipped_breaker', 'skipped_rate_limit')",
                );
                if let Some(user) = user {
                    qb.push(" AND user_id = ").push_bind(user.as_str().to_owned());
                }
                if let Some(month) = month {
                    qb.push(" AND month = ").push_bind(month.to_owned());
                }
                qb.push(
                    " GROUP BY user_id, month, provider, task_type \
                     ORDER BY month DESC, user_id, provider, task_type LIMIT 10000",
                );
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::UsageSummary {
                            user_id: r.try_get("user_id")?,
                            month: r.try_get("month")?,
                            provider: r.try_get("provider")?,
                            task_type: r.try_get("task_type")?,
                            calls: r.try_get("calls")?,
                            successes: r.try_get("successes")?,
                            input_tokens: r.try_get("input_tokens")?,
                            output_tokens: r.try_get("output_tokens")?,
                            cost: $crate::domain::Micros(r.try_get("cost")?),
                        })
                    })
                    .collect()
            }

            async fn provider_stats(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::store::ProviderStats>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    // A call we dropped (`abandoned`) says nothing of the provider's health
                    // or speed: it counts as neither a call nor a skip here.
                    "SELECT provider, \
                     CAST(SUM(CASE WHEN outcome IN ('skipped_breaker', 'skipped_rate_limit', \
                       'abandoned') THEN 0 ELSE 1 END) AS BIGINT) AS calls, \
                     CAST(SUM(CASE WHEN success THEN 1 ELSE 0 END) AS BIGINT) AS successes, \
                     CAST(SUM(CASE WHEN outcome IN ('skipped_breaker', 'skipped_rate_limit') \
                       THEN 1 ELSE 0 END) AS BIGINT) AS skipped, \
                     CAST(COALESCE(AVG(CASE WHEN outcome IN ('skipped_breaker', \
                       'skipped_rate_limit', 'abandoned') THEN NULL ELSE latency_ms END), 0) \
                       AS DOUBLE PRECISION) AS avg_latency, \
                     CAST(COALESCE(MAX(CASE WHEN outcome = 'abandoned' THEN NULL \
                       ELSE latency_ms END), 0) AS BIGINT) AS max_latency \
                     FROM usage_stats WHERE created_at >= ",
                );
                qb.push_bind(since).push(" GROUP BY provider ORDER BY provider");
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::ProviderStats {
                            provider: r.try_get("provider")?,
                            calls: r.try_get("calls")?,
                            successes: r.try_get("successes")?,
                            skipped: r.try_get("skipped")?,
                            avg_latency_ms: r.try_get("avg_latency")?,
                            max_latency_ms: r.try_get("max_latency")?,
                        })
                    })
                    .collect()
            }

            async fn reserve(
                &self,
                user: &$crate::domain::UserId,
                month: &str,
                amount: $crate::domain::Micros,
                default_budget: Option<$crate::domain::Micros>,
            ) -> Result<$crate::store::Reservation, $crate::store::StoreError> {
                use sqlx::Row;
                let mut tx = self.writer.begin().await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO user_spend (user_id, month, spent_micros, reserved_micros) ",
                );
                qb.push_values([()], |mut b, ()| {
                    b.push_bind(user.as_str().to_owned())
                        .push_bind(month.to_owned())
                        .push_bind(0_i64)
                        .push_bind(0_i64);
                });
                qb.push(" ON CONFLICT (user_id, month) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
                // The row lock taken here serialises one user's reservations only.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE user_spend SET reserved_micros = reserved_micros + ",
                );
                qb.push_bind(amount.0)
                    .push(" WHERE user_id = ")
                    .push_bind(user.as_str().to_owned())
                    .push(" AND month = ")
                    .push_bind(month.to_owned())
                    .push(" AND spent_micros + reserved_micros + ")
                    .push_bind(amount.0)
                    .push(" <= COALESCE((SELECT monthly_micros FROM user_budgets WHERE user_id = ")
                    .push_bind(user.as_str().to_owned())
                    .push("), ")
                    .push_bind(default_budget.map_or(i64::MAX, |b| b.0))
                    .push(")");
                let reserved = qb.build().execute(&mut *tx).await?.rows_affected() == 1;
                let answer = if reserved {
                    $crate::store::Reservation::Reserved
                } else {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT s.spent_micros, s.reserved_micros, \
                         (SELECT monthly_micros FROM user_budgets WHERE user_id = s.user_id) \
                         AS own FROM user_spend s WHERE s.user_id = ",
                    );
                    qb.push_bind(user.as_str().to_owned())
                        .push(" AND s.month = ")
                        .push_bind(month.to_owned());
                    let row = qb.build().fetch_one(&mut *tx).await?;
                    let own: Option<i64> = row.try_get("own")?;
                    $crate::store::Reservation::OverBudget {
                        budget: $crate::domain::Micros(
                            own.or(default_budget.map(|b| b.0)).unwrap_or(i64::MAX),
                        ),
                        spend: $crate::store::Spend {
                            spent: $crate::domain::Micros(row.try_get("spent_micros")?),
                            reserved: $crate::domain::Micros(row.try_get("reserved_micros")?),
                        },
                    }
                };
                tx.commit().await?;
                Ok(answer)
            }

            async fn settle(
                &self,
                user: &$crate::domain::UserId,
                month: &str,
                reserved: $crate::domain::Micros,
                cost: $crate::domain::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE user_spend SET reserved_micros = CASE WHEN reserved_micros > ",
                );
                qb.push_bind(reserved.0)
                    .push(" THEN reserved_micros - ")
                    .push_bind(reserved.0)
                    .push(" ELSE 0 END, spent_micros = spent_micros + ")
                    .push_bind(cost.0)
                    .push(" WHERE user_id = ")
                    .push_bind(user.as_str().to_owned())
                    .push(" AND month = ")
                    .push_bind(month.to_owned());
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn spend(
                &self,
                user: &$crate::domain::UserId,
                month: &str,
            ) -> Result<$crate::store::Spend, $crate::store::StoreError> {
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT spent_micros, reserved_micros FROM user_spend WHERE user_id = ",
                );
                qb.push_bind(user.as_str().to_owned())
                    .push(" AND month = ")
                    .push_bind(month.to_owned());
                let row = qb.build().fetch_optional(&self.pool).await?;
                Ok(match row {
                    None => $crate::store::Spend::default(),
                    Some(r) => $crate::store::Spend {
                        spent: $crate::domain::Micros(r.try_get("spent_micros")?),
                        reserved: $crate::domain::Micros(r.try_get("reserved_micros")?),
                    },
                })
            }

            async fn set_budget(
                &self,
                user: &$crate::domain::UserId,
                budget: Option<$crate::domain::Micros>,
            ) -> Result<(), $crate::store::StoreError> {
                let mut qb;
                match budget {
                    Some(b) => {
                        qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO user_budgets (user_id, monthly_micros) ",
                        );
                        qb.push_values([()], |mut row, ()| {
                            row.push_bind(user.as_str().to_owned()).push_bind(b.0);
                        });
                        qb.push(
                            " ON CONFLICT (user_id) DO UPDATE \
                             SET monthly_micros = excluded.monthly_micros",
                        );
                    }
                    None => {
                        qb = sqlx::QueryBuilder::<$db>::new(
                            "DELETE FROM user_budgets WHERE user_id = ",
                        );
                        qb.push_bind(user.as_str().to_owned());
                    }
                }
                qb.build().execute(&self.writer).await?;
                Ok(())
            }

            async fn budget(
                &self,
                user: &$crate::domain::UserId,
            ) -> Result<Option<$crate::domain::Micros>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT monthly_micros FROM user_budgets WHERE user_id = ",
                );
                qb.push_bind(user.as_str().to_owned());
                let row = qb.build().fetch_optional(&self.pool).await?;
                Ok(match row {
                    Some(r) => Some($crate::domain::Micros(r.try_get("monthly_micros")?)),
                    None => None,
                })
            }
        }
    };
}

impl_usage_store!(super::PgTaskStore, sqlx::Postgres);
impl_usage_store!(super::SqliteTaskStore, sqlx::Sqlite);
