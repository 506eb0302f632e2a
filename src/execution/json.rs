//! Reading the JSON object a model was asked to answer with.

use serde_json::{Map, Value};

use crate::domain::ErrorClass;
use crate::providers::ProviderError;

/// The JSON object in a model's answer: the whole text, or the part inside a ``` fence, or the
/// outermost `{...}`. Models asked for JSON usually comply; the fallbacks cover the chatty ones.
pub fn object_in(text: &str) -> Option<Map<String, Value>> {
    let trimmed = text.trim();
    let candidates = [
        Some(trimmed),
        trimmed
            .split_once("```")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(inner, _)| inner.trim_start_matches("json").trim()),
        trimmed
            .find('{')
            .zip(trimmed.rfind('}'))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| &trimmed[a..=b]),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|c| match serde_json::from_str(c) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        })
}

/// The answer did not have the shape asked for: worth another try (on another provider).
pub fn malformed(provider: &str, what: &str) -> ProviderError {
    ProviderError {
        provider: provider.to_owned(),
        class: ErrorClass::Retryable,
        message: format!("{provider} answered without {what}"),
        retry_after: None,
    }
}

/// A string option of a payload, or `default`.
pub fn str_option<'a>(payload: &'a Value, key: &str, default: &'a str) -> &'a str {
    payload.get(key).and_then(Value::as_str).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_object_in_chatty_answers() {
        for text in [
            r#"{"a": 1}"#,
            "```json\n{\"a\": 1}\n```",
            "Sure! Here it is: {\"a\": 1} Hope it helps.",
        ] {
            assert_eq!(object_in(text).unwrap()["a"], 1, "{text}");
        }
        assert!(object_in("no json here").is_none());
        assert!(object_in("[1, 2]").is_none());
    }
}
