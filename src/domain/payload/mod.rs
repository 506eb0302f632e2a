//! Typed payloads: one schema per task type, checked at submit so a task that cannot run is
//! refused before anything is stored or any provider is paid.

mod field;
mod image_style;
mod json_schema;
mod schemas;

use serde_json::Value;

pub use field::{Field, Kind, Need, kind_of};
pub use image_style::ImageStyle;
pub use json_schema::{check_schema, matches as matches_schema};
pub use schemas::{MAX_ECHO_DELAY_MS, MAX_TEXT_CHARS, SCHEMAS, TypeSchema};

use super::{DomainError, TaskType};

/// The schema of `task_type`.
pub fn schema(task_type: TaskType) -> &'static TypeSchema {
    // SCHEMAS is in TaskType::ALL order; the unit test below holds it to that.
    &SCHEMAS[TaskType::ALL
        .iter()
        .position(|t| *t == task_type)
        .unwrap_or(0)]
}

impl TypeSchema {
    /// Every field the type accepts: its own, then the common options.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> {
        self.fields.iter().chain(self.common.iter())
    }

    /// Checks a payload object; errors name the field (`payload.text must not be empty`).
    pub fn validate(&self, payload: &Value) -> Result<(), DomainError> {
        let all: Vec<Field> = self.all_fields().copied().collect();
        check_fields("payload", &all, payload, self.strict)
    }
}

/// Checks the fields of `object` (found at `path`) against `fields`: types and bounds of the
/// present ones, required ones and one-of groups present, and, when `strict`, nothing else.
pub(crate) fn check_fields(
    path: &str,
    fields: &[Field],
    object: &Value,
    strict: bool,
) -> Result<(), DomainError> {
    let Value::Object(map) = object else {
        return Err(DomainError::Invalid(format!(
            "{path} must be a JSON object, got {}",
            kind_of(object)
        )));
    };
    if strict {
        // Sorted, so the message names the same field whatever the map's order.
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        if let Some(unknown) = keys
            .into_iter()
            .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
        {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            return Err(DomainError::Invalid(format!(
                "{path}.{unknown} is not a known field; expected {}",
                known.join(", ")
            )));
        }
    }
    for field in fields {
        match map.get(field.name) {
            Some(value) => field.check(&format!("{path}.{}", field.name), value)?,
            None if field.need == Need::Required => {
                return Err(DomainError::Invalid(format!(
                    "{path}.{} is required",
                    field.name
                )));
            }
            None => {}
        }
    }
    let mut groups: Vec<&str> = fields
        .iter()
        .filter_map(|f| match f.need {
            Need::OneOf(g) => Some(g),
            _ => None,
        })
        .collect();
    groups.dedup();
    for group in groups {
        let members: Vec<&str> = fields
            .iter()
            .filter(|f| f.need == Need::OneOf(group))
            .map(|f| f.name)
            .collect();
        if !members.iter().any(|m| map.contains_key(*m)) {
            return Err(DomainError::Invalid(format!(
                "{path}.{} is required{}",
                members[0],
                match &members[1..] {
                    [] => String::new(),
                    rest => format!(" (or {})", rest.join(" or ")),
                }
            )));
        }
    }
    Ok(())
}

/// The README's task-type table, made from the schemas (a test holds the README to it).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| type | default priority | payload | result |\n|---|---|---|---|\n");
    for s in &SCHEMAS {
        let fields: Vec<String> = s
            .fields
            .iter()
            .map(|f| {
                let need = match f.need {
                    Need::Required => "required; ".to_owned(),
                    Need::OneOf(group) => {
                        let others: Vec<String> = s
                            .fields
                            .iter()
                            .filter(|o| o.need == Need::OneOf(group) && o.name != f.name)
                            .map(|o| format!("`{}`", o.name))
                            .collect();
                        format!("required unless {}; ", others.join(" or "))
                    }
                    Need::Optional => String::new(),
                };
                format!("`{}` ({need}{}): {}", f.name, describe(&f.kind), f.doc)
            })
            .collect();
        let mut payload = fields.join("; ");
        if !s.strict {
            payload = format!("any JSON object; {payload}");
        }
        if !s.common.is_empty() {
            let names: Vec<String> = s.common.iter().map(|f| format!("`{}`", f.name)).collect();
            payload.push_str(&format!("; also {}", names.join(", ")));
        }
        out.push_str(&format!(
            "| `{}` | {} | {payload} | {} |\n",
            s.task_type,
            s.task_type.default_priority().value(),
            s.result.replace(" | ", " \\| ")
        ));
    }
    out
}

/// A kind in a few words, for the docs.
pub fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Text { max, .. } => format!("text, at most {max} characters"),
        Kind::Choice(c) => c.join(" \\| "),
        Kind::Language => "language code".into(),
        Kind::HttpUrl => "http/https URL".into(),
        Kind::Int { min, max } => format!("{min}-{max}"),
        Kind::Number { min, max } => format!("{min}-{max}"),
        Kind::Bool => "boolean".into(),
        Kind::Items { max_items, .. } => format!("list of 1-{max_items}"),
        Kind::Object(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            format!("object: {}", names.join(", "))
        }
        Kind::Any => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(t: TaskType, payload: Value) -> Result<(), String> {
        schema(t).validate(&payload).map_err(|e| e.to_string())
    }

    #[test]
    fn schemas_follow_task_type_order() {
        for (t, s) in TaskType::ALL.iter().zip(&SCHEMAS) {
            assert_eq!(*t, s.task_type);
            assert_eq!(schema(*t).task_type, *t);
        }
    }

    #[test]
    fn every_type_has_a_valid_example_and_refuses_an_empty_payload() {
        let valid = [
            (TaskType::Echo, json!({"anything": [1, 2]})),
            (
                TaskType::Summarize,
                json!({"text": "t", "length": "short", "max_tokens": 100}),
            ),
            (
                TaskType::ExtractContent,
                json!({"url": "https://example.com/a"}),
            ),
            (
                TaskType::ValidateSummary,
                json!({"original": "o", "summary": "s"}),
            ),
            (
                TaskType::ItemInfoGeneration,
                json!({"item": "serendipity", "language": "en"}),
            ),
            (
                TaskType::ImageGeneration,
                json!({"prompt": "a cat", "style": "watercolor"}),
            ),
            (
                TaskType::TestCustomization,
                json!({"items": ["a"], "instruction": "easy"}),
            ),
            (
                TaskType::Prompt,
                json!({"prompt": "Translate: 唐揚げ", "schema": {"type": "object"}}),
            ),
        ];
        for (t, p) in valid {
            assert_eq!(check(t, p), Ok(()), "{t}");
            if t != TaskType::Echo {
                assert!(
                    check(t, json!({})).unwrap_err().contains("is required"),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn messages_name_the_field() {
        let cases = [
            (
                TaskType::Summarize,
                json!({"text": ""}),
                "payload.text must not be empty",
            ),
            (
                TaskType::Summarize,
                json!({}),
                "payload.text is required (or content)",
            ),
            (
                TaskType::Summarize,
                json!({"text": 5}),
                "payload.text must be a string",
            ),
            (
                TaskType::Summarize,
                json!({"text": "t", "colour": 1}),
                "payload.colour is not a known field",
            ),
            (
                TaskType::Summarize,
                json!({"text": "t", "user_preferences": {"length": "huge"}}),
                "payload.user_preferences.length must be one of",
            ),
            (
                TaskType::ValidateSummary,
                json!({"original": "o"}),
                "payload.summary is required",
            ),
            (
                TaskType::ExtractContent,
                json!({"url": "file:///etc/passwd"}),
                "payload.url must be an absolute http",
            ),
            (
                TaskType::ImageGeneration,
                json!({"style": "vivid"}),
                "payload.prompt is required (or query or description)",
            ),
            (
                TaskType::ImageGeneration,
                json!({"prompt": "p", "count": 9}),
                "payload.count must be a whole number from 1 to 4",
            ),
            (
                TaskType::TestCustomization,
                json!({"items": []}),
                "payload.items must list at least one item",
            ),
            (
                TaskType::ItemInfoGeneration,
                json!({"item": "x".repeat(201)}),
                "payload.item is 201 characters",
            ),
            (
                TaskType::Echo,
                json!({"delay_ms": -1}),
                "payload.delay_ms must be a whole number from 0",
            ),
        ];
        for (t, p, want) in cases {
            let got = check(t, p).unwrap_err();
            assert!(
                got.starts_with(want),
                "{t}: {got:?} should start with {want:?}"
            );
        }
    }

    #[test]
    fn the_table_lists_every_type_and_field() {
        let table = markdown_table();
        for s in &SCHEMAS {
            assert!(table.contains(&format!("| `{}` |", s.task_type)));
            for f in s.all_fields() {
                assert!(table.contains(&format!("`{}`", f.name)), "{}", f.name);
            }
        }
    }
}
