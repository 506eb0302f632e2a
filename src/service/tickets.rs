//! Stream tickets: short-lived, single-use credentials that open one SSE or WebSocket stream.
//!
//! Browsers cannot set headers on `EventSource`, and the long-lived JWT in a URL ends up in
//! proxy and request logs. Instead a page trades its JWT (in a header) for a ticket and puts
//! that in the URL: it opens one stream, within a minute, and is worthless afterwards. Tickets
//! live in the database (only their SHA-256), so any instance can redeem what another minted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::ServiceError;
use crate::auth::{Caller, Role};
use crate::clock;
use crate::store::{NewStreamTicket, NotificationStore, StreamGrant, TicketHash};

/// Random bytes in a ticket: 256 bits, so guessing one is hopeless.
const TICKET_BYTES: usize = 32;

/// A freshly minted ticket. Its value never prints.
pub struct IssuedTicket {
    /// The ticket: lowercase hex, URL-safe as it is.
    value: String,
    /// How long it stays usable (never past the token it was minted with).
    pub expires_in: Duration,
}

impl IssuedTicket {
    /// The ticket itself, for the response that hands it over; never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for IssuedTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTicket")
            .field("value", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A redeemed ticket: who opens the stream and when their token expires (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The caller who minted the ticket.
    pub caller: Caller,
    /// When the stream must close, as it would for the token itself.
    pub token_expires_at: u64,
}

/// Mints and redeems stream tickets.
#[derive(Clone)]
pub struct StreamTickets {
    /// Where tickets live: shared by every instance.
    store: Arc<dyn NotificationStore>,
    /// How long a new ticket is valid.
    ttl: Duration,
}

impl StreamTickets {
    /// Tickets in `store`, each valid for `ttl`.
    pub fn new(store: Arc<dyn NotificationStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// A new ticket for `caller`, whose token expires at `token_expires_at` (unix seconds).
    /// It is valid for the configured time, or until the token expires if that is sooner.
    pub async fn issue(
        &self,
        caller: &Caller,
        token_expires_at: u64,
    ) -> Result<IssuedTicket, ServiceError> {
        let now = clock::now();
        let token_expires_at = i64::try_from(token_expires_at)
            .ok()
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .ok_or_else(|| ServiceError::Invalid("token expiry out of range".into()))?;
        let ttl = TimeDelta::from_std(self.ttl).unwrap_or(TimeDelta::MAX);
        let expires_at = now
            .checked_add_signed(ttl)
            .unwrap_or(token_expires_at)
            .min(token_expires_at);
        let value = encode_hex(&rand::random::<[u8; TICKET_BYTES]>());
        let ticket = NewStreamTicket {
            hash: hash(&value),
            grant: StreamGrant {
                user_id: caller.user_id.clone(),
                // A ticket opens a task-event stream, where a service account is a user like
                // any other (and the stored role is one of the two the table takes).
                role: match caller.role {
                    Role::Service => Role::User,
                    other => other,
                },
                tier: Some(caller.tier.as_str().to_owned()),
                token_expires_at,
            },
            expires_at,
        };
        self.store.insert_stream_ticket(&ticket).await?;
        Ok(IssuedTicket {
            value,
            expires_in: (expires_at - now).to_std().unwrap_or_default(),
        })
    }

    /// Uses up `ticket`. `None` when it is malformed, unknown, expired or used already: the
    /// caller refuses without saying which.
    pub async fn redeem(&self, ticket: &str) -> Result<Option<Redeemed>, ServiceError> {
        if !well_formed(ticket) {
            return Ok(None);
        }
        let Some(grant) = self
            .store
            .take_stream_ticket(&hash(ticket), clock::now())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Redeemed {
            caller: Caller {
                user_id: grant.user_id,
                role: grant.role,
                // Written by `issue` from a valid tier; a missing one is the default plan.
                tier: grant.tier.and_then(|t| t.parse().ok()).unwrap_or_default(),
            },
            token_expires_at: u64::try_from(grant.token_expires_at.timestamp()).unwrap_or(0),
        }))
    }
}

/// SHA-256 of a ticket: what is stored and looked up.
fn hash(ticket: &str) -> TicketHash {
    Sha256::digest(ticket.as_bytes()).into()
}

/// Whether `ticket` could be one of ours (so that junk costs no database round trip).
fn well_formed(ticket: &str) -> bool {
    ticket.len() == 2 * TICKET_BYTES
        && ticket
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_long_random_hex_and_their_hash_is_not_them() {
        let a = encode_hex(&rand::random::<[u8; TICKET_BYTES]>());
        let b = encode_hex(&rand::random::<[u8; TICKET_BYTES]>());
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert_eq!(a.len(), 64);
        assert_ne!(encode_hex(&hash(&a)), a);
        assert_eq!(encode_hex(&[0x00, 0x9f, 0xff]), "009fff");
    }

    #[test]
    fn junk_is_not_looked_up() {
        assert!(!well_formed(""));
        assert!(!well_formed(&"A".repeat(64)));
        assert!(!well_formed(&"a".repeat(63)));
        assert!(!well_formed("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    }

    #[test]
    fn the_value_never_prints() {
        let t = IssuedTicket {
            value: "f".repeat(64),
            expires_in: Duration::from_secs(60),
        };
        assert!(!format!("{t:?}").contains("ffff"));
    }
}
