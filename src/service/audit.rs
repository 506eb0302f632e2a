//! The audit log (seed 001): admin actions recorded as they are done, and read by admins.
//!
//! Each admin action records one entry after it ran, whether it succeeded or not (with the
//! error the caller got). A failure to record is logged and counted, never turned into a
//! failure of an action that already took effect.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::ServiceError;
use super::admin::require_admin;
use crate::auth::Caller;
use crate::clock;
use crate::domain::audit::{AuditAction, AuditEntry, AuditFilter};
use crate::store::audit::{AuditStore, MAX_AUDIT_PAGE};

/// Records and lists admin actions.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
}

/// One page of entries and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next_cursor: Option<Uuid>,
}

impl AuditLog {
    /// The log kept in `store`.
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self { store }
    }

    /// Records that `caller` did `action` to `target`, and how it ended; `detail` from the
    /// answer when it succeeded. Returns `outcome` unchanged.
    pub async fn record<T>(
        &self,
        caller: &Caller,
        action: AuditAction,
        target: &str,
        outcome: Result<T, ServiceError>,
        detail: impl FnOnce(&T) -> Value,
    ) -> Result<T, ServiceError> {
        // A refused caller did nothing worth auditing (and must not fill the log).
        if matches!(outcome, Err(ServiceError::Forbidden(_))) {
            return outcome;
        }
        let entry = AuditEntry {
            id: Uuid::now_v7(),
            at: clock::now(),
            actor: caller.user_id.clone(),
            action,
            target: target.to_owned(),
            error: outcome.as_ref().err().map(ToString::to_string),
            detail: outcome.as_ref().map_or(Value::Null, detail),
            request_id: super::request::current_id(),
        };
        if let Err(e) = self.store.record(&entry).await {
            crate::telemetry::metrics::audit_write_failed();
            tracing::error!(error = %e, action = action.as_str(), target, "audit entry not stored");
        }
        outcome
    }

    /// Entries matching `query`, newest first, a page at a time (admins only).
    pub async fn list(
        &self,
        caller: &Caller,
        query: AuditQuery<'_>,
    ) -> Result<AuditPage, ServiceError> {
        require_admin(caller)?;
        let (filter, before, limit) = query.parse()?;
        let entries = self.store.list(&filter, before, limit).await?;
        let next_cursor = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }
}

/// Entries on a page when the caller does not say.
pub const DEFAULT_AUDIT_PAGE: u32 = 50;

/// A listing as the edges receive it: each field empty (or 0) when not given.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditQuery<'a> {
    /// Done by this user.
    pub actor: &'a str,
    /// Of this action (`pause_queue`, …).
    pub action: &'a str,
    /// At or after this RFC 3339 time.
    pub from: &'a str,
    /// Before this RFC 3339 time.
    pub to: &'a str,
    /// The previous page's `next_cursor`.
    pub cursor: &'a str,
    /// Entries per page (default 50, at most 500).
    pub limit: u32,
}

impl AuditQuery<'_> {
    /// The filter, cursor and page size, or a clear error naming the bad field.
    pub fn parse(&self) -> Result<(AuditFilter, Option<Uuid>, u32), ServiceError> {
        let given = |s: &str| (!s.is_empty()).then_some(s.to_owned());
        let filter = AuditFilter {
            actor: given(self.actor)
                .map(|a| crate::domain::UserId::parse(&a))
                .transpose()?,
            action: given(self.action)
                .map(|a| AuditAction::parse(&a))
                .transpose()?,
            from: given(self.from)
                .map(|t| parse_time("from", &t))
                .transpose()?,
            to: given(self.to).map(|t| parse_time("to", &t)).transpose()?,
        };
        let cursor = given(self.cursor)
            .map(|c| {
                Uuid::parse_str(&c).map_err(|_| {
                    ServiceError::Invalid(format!("cursor {c:?} is not a next_cursor value"))
                })
            })
            .transpose()?;
        if self.limit > MAX_AUDIT_PAGE {
            return Err(ServiceError::Invalid(format!(
                "limit must be at most {MAX_AUDIT_PAGE}"
            )));
        }
        let limit = if self.limit == 0 {
            DEFAULT_AUDIT_PAGE
        } else {
            self.limit
        };
        Ok((filter, cursor, limit))
    }
}

/// A time bound of a filter, parsed from RFC 3339.
fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ServiceError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ServiceError::Invalid(format!(
                "{field} must be an RFC 3339 time such as 2026-12-03T10:00:00Z, not {raw:?}"
            ))
        })
}
