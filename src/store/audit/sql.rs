//! [`AuditStore`] for every database the shared SQL serves. Statements use `$1`-style
//! parameters, which both drivers bind by number.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Executor, Pool, QueryBuilder};

use uuid::Uuid;

use super::{AuditStore, MAX_AUDIT_PAGE};
use crate::domain::audit::{AuditAction, AuditEntry, AuditFilter};
use crate::store::sql::{Bind, Column, Dialect, SqlStore, stored_user};
use crate::store::{PgTaskStore, SqliteTaskStore, StoreError};

/// The audit log on a task store's connections (make one with [`PgTaskStore::audit_store`] or
/// [`SqliteTaskStore::audit_store`]).
#[derive(Clone)]
pub struct SqlAuditStore<DB: Database> {
    /// For reads.
    reads: Pool<DB>,
    /// For writes: in SQLite the one writer connection, shared with the task store.
    writes: Pool<DB>,
}

/// A stored row, in column order.
type Row = (
    Uuid,
    DateTime<Utc>,
    String,
    String,
    String,
    Option<String>,
    Json<Value>,
    Option<String>,
);

const COLUMNS: &str = "id, at, actor, action, target, error, detail, request_id";

fn into_entry(row: Row) -> Result<AuditEntry, StoreError> {
    let (id, at, actor, action, target, error, Json(detail), request_id) = row;
    Ok(AuditEntry {
        id,
        at,
        actor: stored_user(&actor, || format!("audit entry {id}: actor {actor:?}"))?,
        action: AuditAction::parse(&action)
            .map_err(|_| StoreError::Corrupt(format!("audit entry {id}: action {action:?}")))?,
        target,
        error,
        detail,
        request_id,
    })
}

#[async_trait]
impl<DB> AuditStore for SqlAuditStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    Option<String>: Column<DB> + Bind<DB>,
    DateTime<Utc>: Column<DB>,
    Json<Value>: Column<DB>,
    for<'j> Json<&'j Value>: Bind<DB>,
    i64: Bind<DB>,
{
    async fn record(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, result, error, detail, \
             request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.id)
        .bind(e.at)
        .bind(e.actor.as_str())
        .bind(e.action.as_str())
        .bind(e.target.as_str())
        .bind(e.result())
        .bind(e.error.clone())
        .bind(Json(&e.detail))
        .bind(e.request_id.clone())
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn list(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut qb =
            QueryBuilder::<DB>::new(format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1"));
        if let Some(actor) = &filter.actor {
            qb.push(" AND actor = ")
                .push_bind(actor.as_str().to_owned());
        }
        if let Some(action) = filter.action {
            qb.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(from) = filter.from {
            qb.push(" AND at >= ").push_bind(from);
        }
        if let Some(to) = filter.to {
            qb.push(" AND at < ").push_bind(to);
        }
        if let Some(id) = before {
            qb.push(" AND id < ").push_bind(id);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, MAX_AUDIT_PAGE)));
        let rows: Vec<Row> = qb.build_query_as().fetch_all(&self.reads).await?;
        rows.into_iter().map(into_entry).collect()
    }
}

impl PgTaskStore {
    /// The audit log on this store's connections.
    pub fn audit_store(&self) -> SqlAuditStore<sqlx::Postgres> {
        let sql = self.sql();
        SqlAuditStore {
            reads: sql.reads.clone(),
            writes: sql.writes.clone(),
        }
    }
}

impl SqliteTaskStore {
    /// The audit log on this store's connections (its readers, and its one writer).
    pub fn audit_store(&self) -> SqlAuditStore<sqlx::Sqlite> {
        let sql = self.sql();
        SqlAuditStore {
            reads: sql.reads.clone(),
            writes: sql.writes.clone(),
        }
    }
}
