//! Stream tickets as stored: what a one-time ticket lets its bearer open, keyed by the
//! ticket's SHA-256 (the ticket itself is never stored, so the table opens nothing).

use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::domain::UserId;

/// A SHA-256 digest of a ticket.
pub type TicketHash = [u8; 32];

/// Whose stream a ticket opens, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGrant {
    /// The caller who minted the ticket: the stream is theirs.
    pub user_id: UserId,
    /// Their role then, so an admin's ticket keeps `user_id=` and `all=true`.
    pub role: Role,
    /// Their tier (`free`, `pro`, `enterprise`) when their token carried one.
    pub tier: Option<String>,
    /// When the token the ticket was minted with expires: a stream opened with the ticket
    /// closes then, as one opened with the token would.
    pub token_expires_at: DateTime<Utc>,
}

/// A ticket to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStreamTicket {
    /// SHA-256 of the ticket.
    pub hash: TicketHash,
    /// What it opens.
    pub grant: StreamGrant,
    /// After this it opens nothing.
    pub expires_at: DateTime<Utc>,
}

/// A stored ticket's grant, as read back: (user_id, role, tier, token_expires_at).
pub(super) type GrantRow = (String, String, Option<String>, DateTime<Utc>);

/// Parses a [`GrantRow`].
pub(super) fn grant_from_row(
    (user, role, tier, token_expires_at): GrantRow,
) -> Result<StreamGrant, super::StoreError> {
    let user_id = UserId::parse(&user)
        .map_err(|_| super::StoreError::Corrupt("stream ticket user_id".into()))?;
    let role = Role::parse(&role)
        .ok_or_else(|| super::StoreError::Corrupt(format!("stream ticket role {role:?}")))?;
    Ok(StreamGrant {
        user_id,
        role,
        tier,
        token_expires_at,
    })
}
