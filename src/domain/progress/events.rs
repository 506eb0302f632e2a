//! The events of the Progress context (seed 002's DomainEvents), their typed payloads, and the
//! rules an append of them must keep.
//!
//! An event's `type` names its payload; `data` is the payload's JSON object with exactly its
//! fields. The user an event is about is in `data.user_id` where the payload has one, else in
//! `metadata.user_id` (required then); where both are given they must agree.
//!
//! Streams are named `<category>-<id>`. Three categories are typed, and take only their own
//! events: `session-…` (SessionStarted, CorrectAnswerGiven, WrongAnswerGiven,
//! SessionCompleted), `user-…` (UserCreated, UserSettingsChanged) and `review-…`
//! (ReviewProcessed). `tasks-…` is the service's own (TaskFinished) and refused to clients.
//! Any other stream takes any event type; a known type is checked wherever it is appended,
//! since projections read events by type from every stream.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UserTimeZone;
use crate::domain::UserId;
use crate::domain::eventstore::{EventEnvelope, EventError, EventMetadata, StreamId};

/// The type of the service's own task outcome events, in `tasks-<UTC day>` streams.
pub const TASK_FINISHED: &str = "TaskFinished";

/// Longest id of a session or item.
const MAX_ID_LEN: usize = 200;

/// A learning session began (Learning context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    /// The session.
    pub session_id: String,
    /// Who studies.
    pub user_id: String,
    /// Items planned for the session.
    pub item_count: u32,
}

/// An answer in a session: `CorrectAnswerGiven` or `WrongAnswerGiven`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerGiven {
    /// The session.
    pub session_id: String,
    /// The item answered.
    pub item_id: String,
    /// How long the answer took.
    pub response_time_ms: u64,
}

/// A session ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCompleted {
    /// The session.
    pub session_id: String,
    /// Its score.
    pub score: u32,
    /// Time studied.
    pub duration_seconds: u64,
}

/// The scheduler reviewed an item (Learning Algorithm context, SM-2 style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewProcessed {
    /// Whose item.
    pub user_id: String,
    /// The item.
    pub item_id: String,
    /// Days until the next review; the mastery bucket follows it.
    pub new_interval: u32,
    /// SM-2's easiness factor.
    pub easiness_factor: f32,
}

/// A user signed up (User context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreated {
    /// The user.
    pub user_id: String,
    /// Their address; checked, never copied into a read model.
    pub email: String,
    /// Their IANA time zone, if known (else UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A user changed their settings (User context): for progress, their time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettingsChanged {
    /// The user.
    pub user_id: String,
    /// Their new IANA time zone; days from the next event on fall in it.
    pub time_zone: String,
}

/// One learning event, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum LearningEvent {
    /// `SessionStarted`.
    SessionStarted(SessionStarted),
    /// `CorrectAnswerGiven`.
    CorrectAnswerGiven(AnswerGiven),
    /// `WrongAnswerGiven`: what accuracy needs besides the correct answers.
    WrongAnswerGiven(AnswerGiven),
    /// `SessionCompleted`.
    SessionCompleted(SessionCompleted),
    /// `ReviewProcessed`.
    ReviewProcessed(ReviewProcessed),
    /// `UserCreated`.
    UserCreated(UserCreated),
    /// `UserSettingsChanged`.
    UserSettingsChanged(UserSettingsChanged),
}

/// Parses `data` as `T`, saying which event and field is wrong.
fn payload<T: DeserializeOwned>(event_type: &str, data: &Value) -> Result<T, String> {
    if !data.is_object() {
        return Err(format!("{event_type}: data must be a JSON object"));
    }
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("{event_type}: {inner}")
        } else {
            format!("{event_type}: {path}: {inner}")
        }
    })
}

/// Checks an id field: 1 to 200 characters, no control characters.
fn check_id(event_type: &str, field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!(
            "{event_type}: {field} must be 1-{MAX_ID_LEN} printable characters"
        ));
    }
    Ok(())
}

impl LearningEvent {
    /// Every type name, in the seed's order.
    pub const TYPES: [&'static str; 7] = [
        "SessionStarted",
        "CorrectAnswerGiven",
        "WrongAnswerGiven",
        "SessionCompleted",
        "ReviewProcessed",
        "UserCreated",
        "UserSettingsChanged",
    ];

    /// Decodes and checks an event of type `event_type`. `Ok(None)`: not a learning event.
    pub fn decode(event_type: &str, data: &Value) -> Result<Option<Self>, String> {
        let t = event_type;
        let event = match t {
            "SessionStarted" => Self::SessionStarted(payload(t, data)?),
            "CorrectAnswerGiven" => Self::CorrectAnswerGiven(payload(t, data)?),
            "WrongAnswerGiven" => Self::WrongAnswerGiven(payload(t, data)?),
            "SessionCompleted" => Self::SessionCompleted(payload(t, data)?),
            "ReviewProcessed" => Self::ReviewProcessed(payload(t, data)?),
            "UserCreated" => Self::UserCreated(payload(t, data)?),
            "UserSettingsChanged" => Self::UserSettingsChanged(payload(t, data)?),
            _ => return Ok(None),
        };
        event.check(t)?;
        Ok(Some(event))
    }

    /// The rules beyond field types.
    fn check(&self, t: &str) -> Result<(), String> {
        match self {
            Self::SessionStarted(e) => {
                check_id(t, "session_id", &e.session_id)?;
                check_id(t, "user_id", &e.user_id)
            }
            Self::CorrectAnswerGiven(e) | Self::WrongAnswerGiven(e) => {
                check_id(t, "session_id", &e.session_id)?;
                check_id(t, "item_id", &e.item_id)
            }
            Self::SessionCompleted(e) => check_id(t, "session_id", &e.session_id),
            Self::ReviewProcessed(e) => {
                check_id(t, "user_id", &e.user_id)?;
                check_id(t, "item_id", &e.item_id)?;
                if !e.easiness_factor.is_finite() || e.easiness_factor <= 0.0 {
                    return Err(format!("{t}: easiness_factor must be a positive number"));
                }
                Ok(())
            }
            Self::UserCreated(e) => {
                check_id(t, "user_id", &e.user_id)?;
                let at = e.email.find('@');
                if at.is_none_or(|i| i == 0 || i + 1 == e.email.len()) || e.email.len() > 320 {
                    return Err(format!("{t}: email is not an address"));
                }
                if let Some(zone) = &e.time_zone {
                    UserTimeZone::parse(zone).map_err(|m| format!("{t}: {m}"))?;
                }
                Ok(())
            }
            Self::UserSettingsChanged(e) => {
                check_id(t, "user_id", &e.user_id)?;
                UserTimeZone::parse(&e.time_zone).map_err(|m| format!("{t}: {m}"))?;
                Ok(())
            }
        }
    }

    /// The user named in the payload, if the payload names one.
    fn data_user(&self) -> Option<&str> {
        match self {
            Self::SessionStarted(e) => Some(&e.user_id),
            Self::ReviewProcessed(e) => Some(&e.user_id),
            Self::UserCreated(e) => Some(&e.user_id),
            Self::UserSettingsChanged(e) => Some(&e.user_id),
            Self::CorrectAnswerGiven(_) | Self::WrongAnswerGiven(_) | Self::SessionCompleted(_) => {
                None
            }
        }
    }

    /// The user this event is about: the payload's, else the metadata's.
    pub fn user(&self, event_type: &str, metadata: &EventMetadata) -> Result<UserId, String> {
        event_user(event_type, self.data_user(), metadata)
    }

    /// The zone this event sets, if it sets one.
    pub fn time_zone(&self) -> Option<UserTimeZone> {
        let name = match self {
            Self::UserCreated(e) => e.time_zone.as_deref()?,
            Self::UserSettingsChanged(e) => &e.time_zone,
            _ => return None,
        };
        UserTimeZone::parse(name).ok()
    }

    /// The item this event is about, if any.
    pub fn item(&self) -> Option<&str> {
        match self {
            Self::CorrectAnswerGiven(e) | Self::WrongAnswerGiven(e) => Some(&e.item_id),
            Self::ReviewProcessed(e) => Some(&e.item_id),
            _ => None,
        }
    }
}

/// The user an event is about: `data_user` (from the payload) if given, else the metadata's;
/// both given must agree.
pub fn event_user(
    event_type: &str,
    data_user: Option<&str>,
    metadata: &EventMetadata,
) -> Result<UserId, String> {
    let meta = metadata.user_id.as_ref();
    match (data_user, meta) {
        (Some(d), Some(m)) if d != m.as_str() => Err(format!(
            "{event_type}: data.user_id {d:?} and metadata.user_id {:?} differ",
            m.as_str()
        )),
        (Some(d), _) => UserId::parse(d).map_err(|e| format!("{event_type}: user_id: {e}")),
        (None, Some(m)) => Ok(m.clone()),
        (None, None) => Err(format!("{event_type}: metadata.user_id is required")),
    }
}

/// The event types a typed stream category takes, or `None` for an untyped stream.
fn category_types(stream: &StreamId) -> Option<(&'static str, &'static [&'static str])> {
    let category = stream.as_str().split('-').next().unwrap_or_default();
    match category {
        "session" => Some((
            "session",
            &[
                "SessionStarted",
                "CorrectAnswerGiven",
                "WrongAnswerGiven",
                "SessionCompleted",
            ],
        )),
        "user" => Some(("user", &["UserCreated", "UserSettingsChanged"])),
        "review" => Some(("review", &["ReviewProcessed"])),
        _ => None,
    }
}

/// Checks an event a client appends to `stream`: the typed streams' types, the known types'
/// payloads and users, and the streams and types reserved to the service.
pub fn check_append(stream: &StreamId, event: &EventEnvelope) -> Result<(), EventError> {
    let t = event.event_type.as_str();
    if stream.as_str().starts_with("tasks-") || t == TASK_FINISHED {
        return Err(EventError::Invalid(format!(
            "tasks-… streams and {TASK_FINISHED} events are written by the service itself"
        )));
    }
    if !event.data.is_object() {
        return Err(EventError::Invalid(format!(
            "{t}: data must be a JSON object"
        )));
    }
    if let Some((category, types)) = category_types(stream)
        && !types.contains(&t)
    {
        return Err(EventError::Invalid(format!(
            "unknown event type {t:?} for a {category}-… stream (it takes {})",
            types.join(", ")
        )));
    }
    if let Some(known) = LearningEvent::decode(t, &event.data).map_err(EventError::Invalid)? {
        known
            .user(t, &event.metadata)
            .map_err(EventError::Invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::domain::eventstore::EventType;

    fn envelope(t: &str, data: Value, user: Option<&str>) -> EventEnvelope {
        let mut meta = EventMetadata::at(Utc::now());
        meta.user_id = user.map(|u| UserId::parse(u).unwrap());
        EventEnvelope::new(EventType::parse(t).unwrap(), data, meta)
    }

    fn stream(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    #[test]
    fn payloads_decode_with_their_exact_fields() {
        let e = LearningEvent::decode(
            "SessionCompleted",
            &json!({"session_id": "s1", "score": 8, "duration_seconds": 600}),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(e, LearningEvent::SessionCompleted(ref c) if c.duration_seconds == 600));
        assert_eq!(LearningEvent::decode("Other", &json!({})), Ok(None));
        let wrong = LearningEvent::decode(
            "SessionCompleted",
            &json!({"session_id": "s1", "score": "high", "duration_seconds": 600}),
        );
        assert!(
            wrong
                .unwrap_err()
                .starts_with("SessionCompleted: score: invalid type")
        );
        let extra = LearningEvent::decode(
            "SessionStarted",
            &json!({"session_id": "s1", "user_id": "u", "item_count": 3, "x": 1}),
        );
        assert!(extra.unwrap_err().contains("unknown field"));
        let bad_ef = LearningEvent::decode(
            "ReviewProcessed",
            &json!({"user_id": "u", "item_id": "i", "new_interval": 3, "easiness_factor": -1.0}),
        );
        assert!(bad_ef.is_err());
        let bad_zone = LearningEvent::decode(
            "UserSettingsChanged",
            &json!({"user_id": "u", "time_zone": "Nowhere/Land"}),
        );
        assert!(bad_zone.unwrap_err().contains("IANA"));
    }

    #[test]
    fn the_user_comes_from_the_payload_or_the_metadata() {
        let answer = json!({"session_id": "s1", "item_id": "i1", "response_time_ms": 900});
        let ok = envelope("CorrectAnswerGiven", answer.clone(), Some("alice"));
        assert!(check_append(&stream("session-1"), &ok).is_ok());
        let anonymous = envelope("CorrectAnswerGiven", answer, None);
        let err = check_append(&stream("session-1"), &anonymous).unwrap_err();
        assert!(err.to_string().contains("metadata.user_id"), "{err}");
        let started = json!({"session_id": "s1", "user_id": "alice", "item_count": 3});
        let differ = envelope("SessionStarted", started.clone(), Some("bob"));
        assert!(check_append(&stream("session-1"), &differ).is_err());
        let from_data = envelope("SessionStarted", started, None);
        assert!(check_append(&stream("session-1"), &from_data).is_ok());
    }

    #[test]
    fn typed_streams_take_only_their_types() {
        let e = envelope("Whatever", json!({"a": 1}), None);
        let err = check_append(&stream("session-9"), &e).unwrap_err();
        assert!(err.to_string().contains("unknown event type"), "{err}");
        assert!(check_append(&stream("inventory-9"), &e).is_ok());
        // A known type is checked in any stream.
        let bad = envelope("SessionCompleted", json!({"session_id": 5}), Some("a"));
        assert!(check_append(&stream("misc-1"), &bad).is_err());
        // The service's own.
        assert!(check_append(&stream("tasks-alice"), &e).is_err());
        let finished = envelope(TASK_FINISHED, json!({}), Some("a"));
        assert!(check_append(&stream("misc-1"), &finished).is_err());
        let not_object = envelope("Whatever", json!([1]), None);
        assert!(check_append(&stream("misc-1"), &not_object).is_err());
    }
}
