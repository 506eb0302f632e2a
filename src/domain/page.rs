//! Paging for list queries: keyset paging on (created_at, id), newest first.

use chrono::{DateTime, Utc};

use super::{DomainError, TaskId};

/// One page's request: its size and where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    /// Rows to return, 1..=[`PageRequest::MAX_SIZE`].
    pub size: u32,
    /// The last row of the previous page; `None` for the first page.
    pub after: Option<(DateTime<Utc>, TaskId)>,
}

impl PageRequest {
    /// Largest page a client may ask for.
    pub const MAX_SIZE: u32 = 1000;
    /// Page size when the client does not say.
    pub const DEFAULT_SIZE: u32 = 50;

    /// Builds a request from a client's size (0 = default) and opaque token ("" = first page).
    pub fn parse(size: u32, token: &str) -> Result<Self, DomainError> {
        let size = match size {
            0 => Self::DEFAULT_SIZE,
            s if s > Self::MAX_SIZE => {
                return Err(DomainError::Invalid(format!(
                    "page_size must be at most {}",
                    Self::MAX_SIZE
                )));
            }
            s => s,
        };
        let after = if token.is_empty() {
            None
        } else {
            Some(decode_token(token)?)
        };
        Ok(Self { size, after })
    }
}

/// One page of results and the token for the next.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Pass this back for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Token format: `<created_at micros>.<task uuid>`; opaque to clients.
pub fn encode_token(created_at: DateTime<Utc>, id: TaskId) -> String {
    format!("{}.{}", created_at.timestamp_micros(), id)
}

fn decode_token(token: &str) -> Result<(DateTime<Utc>, TaskId), DomainError> {
    let bad = || DomainError::Invalid("page_token is not one this server issued".into());
    let (micros, id) = token.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = TaskId::parse(id).map_err(|_| bad())?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = TaskId::new();
        let req = PageRequest::parse(10, &encode_token(at, id)).unwrap();
        assert_eq!(req.after, Some((at, id)));
    }

    #[test]
    fn rejects_bad_tokens_and_sizes() {
        assert!(PageRequest::parse(0, "garbage").is_err());
        assert!(PageRequest::parse(1001, "").is_err());
        assert_eq!(
            PageRequest::parse(0, "").unwrap().size,
            PageRequest::DEFAULT_SIZE
        );
    }
}
