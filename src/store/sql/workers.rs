//! [`WorkerDirectory`] for every [`SqlStore`]: the `workers` table for the dashboard.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Executor, QueryBuilder, Row};

use super::{Bind, Column, Dialect, SqlStore};
use crate::store::StoreError;
use crate::store::workers::{MAX_WORKERS_LISTED, WorkerDirectory, WorkerRecord};

#[async_trait]
impl<S, DB> WorkerDirectory for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
{
    async fn workers_seen_since(
        &self,
        seen_since: DateTime<Utc>,
    ) -> Result<Vec<WorkerRecord>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT id, instance, status, started_at, last_heartbeat FROM workers \
             WHERE last_heartbeat >= ",
        );
        qb.push_bind(seen_since)
            .push(" ORDER BY instance, id LIMIT ")
            .push_bind(i64::from(MAX_WORKERS_LISTED));
        let rows = qb.build().fetch_all(self.sql().reads).await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRecord {
                    id: r.try_get("id")?,
                    instance: r.try_get("instance")?,
                    status: r.try_get("status")?,
                    started_at: r.try_get("started_at")?,
                    last_heartbeat: r.try_get("last_heartbeat")?,
                })
            })
            .collect()
    }
}
