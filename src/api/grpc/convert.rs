//! Conversions between protobuf messages and domain values.

use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::api::proto;
use crate::domain::{Task, TaskStatus};

/// A protobuf `Struct` as a JSON object. Whole numbers become JSON integers (protobuf has only
/// doubles), so `{"delay_ms": 5}` means the same over gRPC as over HTTP.
pub fn struct_to_json(s: prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect(),
    )
}

/// A protobuf `Value` as JSON (whole numbers as integers, as in [`struct_to_json`]).
pub fn value_to_json(v: prost_types::Value) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// A JSON value as a protobuf `Value`.
pub fn json_to_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(object_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn object_to_struct(o: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
    }
}

/// A protobuf timestamp as a time; `None` when out of range.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A time as a protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The protobuf status of a domain status.
pub fn status_to_proto(s: TaskStatus) -> proto::TaskStatus {
    match s {
        TaskStatus::Pending => proto::TaskStatus::Pending,
        TaskStatus::Processing => proto::TaskStatus::Processing,
        TaskStatus::Completed => proto::TaskStatus::Completed,
        TaskStatus::Failed => proto::TaskStatus::Failed,
        TaskStatus::Cancelled => proto::TaskStatus::Cancelled,
    }
}

/// The domain status of a protobuf status; `None` for UNSPECIFIED (no filter).
pub fn status_from_proto(s: proto::TaskStatus) -> Option<TaskStatus> {
    match s {
        proto::TaskStatus::Unspecified => None,
        proto::TaskStatus::Pending => Some(TaskStatus::Pending),
        proto::TaskStatus::Processing => Some(TaskStatus::Processing),
        proto::TaskStatus::Completed => Some(TaskStatus::Completed),
        proto::TaskStatus::Failed => Some(TaskStatus::Failed),
        proto::TaskStatus::Cancelled => Some(TaskStatus::Cancelled),
    }
}

/// A task as gRPC clients see it.
pub fn task_to_proto(t: Task) -> proto::Task {
    let (related_entity_type, related_entity_id) = match t.related_entity {
        Some(r) => (Some(r.entity_type), Some(r.entity_id)),
        None => (None, None),
    };
    proto::Task {
        task_id: t.id.to_string(),
        r#type: t.task_type.as_str().to_owned(),
        status: status_to_proto(t.status) as i32,
        priority: i32::from(t.priority.value()),
        progress: i32::from(t.progress),
        user_id: t.user_id.to_string(),
        payload: Some(json_to_value(t.payload)),
        result: t.result.map(json_to_value),
        error: t.error.map(|e| proto::TaskError {
            class: e.class.as_str().to_owned(),
            message: e.message,
            provider: e.provider.unwrap_or_default(),
        }),
        retry_count: t.retry_count as i32,
        attempts: t.attempts as i32,
        max_retries: t.max_retries as i32,
        idempotency_key: t.idempotency_key,
        created_at: Some(timestamp(t.created_at)),
        started_at: t.started_at.map(timestamp),
        completed_at: t.completed_at.map(timestamp),
        related_entity_type,
        related_entity_id,
        timeout_ms: i64::try_from(t.timeout.as_millis()).unwrap_or(i64::MAX),
        queue: t.queue.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_numbers_stay_integers() {
        let v = json!({"delay_ms": 5, "ratio": 0.5, "nested": {"list": [1, "a", null, true]}});
        let Kind::StructValue(s) = json_to_value(v.clone()).kind.unwrap() else {
            panic!()
        };
        assert_eq!(struct_to_json(s), v);
    }
}
