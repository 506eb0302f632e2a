//! The audit log (seed 001): every admin action, stored with who, what, to what, when, how it
//! ended and the request it came in. Pure values; the store keeps them, the service records
//! them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{DomainError, UserId};

/// What an admin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Dead letters made pending again.
    RequeueDeadLetters,
    /// Dead letters deleted.
    PurgeDeadLetters,
    /// A queue paused on every instance.
    PauseQueue,
    /// A paused queue resumed.
    ResumeQueue,
    /// A user's monthly budget set or cleared.
    SetBudget,
    /// A provider's circuit breaker closed.
    ResetBreaker,
    /// A provider taken out of every fallback chain.
    DisableProvider,
    /// A disabled provider put back.
    EnableProvider,
    /// A projection rebuilt from position 0.
    RebuildProjection,
    /// A parked projection resumed.
    ResumeProjection,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [Self; 10] = [
        Self::RequeueDeadLetters,
        Self::PurgeDeadLetters,
        Self::PauseQueue,
        Self::ResumeQueue,
        Self::SetBudget,
        Self::ResetBreaker,
        Self::DisableProvider,
        Self::EnableProvider,
        Self::RebuildProjection,
        Self::ResumeProjection,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequeueDeadLetters => "requeue_dead_letters",
            Self::PurgeDeadLetters => "purge_dead_letters",
            Self::PauseQueue => "pause_queue",
            Self::ResumeQueue => "resume_queue",
            Self::SetBudget => "set_budget",
            Self::ResetBreaker => "reset_breaker",
            Self::DisableProvider => "disable_provider",
            Self::EnableProvider => "enable_provider",
            Self::RebuildProjection => "rebuild_projection",
            Self::ResumeProjection => "resume_projection",
        }
    }

    /// The action with this name (a clear error naming the known ones otherwise).
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                DomainError::Invalid(format!(
                    "action {name:?} is not an audited action (one of: {})",
                    known.join(", ")
                ))
            })
    }
}

/// One admin action as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// UUIDv7: ordered by time.
    pub id: Uuid,
    /// When it was done.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: UserId,
    /// What.
    pub action: AuditAction,
    /// To what: a queue, a provider, a user, a projection, or the selection of dead letters.
    pub target: String,
    /// `None` when it succeeded; the error the caller was given when it failed.
    pub error: Option<String>,
    /// What else is worth keeping (how many tasks moved, the budget set).
    pub detail: Value,
    /// The request's `x-request-id`, to find its logs and trace.
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// `ok` or `error`, as stored.
    pub fn result(&self) -> &'static str {
        if self.error.is_some() { "error" } else { "ok" }
    }
}

/// Which entries to list; every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Done by.
    pub actor: Option<UserId>,
    /// Of this action.
    pub action: Option<AuditAction>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub to: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_unknown_ones_are_named() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()).unwrap(), a);
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        let err = AuditAction::parse("drop_tables").unwrap_err().to_string();
        assert!(
            err.contains("drop_tables") && err.contains("pause_queue"),
            "{err}"
        );
    }
}
