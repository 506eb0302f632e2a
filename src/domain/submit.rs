//! A submit request, who sends it, what the deployment allows, and the validated [`NewTask`]
//! that comes out: the one path from client input (HTTP, gRPC, batch, the jobs API) to a task.

use std::time::Duration;

use serde_json::Value;

use super::payload::{self, kind_of};
use super::{DomainError, Priority, RelatedEntity, TaskType, Tier, UserId};

/// Largest accepted payload, measured as encoded JSON.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest accepted idempotency key.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
/// Longest accepted related-entity type or id.
const MAX_ENTITY_LEN: usize = 100;

/// A submit as a client sent it, not yet checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskRequest {
    /// The type's wire name.
    pub task_type: String,
    /// The type's input; `null` means `{}`.
    pub payload: Value,
    /// 1-10; `None` for the type's default raised by the user's tier.
    pub priority: Option<i64>,
    /// Deduplicates repeated submits of the same user.
    pub idempotency_key: Option<String>,
    /// `(entity_type, entity_id)`, both or neither.
    pub related_entity: Option<(String, String)>,
    /// This task's own per-attempt timeout.
    pub timeout_seconds: Option<u64>,
}

impl TaskRequest {
    /// A request of `task_type` with `payload` and nothing else.
    pub fn new(task_type: &str, payload: Value) -> Self {
        Self {
            task_type: task_type.to_owned(),
            payload,
            ..Self::default()
        }
    }

    /// The same with an explicit priority.
    pub fn with_priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// Who submits: the owner of the new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// The owner.
    pub user_id: UserId,
    /// Their plan, which raises default priorities.
    pub tier: Tier,
    /// Admins are not held to the priority ceiling.
    pub admin: bool,
}

impl Submitter {
    /// A `free` user.
    pub fn user(user_id: UserId) -> Self {
        Self {
            user_id,
            tier: Tier::Free,
            admin: false,
        }
    }
}

/// What this deployment lets a submit ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPolicy {
    /// Largest `timeout_seconds` (`MAX_TASK_TIMEOUT`).
    pub max_timeout: Duration,
    /// Whether the development type `echo` is served (`ENABLE_ECHO`).
    pub echo_enabled: bool,
    /// Longest `delay_ms` an echo may ask for (`TASK_TIMEOUT`, at most 10 minutes).
    pub echo_max_delay: Duration,
    /// Highest priority a user's task gets, asked for or raised by a tier
    /// (`MAX_USER_PRIORITY`); admins may use up to 10.
    pub priority_ceiling: Priority,
}

impl Default for SubmitPolicy {
    /// The most permissive policy: echo on, 10-minute delays, an hour's timeout, ceiling 10.
    fn default() -> Self {
        Self {
            max_timeout: Duration::from_secs(3600),
            echo_enabled: true,
            echo_max_delay: Duration::from_millis(payload::MAX_ECHO_DELAY_MS as u64),
            priority_ceiling: Priority::MAX,
        }
    }
}

/// A validated request to create a task; the only way to build a [`super::Task`] from client
/// input.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Owner.
    pub user_id: UserId,
    /// Kind of work.
    pub task_type: TaskType,
    /// Type-specific input, a JSON object under [`MAX_PAYLOAD_BYTES`] that matches the type's
    /// schema.
    pub payload: Value,
    /// Explicit, or the type's default raised by the submitter's tier.
    pub priority: Priority,
    /// Deduplicates repeated submits of the same user.
    pub idempotency_key: Option<String>,
    /// Optional link to a caller's entity.
    pub related_entity: Option<RelatedEntity>,
    /// This task's own per-attempt timeout, overriding the type's and the global one.
    pub timeout: Option<Duration>,
}

impl NewTask {
    /// Checks every part of `request` from `by` against the type's payload schema and
    /// `policy`; errors name the field at fault.
    pub fn parse(
        by: &Submitter,
        request: TaskRequest,
        policy: &SubmitPolicy,
    ) -> Result<Self, DomainError> {
        let task_type: TaskType = request.task_type.parse()?;
        if task_type == TaskType::Chat {
            return Err(DomainError::Invalid(
                "chat is not a task type; talk through /api/v1/chat/sessions (or ChatService)"
                    .into(),
            ));
        }
        if task_type == TaskType::Echo && !policy.echo_enabled {
            return Err(DomainError::Invalid(
                "task type \"echo\" is a development tool and is disabled here (ENABLE_ECHO=true turns it on)"
                    .into(),
            ));
        }
        let payload = match request.payload {
            Value::Null => Value::Object(Default::default()),
            Value::Object(map) => Value::Object(map),
            other => {
                return Err(DomainError::Invalid(format!(
                    "payload must be a JSON object, got {}",
                    kind_of(&other)
                )));
            }
        };
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            return Err(DomainError::TooLarge(format!(
                "payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )));
        }
        payload::schema(task_type).validate(&payload)?;
        if task_type == TaskType::Echo {
            check_echo_delay(&payload, policy.echo_max_delay)?;
        }
        if task_type == TaskType::Prompt
            && let Some(schema) = payload.get("schema")
        {
            payload::check_schema("payload.schema", schema).map_err(DomainError::Invalid)?;
        }
        let priority = priority(by, task_type, request.priority, policy.priority_ceiling)?;
        let idempotency_key = request.idempotency_key.filter(|k| !k.is_empty());
        if let Some(key) = &idempotency_key
            && key.len() > MAX_IDEMPOTENCY_KEY_LEN
        {
            return Err(DomainError::Invalid(format!(
                "idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_LEN} bytes"
            )));
        }
        let related_entity = match request.related_entity {
            None => None,
            Some((t, i)) if t.is_empty() || i.is_empty() => {
                return Err(DomainError::Invalid(
                    "related_entity_type and related_entity_id must be given together".into(),
                ));
            }
            Some((t, i)) if t.len() > MAX_ENTITY_LEN || i.len() > MAX_ENTITY_LEN => {
                return Err(DomainError::Invalid(format!(
                    "related entity type and id must be at most {MAX_ENTITY_LEN} bytes"
                )));
            }
            Some((entity_type, entity_id)) => Some(RelatedEntity {
                entity_type,
                entity_id,
            }),
        };
        let timeout = match request.timeout_seconds {
            None => None,
            Some(secs) if secs == 0 || secs > policy.max_timeout.as_secs() => {
                return Err(DomainError::Invalid(format!(
                    "timeout_seconds must be between 1 and {}",
                    policy.max_timeout.as_secs()
                )));
            }
            Some(secs) => Some(Duration::from_secs(secs)),
        };
        Ok(Self {
            user_id: by.user_id.clone(),
            task_type,
            payload,
            priority,
            idempotency_key,
            related_entity,
            timeout,
        })
    }
}

/// Seed 003's priority logic: an explicit priority as asked (up to the ceiling for users),
/// otherwise the type's default raised by the tier's boost, capped at the ceiling.
fn priority(
    by: &Submitter,
    task_type: TaskType,
    asked: Option<i64>,
    ceiling: Priority,
) -> Result<Priority, DomainError> {
    let ceiling = if by.admin { Priority::MAX } else { ceiling };
    match asked {
        Some(p) => {
            let p = Priority::new(p)?;
            if p > ceiling {
                return Err(DomainError::Invalid(format!(
                    "priority {} is above {}, the highest a user's task may have here (MAX_USER_PRIORITY)",
                    p.value(),
                    ceiling.value()
                )));
            }
            Ok(p)
        }
        None => {
            let raised = task_type.default_priority().value() + by.tier.priority_boost();
            Ok(Priority::new(i64::from(raised))
                .unwrap_or(Priority::MAX)
                .min(ceiling))
        }
    }
}

/// An echo may not wait longer than a task may run (`TASK_TIMEOUT`).
fn check_echo_delay(payload: &Value, max: Duration) -> Result<(), DomainError> {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    match payload.get("delay_ms").and_then(Value::as_u64) {
        Some(ms) if ms > max_ms => Err(DomainError::Invalid(format!(
            "payload.delay_ms must be at most {max_ms} (TASK_TIMEOUT)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alice() -> Submitter {
        Submitter::user(UserId::parse("alice").unwrap())
    }

    fn parse(by: &Submitter, r: TaskRequest, p: &SubmitPolicy) -> Result<NewTask, String> {
        NewTask::parse(by, r, p).map_err(|e| e.to_string())
    }

    #[test]
    fn payload_must_be_a_bounded_object_matching_the_schema() {
        let p = SubmitPolicy::default();
        let err = parse(&alice(), TaskRequest::new("echo", json!([1])), &p).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let err = parse(&alice(), TaskRequest::new("echo", json!({ "s": big })), &p).unwrap_err();
        assert!(err.contains("limit"), "{err}");
        let err = parse(&alice(), TaskRequest::new("summarize", json!({})), &p).unwrap_err();
        assert!(err.contains("payload.text is required"), "{err}");
        let ok = parse(&alice(), TaskRequest::new("echo", Value::Null), &p).unwrap();
        assert_eq!(ok.payload, json!({}));
    }

    #[test]
    fn request_timeout_is_bounded() {
        let p = SubmitPolicy {
            max_timeout: Duration::from_secs(60),
            ..SubmitPolicy::default()
        };
        for bad in [0, 61] {
            let r = TaskRequest {
                timeout_seconds: Some(bad),
                ..TaskRequest::new("echo", json!({}))
            };
            assert!(parse(&alice(), r, &p).is_err());
        }
        let r = TaskRequest {
            timeout_seconds: Some(5),
            ..TaskRequest::new("echo", json!({}))
        };
        assert_eq!(
            parse(&alice(), r, &p).unwrap().timeout,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn echo_can_be_disabled_and_its_delay_is_capped() {
        let p = SubmitPolicy {
            echo_enabled: false,
            ..SubmitPolicy::default()
        };
        let err = parse(&alice(), TaskRequest::new("echo", json!({})), &p).unwrap_err();
        assert!(err.contains("ENABLE_ECHO"), "{err}");
        let p = SubmitPolicy {
            echo_max_delay: Duration::from_secs(2),
            ..SubmitPolicy::default()
        };
        let slow = TaskRequest::new("echo", json!({"delay_ms": 2001}));
        assert!(
            parse(&alice(), slow, &p)
                .unwrap_err()
                .contains("TASK_TIMEOUT")
        );
        assert!(
            parse(
                &alice(),
                TaskRequest::new("echo", json!({"delay_ms": 2000})),
                &p
            )
            .is_ok()
        );
    }

    #[test]
    fn tiers_raise_default_priorities_under_the_ceiling() {
        let p = SubmitPolicy {
            priority_ceiling: Priority::new(9).unwrap(),
            ..SubmitPolicy::default()
        };
        let text = json!({"text": "t"});
        let cases = [
            (Tier::Free, "summarize", 7),
            (Tier::Pro, "summarize", 8),
            (Tier::Enterprise, "summarize", 9),
            (Tier::Enterprise, "echo", 7),
            (Tier::Pro, "validate_summary", 4),
        ];
        for (tier, t, want) in cases {
            let by = Submitter { tier, ..alice() };
            let payload = match t {
                "summarize" => text.clone(),
                "validate_summary" => json!({"original": "o", "summary": "s"}),
                _ => json!({}),
            };
            let got = parse(&by, TaskRequest::new(t, payload), &p).unwrap();
            assert_eq!(got.priority.value(), want, "{tier} {t}");
        }
        // The ceiling caps a boost and refuses an explicit priority above it, for users only.
        let low = SubmitPolicy {
            priority_ceiling: Priority::new(6).unwrap(),
            ..p.clone()
        };
        let rich = Submitter {
            tier: Tier::Enterprise,
            ..alice()
        };
        let got = parse(&rich, TaskRequest::new("summarize", text.clone()), &low).unwrap();
        assert_eq!(got.priority.value(), 6);
        let err = parse(
            &rich,
            TaskRequest::new("echo", json!({})).with_priority(10),
            &p,
        )
        .unwrap_err();
        assert!(err.contains("MAX_USER_PRIORITY"), "{err}");
        let admin = Submitter {
            admin: true,
            ..alice()
        };
        let got = parse(
            &admin,
            TaskRequest::new("echo", json!({})).with_priority(10),
            &p,
        );
        assert_eq!(got.unwrap().priority.value(), 10);
        assert!(
            parse(
                &alice(),
                TaskRequest::new("echo", json!({})).with_priority(11),
                &p
            )
            .is_err()
        );
    }
}
