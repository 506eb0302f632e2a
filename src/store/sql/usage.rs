//! [`UsageStore`] for every [`SqlStore`]: provider attempts, usage summaries and budgets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::{Bind, Column, Dialect, INSERT_CHUNK, RowsAffected, SqlStore};
use crate::domain::{AttemptOutcome, Micros, ProviderAttempt, TaskId, UserId, month_of};
use crate::store::{ProviderStats, Reservation, Spend, StoreError, UsageStore, UsageSummary};

#[async_trait]
impl<S, DB> UsageStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    Option<String>: Bind<DB>,
    Option<i32>: Bind<DB>,
    Option<DateTime<Utc>>: Bind<DB>,
    Option<Json<serde_json::Value>>: Bind<DB>,
    bool: Column<DB>,
    f64: Column<DB>,
    Option<Uuid>: Bind<DB>,
{
    async fn record_attempts(&self, attempts: &[ProviderAttempt]) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.sql().writes.begin().await?;
        // Attempts are written in the background after they happen (a crash of this
        // process loses what was not yet written), so waiting for the WAL flush buys
        // little; it would put these inserts into every task commit's flush queue.
        if let Some(relaxed) = DB::RELAXED_COMMIT {
            sqlx::query(relaxed).execute(&mut *tx).await?;
        }
        for chunk in attempts.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
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
                    .push_bind(month_of(a.at))
                    .push_bind(a.input_tokens as i64)
                    .push_bind(a.output_tokens as i64)
                    .push_bind(a.cost.0)
                    .push_bind(a.outcome == AttemptOutcome::Ok)
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

    async fn attempts_for_task(&self, task: TaskId) -> Result<Vec<ProviderAttempt>, StoreError> {
        use sqlx::Row;
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT id, task_id, user_id, provider, model, task_type, input_tokens, \
             output_tokens, cost_micros, outcome, error, latency_ms, created_at \
             FROM usage_stats WHERE task_id = ",
        );
        qb.push_bind(task.as_uuid())
            .push(" ORDER BY created_at, id");
        let rows = qb.build().fetch_all(self.sql().reads).await?;
        rows.iter()
            .map(|r| {
                let corrupt = |e: &dyn std::fmt::Display| {
                    StoreError::Corrupt(format!("usage_stats row: {e}"))
                };
                Ok(ProviderAttempt {
                    id: r.try_get("id")?,
                    task_id: r
                        .try_get::<Option<Uuid>, _>("task_id")?
                        .map(TaskId::from_uuid),
                    user_id: UserId::parse(&r.try_get::<String, _>("user_id")?)
                        .map_err(|e| corrupt(&e))?,
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    task_type: r
                        .try_get::<String, _>("task_type")?
                        .parse()
                        .map_err(|e| corrupt(&e))?,
                    input_tokens: r.try_get::<i64, _>("input_tokens")?.max(0) as u64,
                    output_tokens: r.try_get::<i64, _>("output_tokens")?.max(0) as u64,
                    cost: Micros(r.try_get("cost_micros")?),
                    outcome: AttemptOutcome::parse(&r.try_get::<String, _>("outcome")?)
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
        user: Option<&UserId>,
        month: Option<&str>,
    ) -> Result<Vec<UsageSummary>, StoreError> {
        use sqlx::Row;
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT user_id, month, provider, task_type, COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN success THEN 1 ELSE 0 END) AS BIGINT) AS successes, \
             CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost \
             FROM usage_stats WHERE outcome NOT IN ('skipped_breaker', 'skipped_rate_limit')",
        );
        if let Some(user) = user {
            qb.push(" AND user_id = ")
                .push_bind(user.as_str().to_owned());
        }
        if let Some(month) = month {
            qb.push(" AND month = ").push_bind(month.to_owned());
        }
        qb.push(
            " GROUP BY user_id, month, provider, task_type \
             ORDER BY month DESC, user_id, provider, task_type LIMIT 10000",
        );
        let rows = qb.build().fetch_all(self.sql().reads).await?;
        rows.iter()
            .map(|r| {
                Ok(UsageSummary {
                    user_id: r.try_get("user_id")?,
                    month: r.try_get("month")?,
                    provider: r.try_get("provider")?,
                    task_type: r.try_get("task_type")?,
                    calls: r.try_get("calls")?,
                    successes: r.try_get("successes")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cost: Micros(r.try_get("cost")?),
                })
            })
            .collect()
    }

    async fn provider_stats(&self, since: DateTime<Utc>) -> Result<Vec<ProviderStats>, StoreError> {
        use sqlx::Row;
        let mut qb = QueryBuilder::<DB>::new(
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
        qb.push_bind(since)
            .push(" GROUP BY provider ORDER BY provider");
        let rows = qb.build().fetch_all(self.sql().reads).await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderStats {
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
        user: &UserId,
        month: &str,
        amount: Micros,
        default_budget: Option<Micros>,
    ) -> Result<Reservation, StoreError> {
        use sqlx::Row;
        let mut tx = self.sql().writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new(
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
        let mut qb =
            QueryBuilder::<DB>::new("UPDATE user_spend SET reserved_micros = reserved_micros + ");
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
            Reservation::Reserved
        } else {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT s.spent_micros, s.reserved_micros, \
                 (SELECT monthly_micros FROM user_budgets WHERE user_id = s.user_id) \
                 AS own FROM user_spend s WHERE s.user_id = ",
            );
            qb.push_bind(user.as_str().to_owned())
                .push(" AND s.month = ")
                .push_bind(month.to_owned());
            let row = qb.build().fetch_one(&mut *tx).await?;
            let own: Option<i64> = row.try_get("own")?;
            Reservation::OverBudget {
                budget: Micros(own.or(default_budget.map(|b| b.0)).unwrap_or(i64::MAX)),
                spend: Spend {
                    spent: Micros(row.try_get("spent_micros")?),
                    reserved: Micros(row.try_get("reserved_micros")?),
                },
            }
        };
        tx.commit().await?;
        Ok(answer)
    }

    async fn settle(
        &self,
        user: &UserId,
        month: &str,
        reserved: Micros,
        cost: Micros,
    ) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
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
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn spend(&self, user: &UserId, month: &str) -> Result<Spend, StoreError> {
        use sqlx::Row;
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT spent_micros, reserved_micros FROM user_spend WHERE user_id = ",
        );
        qb.push_bind(user.as_str().to_owned())
            .push(" AND month = ")
            .push_bind(month.to_owned());
        let row = qb.build().fetch_optional(self.sql().reads).await?;
        Ok(match row {
            None => Spend::default(),
            Some(r) => Spend {
                spent: Micros(r.try_get("spent_micros")?),
                reserved: Micros(r.try_get("reserved_micros")?),
            },
        })
    }

    async fn total_spend(&self, month: &str) -> Result<Spend, StoreError> {
        use sqlx::Row;
        // PostgreSQL's SUM of a BIGINT is NUMERIC: cast back for one decoding in both stores.
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT CAST(COALESCE(SUM(spent_micros), 0) AS BIGINT) AS spent, \
             CAST(COALESCE(SUM(reserved_micros), 0) AS BIGINT) AS reserved \
             FROM user_spend WHERE month = ",
        );
        qb.push_bind(month.to_owned());
        let row = qb.build().fetch_one(self.sql().reads).await?;
        Ok(Spend {
            spent: Micros(row.try_get("spent")?),
            reserved: Micros(row.try_get("reserved")?),
        })
    }

    async fn set_budget(&self, user: &UserId, budget: Option<Micros>) -> Result<(), StoreError> {
        let mut qb;
        match budget {
            Some(b) => {
                qb = QueryBuilder::<DB>::new("INSERT INTO user_budgets (user_id, monthly_micros) ");
                qb.push_values([()], |mut row, ()| {
                    row.push_bind(user.as_str().to_owned()).push_bind(b.0);
                });
                qb.push(
                    " ON CONFLICT (user_id) DO UPDATE \
                     SET monthly_micros = excluded.monthly_micros",
                );
            }
            None => {
                qb = QueryBuilder::<DB>::new("DELETE FROM user_budgets WHERE user_id = ");
                qb.push_bind(user.as_str().to_owned());
            }
        }
        qb.build().execute(self.sql().writes).await?;
        Ok(())
    }

    async fn budget(&self, user: &UserId) -> Result<Option<Micros>, StoreError> {
        use sqlx::Row;
        let mut qb =
            QueryBuilder::<DB>::new("SELECT monthly_micros FROM user_budgets WHERE user_id = ");
        qb.push_bind(user.as_str().to_owned());
        let row = qb.build().fetch_optional(self.sql().reads).await?;
        Ok(match row {
            Some(r) => Some(Micros(r.try_get("monthly_micros")?)),
            None => None,
        })
    }
}
