//! Keyset paging over a user's sessions: newest first by (started_at, session id).

use chrono::{DateTime, Utc};

use super::ChatSessionId;
use crate::domain::DomainError;

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCursor {
    /// The last session's start.
    pub started_at: DateTime<Utc>,
    /// The last session's id (ties on `started_at`).
    pub id: ChatSessionId,
}

impl SessionCursor {
    /// The opaque token handed to clients: `<started_at micros>.<session id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.started_at.timestamp_micros(), self.id)
    }

    fn decode(token: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::Invalid("page_token is not one this server issued".into());
        let (micros, id) = token.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            started_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: ChatSessionId::parse(id).map_err(|_| bad())?,
        })
    }
}

/// One page's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPageRequest {
    /// Sessions to return, 1..=[`Self::MAX_SIZE`].
    pub size: u32,
    /// After this session; `None` for the first page.
    pub after: Option<SessionCursor>,
}

impl SessionPageRequest {
    /// Largest page.
    pub const MAX_SIZE: u32 = 200;
    /// Page size when the client does not say.
    pub const DEFAULT_SIZE: u32 = 20;

    /// From a client's size (0: default) and token ("": first page).
    pub fn parse(size: u32, token: &str) -> Result<Self, DomainError> {
        if size > Self::MAX_SIZE {
            return Err(DomainError::Invalid(format!(
                "page_size must be at most {}",
                Self::MAX_SIZE
            )));
        }
        Ok(Self {
            size: if size == 0 { Self::DEFAULT_SIZE } else { size },
            after: if token.is_empty() {
                None
            } else {
                Some(SessionCursor::decode(token)?)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let c = SessionCursor {
            started_at: DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            id: ChatSessionId::new(),
        };
        let r = SessionPageRequest::parse(5, &c.encode()).unwrap();
        assert_eq!(r.after, Some(c));
        assert!(SessionPageRequest::parse(0, "nope").is_err());
        assert!(SessionPageRequest::parse(201, "").is_err());
        assert_eq!(SessionPageRequest::parse(0, "").unwrap().size, 20);
    }
}
