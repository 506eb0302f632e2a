//! The JSON-schema subset a `prompt` task's answer is held to: `type`, `properties`,
//! `required`, `items`, `enum` and `additionalProperties: false`. Enough to say "an object with
//! these fields of these kinds", which is what a pipeline stage needs from a model; other
//! keywords are accepted and ignored, so a fuller schema still works as documentation.

use serde_json::Value;

use super::kind_of;

/// The `type` names this subset knows.
const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Checks that `schema` is a schema this subset can apply: an object whose `type`, where
/// given, is a known name, recursively. The error names the path at fault.
pub fn check_schema(path: &str, schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Err(format!(
            "{path} must be a JSON schema object, got {}",
            kind_of(schema)
        ));
    };
    if let Some(t) = map.get("type") {
        let known = t.as_str().is_some_and(|t| TYPES.contains(&t));
        if !known {
            return Err(format!(
                "{path}.type must be one of {}, got {t}",
                TYPES.join(", ")
            ));
        }
    }
    if let Some(props) = map.get("properties") {
        let Value::Object(props) = props else {
            return Err(format!("{path}.properties must be an object"));
        };
        for (name, sub) in props {
            check_schema(&format!("{path}.properties.{name}"), sub)?;
        }
    }
    if let Some(required) = map.get("required")
        && !required
            .as_array()
            .is_some_and(|r| r.iter().all(Value::is_string))
    {
        return Err(format!("{path}.required must be a list of field names"));
    }
    if let Some(items) = map.get("items") {
        check_schema(&format!("{path}.items"), items)?;
    }
    Ok(())
}

/// Whether `value` matches `schema`; the error says where and how it does not (for the
/// task's error, so the model's mistake can be read).
pub fn matches(schema: &Value, value: &Value) -> Result<(), String> {
    check_value("answer", schema, value)
}

fn check_value(path: &str, schema: &Value, value: &Value) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Ok(());
    };
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !ok {
            return Err(format!("{path} must be {t}, got {}", kind_of(value)));
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "{path} must be one of {}",
            Value::from(allowed.clone())
        ));
    }
    if let Value::Object(fields) = value {
        if let Some(required) = s.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return Err(format!("{path}.{name} is required"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (name, v) in fields {
            match props.and_then(|p| p.get(name)) {
                Some(sub) => check_value(&format!("{path}.{name}"), sub, v)?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}.{name} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, s.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check_value(&format!("{path}[{i}]"), sub, v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn menu() -> Value {
        json!({
            "type": "object",
            "required": ["translation"],
            "properties": {
                "translation": {"type": "string"},
                "allergens": {"type": "array", "items": {"type": "string"}},
                "spicy": {"enum": ["mild", "hot"]}
            }
        })
    }

    #[test]
    fn schemas_are_checked_with_the_path_at_fault() {
        assert_eq!(check_schema("s", &menu()), Ok(()));
        let err = check_schema("s", &json!({"type": "text"})).unwrap_err();
        assert!(err.starts_with("s.type must be one of"), "{err}");
        let err =
            check_schema("s", &json!({"properties": {"a": {"items": {"type": 1}}}})).unwrap_err();
        assert!(err.starts_with("s.properties.a.items.type"), "{err}");
        assert!(check_schema("s", &json!("object")).is_err());
        assert!(check_schema("s", &json!({"required": "a"})).is_err());
    }

    #[test]
    fn answers_match_or_say_where_they_do_not() {
        let s = menu();
        assert_eq!(
            matches(
                &s,
                &json!({"translation": "Fried chicken", "allergens": ["wheat"]})
            ),
            Ok(())
        );
        let cases = [
            (json!({}), "answer.translation is required"),
            (
                json!({"translation": 1}),
                "answer.translation must be string",
            ),
            (
                json!({"translation": "t", "allergens": ["a", 2]}),
                "answer.allergens[1] must be string",
            ),
            (
                json!({"translation": "t", "spicy": "very"}),
                "answer.spicy must be one of",
            ),
            (json!([1]), "answer must be object"),
        ];
        for (answer, want) in cases {
            let got = matches(&s, &answer).unwrap_err();
            assert!(got.starts_with(want), "{got} should start with {want}");
        }
        let closed = json!({"type": "object", "additionalProperties": false});
        assert!(
            matches(&closed, &json!({"x": 1}))
                .unwrap_err()
                .contains("not allowed")
        );
    }
}
