//! What each submitted task is: its type and payload, as JSON for HTTP and as a protobuf
//! `Struct` for gRPC (the same fields either way).

use std::collections::BTreeMap;

use serde_json::json;

/// What each submitted task is.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `echo`, or a type that goes to the AI providers.
    pub task_type: String,
    /// Echo only: how long the worker sleeps per task (0 = none).
    pub delay_ms: u64,
}

impl Workload {
    /// The payload of task `k`.
    pub fn payload_json(&self, k: usize) -> serde_json::Value {
        if self.task_type != "echo" {
            json!({ "i": k, "text": format!("Benchmark text number {k}. It is short."), "cache": false })
        } else if self.delay_ms > 0 {
            json!({ "i": k, "delay_ms": self.delay_ms })
        } else {
            json!({ "i": k })
        }
    }

    /// The payload of task `k` as a protobuf `Struct`.
    pub fn payload_struct(&self, k: usize) -> prost_types::Struct {
        use prost_types::value::Kind;
        fn to_value(v: &serde_json::Value) -> prost_types::Value {
            let kind = match v {
                serde_json::Value::Bool(b) => Kind::BoolValue(*b),
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
                serde_json::Value::String(s) => Kind::StringValue(s.clone()),
                _ => Kind::NullValue(0),
            };
            prost_types::Value { kind: Some(kind) }
        }
        let fields = match self.payload_json(k) {
            serde_json::Value::Object(map) => {
                map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()
            }
            _ => BTreeMap::new(),
        };
        prost_types::Struct { fields }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::value::Kind;
    use serde_json::json;

    use super::*;

    fn work(task_type: &str, delay_ms: u64) -> Workload {
        Workload {
            task_type: task_type.into(),
            delay_ms,
        }
    }

    #[test]
    fn payloads_by_task_type() {
        assert_eq!(work("echo", 0).payload_json(7), json!({ "i": 7 }));
        assert_eq!(
            work("echo", 50).payload_json(7),
            json!({ "i": 7, "delay_ms": 50 })
        );
        let ai = work("summarize", 50).payload_json(7);
        assert_eq!(ai["cache"], false);
        assert_eq!(ai["text"], "Benchmark text number 7. It is short.");
    }

    #[test]
    fn the_struct_has_the_same_fields() {
        let s = work("summarize", 0).payload_struct(3);
        assert_eq!(s.fields.len(), 3);
        assert_eq!(s.fields["i"].kind, Some(Kind::NumberValue(3.0)));
        assert_eq!(s.fields["cache"].kind, Some(Kind::BoolValue(false)));
    }
}
