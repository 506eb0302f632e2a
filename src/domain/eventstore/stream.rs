//! Streams and the version an append expects a stream to be at.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::EventError;
use super::name::checked_name;

/// The name of a stream: usually one aggregate's, such as `session-42` or `user-7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

checked_name!(StreamId, "stream id");

/// What an append expects of its stream: optimistic concurrency. A stream's version is the
/// version of its last event; events are numbered from 1, so a stream with no events is at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// Whatever the stream holds (including nothing): never a conflict.
    Any,
    /// The stream must not exist yet (the same as `Exact(0)`).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The seed's `Option<u64>`: `None` is [`Self::Any`].
    pub fn from_option(version: Option<u64>) -> Self {
        version.map_or(Self::Any, Self::Exact)
    }

    /// The version the stream must be at, if any (`NoStream`: 0).
    pub fn version(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::NoStream => Some(0),
            Self::Exact(v) => Some(v),
        }
    }

    /// Whether a stream at `current` meets this expectation.
    pub fn allows(self, current: u64) -> bool {
        self.version().is_none_or(|v| v == current)
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_printable_and_bounded() {
        assert_eq!(
            StreamId::parse("session-42").unwrap().as_str(),
            "session-42"
        );
        for bad in ["", "a b", "tab\there", &"x".repeat(201)] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?}");
        }
        let json: Result<StreamId, _> = serde_json::from_str("\"a b\"");
        assert!(json.is_err());
    }

    #[test]
    fn expectations() {
        assert!(ExpectedVersion::Any.allows(7));
        assert!(ExpectedVersion::NoStream.allows(0));
        assert!(!ExpectedVersion::NoStream.allows(1));
        assert!(ExpectedVersion::Exact(0).allows(0));
        assert!(!ExpectedVersion::Exact(3).allows(4));
        assert_eq!(ExpectedVersion::from_option(None), ExpectedVersion::Any);
        assert_eq!(
            ExpectedVersion::from_option(Some(2)),
            ExpectedVersion::Exact(2)
        );
    }
}
