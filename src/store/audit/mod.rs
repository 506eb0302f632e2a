//! The audit log's storage ([`AuditStore`]), for PostgreSQL and SQLite alike, in the same
//! database as the tasks (`migrations/*/…_audit_log.sql`).

mod sql;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::audit::{AuditEntry, AuditFilter};

use super::StoreError;

pub use sql::SqlAuditStore;

/// Most entries one page holds.
pub const MAX_AUDIT_PAGE: u32 = 500;

/// Where admin actions are kept.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores one entry.
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// Up to `limit` entries matching `filter`, newest first, older than the entry `before`
    /// when given (the previous page's last id).
    async fn list(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}
