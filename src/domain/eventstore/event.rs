//! Events: what a caller appends ([`EventEnvelope`]) and what it reads back
//! ([`PersistedEvent`]).

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::name::checked_name;
use super::{EventError, StreamId};
use crate::domain::UserId;

/// An event's id, chosen by the appender: the same id appended again is the same event (an
/// idempotent retry), never a second one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID (a client's, or one read back from storage).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// Parses a client-supplied id.
    pub fn parse(raw: &str) -> Result<Self, EventError> {
        Uuid::parse_str(raw.trim())
            .map(Self)
            .map_err(|_| EventError::Invalid(format!("event id {raw:?} is not a UUID")))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of event it is, such as `SessionCompleted`: projections dispatch on it and
/// readers filter by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

checked_name!(EventType, "event type");

/// Who caused an event and when it happened (seed 002's EventMetadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together every event of one request or workflow.
    pub correlation_id: Option<String>,
    /// The event or command that caused this one.
    pub causation_id: Option<String>,
    /// The user the event is about or was caused by; read models group by it.
    pub user_id: Option<UserId>,
    /// When it happened, as the appender says (microseconds); `read_events_by_type`
    /// filters on it.
    pub timestamp: DateTime<Utc>,
}

impl EventMetadata {
    /// Longest accepted correlation or causation id.
    pub const MAX_ID_LEN: usize = 200;

    /// Metadata of an event that happened at `timestamp` (cut to microseconds), with no
    /// correlation, causation or user.
    pub fn at(timestamp: DateTime<Utc>) -> Self {
        Self {
            correlation_id: None,
            causation_id: None,
            user_id: None,
            timestamp: timestamp.trunc_subsecs(6),
        }
    }

    /// With this correlation id.
    pub fn correlated(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// With this causation id.
    pub fn caused_by(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// With this user.
    pub fn by_user(mut self, user: UserId) -> Self {
        self.user_id = Some(user);
        self
    }

    /// Checks the ids' lengths.
    pub(super) fn check(&self) -> Result<(), EventError> {
        for (name, id) in [
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
        ] {
            if id
                .as_deref()
                .is_some_and(|id| id.is_empty() || id.len() > Self::MAX_ID_LEN)
            {
                return Err(EventError::Invalid(format!(
                    "{name} must be 1-{} characters",
                    Self::MAX_ID_LEN
                )));
            }
        }
        Ok(())
    }
}

/// An event to append: its id, type, JSON data and metadata. The store gives it its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Its id; appending the same id again is an idempotent retry.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// Its payload, shaped per type.
    pub data: Value,
    /// Who and when.
    pub metadata: EventMetadata,
}

impl EventEnvelope {
    /// An event with a fresh id.
    pub fn new(event_type: EventType, data: Value, metadata: EventMetadata) -> Self {
        Self {
            event_id: EventId::new(),
            event_type,
            data,
            metadata,
        }
    }

    /// The same event under the id `id` (a client's, so that its retries are recognised).
    pub fn with_id(mut self, id: EventId) -> Self {
        self.event_id = id;
        self
    }
}

/// An event as stored: the envelope, numbered (seed 002's PersistedEvent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedEvent {
    /// Its id.
    pub event_id: EventId,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its place in its stream: 1, 2, 3, ... without gaps.
    pub stream_version: u64,
    /// Its place among every event of every stream: increasing in commit order, from 1.
    pub global_position: u64,
    /// Its type.
    pub event_type: EventType,
    /// Its payload.
    pub event_data: Value,
    /// Who and when, as appended.
    pub metadata: EventMetadata,
    /// When the store recorded it (microseconds).
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_ids_parse() {
        assert!(EventType::parse("SessionCompleted").is_ok());
        assert!(EventType::parse("").is_err());
        assert!(EventType::parse("two words").is_err());
        let id = EventId::new();
        assert_eq!(EventId::parse(&id.to_string()).unwrap(), id);
        assert!(EventId::parse("nope").is_err());
    }

    #[test]
    fn metadata_is_cut_to_microseconds_and_checked() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let m = EventMetadata::at(t).correlated("c-1").caused_by("e-0");
        assert_eq!(m.timestamp.timestamp_subsec_nanos(), 123_456_000);
        assert!(m.check().is_ok());
        assert!(EventMetadata::at(t).correlated("").check().is_err());
        let long = "x".repeat(EventMetadata::MAX_ID_LEN + 1);
        assert!(EventMetadata::at(t).caused_by(long).check().is_err());
    }
}
