//! The generic `prompt` type: the payload's prompt as the user's turn, an answer held to the
//! payload's JSON schema when it has one (a mismatch is retryable: models often get it right
//! on the next try), and the development answer used when no chat provider is configured.

use serde_json::{Map, Value, json};

use super::json::{malformed, object_in};
use crate::domain::ErrorClass;
use crate::domain::payload::matches_schema;
use crate::providers::ProviderError;

/// The name a development answer is recorded under, in its result and its attempts.
pub const DEVELOPMENT_PROVIDER: &str = "development";
/// The "model" of a development answer.
pub const DEVELOPMENT_MODEL: &str = "deterministic";

/// System prompt, user prompt and token budget of a `prompt` task.
pub fn parts(payload: &Value) -> (String, String, u32) {
    let mut system = payload
        .get("system")
        .and_then(Value::as_str)
        .unwrap_or("You answer briefly and precisely.")
        .to_owned();
    if let Some(schema) = payload.get("schema") {
        system.push_str(&format!(
            " Answer with one JSON object and nothing else, matching this JSON schema: {schema}"
        ));
    }
    let prompt = payload.get("prompt").and_then(Value::as_str).unwrap_or("");
    (system, prompt.to_owned(), 1000)
}

/// Whether the model is asked for JSON.
pub fn wants_json(payload: &Value) -> bool {
    payload.get("schema").is_some()
}

/// The task's result from the model's answer: with a schema, the JSON object it matches;
/// without, `{"text"}`.
pub fn result(payload: &Value, answer: &str, provider: &str) -> Result<Value, ProviderError> {
    let Some(schema) = payload.get("schema") else {
        let text = answer.trim();
        if text.is_empty() {
            return Err(malformed(provider, "an answer"));
        }
        return Ok(json!({ "text": text }));
    };
    let object = object_in(answer).ok_or_else(|| malformed(provider, "the JSON asked for"))?;
    let value = Value::Object(object);
    matches_schema(schema, &value).map_err(|why| ProviderError {
        provider: provider.to_owned(),
        class: ErrorClass::Retryable,
        message: format!("{provider}'s answer does not match the schema: {why}"),
        retry_after: None,
    })?;
    Ok(value)
}

/// A deterministic answer for a service without chat providers (a first run without keys),
/// shaped by the schema: every string says which field it fills and quotes the prompt's
/// last line, so a pipeline's cells visibly fill with their own inputs.
pub fn development_answer(payload: &Value) -> Value {
    let prompt = payload.get("prompt").and_then(Value::as_str).unwrap_or("");
    let subject: String = prompt
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(80)
        .collect();
    match payload.get("schema") {
        Some(schema) => example(schema, "answer", &subject),
        None => json!({ "text": format!("[development] {subject}") }),
    }
}

/// A value matching `schema`, its strings made from `name` and `subject`.
fn example(schema: &Value, name: &str, subject: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let kind = schema.get("type").and_then(Value::as_str);
    let props = schema.get("properties").and_then(Value::as_object);
    match (kind, props) {
        (Some("object"), _) | (None, Some(_)) => {
            let mut out = Map::new();
            for (field, sub) in props.into_iter().flatten() {
                out.insert(field.clone(), example(sub, field, subject));
            }
            Value::Object(out)
        }
        (Some("array"), _) => {
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            json!([example(&item, name, subject)])
        }
        (Some("integer" | "number"), _) => json!(1),
        (Some("boolean"), _) => json!(false),
        (Some("null"), _) => Value::Null,
        _ => json!(format!("[development] {name}: {subject}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu_payload() -> Value {
        json!({
            "prompt": "Translate this menu item to English.\n唐揚げ",
            "schema": {
                "type": "object",
                "required": ["translation", "allergens"],
                "properties": {
                    "translation": {"type": "string"},
                    "allergens": {"type": "array", "items": {"type": "string"}},
                    "spicy": {"type": "boolean"}
                }
            }
        })
    }

    #[test]
    fn answers_must_match_the_schema_or_fail_retryably() {
        let p = menu_payload();
        let ok = result(
            &p,
            r#"{"translation": "Fried chicken", "allergens": []}"#,
            "x",
        )
        .unwrap();
        assert_eq!(ok["translation"], "Fried chicken");
        let err = result(&p, r#"{"translation": 1, "allergens": []}"#, "x").unwrap_err();
        assert_eq!(err.class, ErrorClass::Retryable);
        assert!(
            err.message.contains("answer.translation must be string"),
            "{}",
            err.message
        );
        assert!(result(&p, "no json", "x").is_err());
        let plain = result(&json!({"prompt": "hi"}), " Hello ", "x").unwrap();
        assert_eq!(plain, json!({"text": "Hello"}));
        assert!(parts(&p).0.contains("JSON schema"));
    }

    #[test]
    fn development_answers_are_deterministic_and_match_the_schema() {
        let p = menu_payload();
        let a = development_answer(&p);
        assert_eq!(a, development_answer(&p));
        assert_eq!(matches_schema(&p["schema"], &a), Ok(()));
        assert_eq!(a["translation"], "[development] translation: 唐揚げ");
        assert_eq!(
            development_answer(&json!({"prompt": "Say hi"})),
            json!({"text": "[development] Say hi"})
        );
    }
}
