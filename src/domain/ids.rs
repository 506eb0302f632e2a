//! Identifiers. Parsed once at the edge; inside, an id is always well formed.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DomainError;

/// Declares a time-ordered id: a UUID v7 newtype that sorts by creation time, with `new`,
/// `from_uuid` (read back from storage), `parse` (client input; the error names `$field`),
/// `as_uuid`, `Default` and `Display`.
macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Wraps an id read back from storage.
            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// Parses a client-supplied id.
            pub fn parse(raw: &str) -> Result<Self, $crate::domain::DomainError> {
                uuid::Uuid::parse_str(raw.trim()).map(Self).map_err(|_| {
                    $crate::domain::DomainError::Invalid(format!(
                        "{} {raw:?} is not a UUID",
                        $field
                    ))
                })
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

pub(crate) use time_ordered_id;

time_ordered_id!(
    /// A task's id: a UUID v7, so ids sort by creation time.
    TaskId,
    "task_id"
);

/// The user a task belongs to: the JWT `sub` claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted user id, matching the `requested_by VARCHAR(100)` column of seed 001.
    pub const MAX_LEN: usize = 100;

    /// Validates a user id: 1 to 100 characters, no control characters.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        // Characters, not bytes: the column is VARCHAR(100), and the message says so.
        if raw.is_empty()
            || raw.chars().count() > Self::MAX_LEN
            || raw.chars().any(char::is_control)
        {
            return Err(DomainError::Invalid(format!(
                "user id must be 1-{} printable characters",
                Self::MAX_LEN
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker pool instance that claims tasks; recorded on the task it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// A unique id for a worker pool started now on `host`.
    pub fn generate(host: &str) -> Self {
        Self(format!("{host}-{}", Uuid::new_v4().simple()))
    }

    /// Wraps an id read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_rejects_garbage() {
        assert!(TaskId::parse("not-a-uuid").is_err());
        let id = TaskId::new();
        assert_eq!(TaskId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn user_id_bounds() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"x".repeat(101)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert_eq!(UserId::parse("alice").unwrap().as_str(), "alice");
    }
}
