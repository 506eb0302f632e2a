//! The text task types: how each payload becomes a prompt asking for a JSON answer, and how the
//! answer becomes the task's result. Result schemas are documented in the README.

use serde_json::{Value, json};

use super::json::{malformed, object_in, str_option};
use crate::domain::TaskType;
use crate::providers::{ChatMessage, ChatRequest, ProviderError};

/// The chat request for a text task of `task_type` with `payload` (validated at submit
/// against the type's schema); an error for a type that is not answered by a chat model.
pub fn request(task_type: TaskType, payload: &Value) -> Result<ChatRequest, ProviderError> {
    let (system, user, max_tokens) = match task_type {
        TaskType::Summarize => summarize(payload),
        TaskType::ValidateSummary => validate_summary(payload),
        TaskType::ItemInfoGeneration => item_info(payload),
        TaskType::TestCustomization => test_customization(payload),
        TaskType::Prompt => super::prompt_type::parts(payload),
        TaskType::Echo | TaskType::ExtractContent | TaskType::ImageGeneration | TaskType::Chat => {
            return Err(not_a_text_type(task_type));
        }
    };
    Ok(ChatRequest {
        model: payload
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned),
        system: Some(system),
        messages: vec![ChatMessage::user(user)],
        max_tokens: payload
            .get("max_tokens")
            .and_then(Value::as_u64)
            .map_or(max_tokens, |n| n.clamp(16, 8192) as u32),
        temperature: payload
            .get("temperature")
            .and_then(Value::as_f64)
            .map(|t| t as f32),
        json_output: task_type != TaskType::Prompt || super::prompt_type::wants_json(payload),
        stream: true,
    })
}

fn not_a_text_type(task_type: TaskType) -> ProviderError {
    ProviderError {
        provider: "none".into(),
        class: crate::domain::ErrorClass::NonRetryable,
        message: format!("{task_type} is not answered by a chat model"),
        retry_after: None,
    }
}

/// The task's result from the model's answer.
pub fn result(
    task_type: TaskType,
    payload: &Value,
    answer: &str,
    provider: &str,
    model: &str,
) -> Result<Value, ProviderError> {
    let object = object_in(answer);
    let mut result = match task_type {
        TaskType::Summarize => {
            // A model that ignores the JSON instruction still wrote a summary.
            let summary = object
                .as_ref()
                .and_then(|o| o.get("summary"))
                .and_then(Value::as_str)
                .map_or_else(|| answer.trim().to_owned(), str::to_owned);
            if summary.is_empty() {
                return Err(malformed(provider, "a summary"));
            }
            json!({
                "summary": summary,
                "key_points": object.as_ref().and_then(|o| o.get("key_points")).cloned()
                    .unwrap_or_else(|| json!([])),
                "language": preference(payload, "language", "en"),
                "length": preference(payload, "length", "medium"),
                "method": "ai",
            })
        }
        TaskType::ValidateSummary => {
            let o = object.ok_or_else(|| malformed(provider, "the JSON verdict asked for"))?;
            let valid = o
                .get("valid")
                .and_then(Value::as_bool)
                .ok_or_else(|| malformed(provider, "a boolean `valid`"))?;
            let score = o
                .get("score")
                .and_then(Value::as_f64)
                .map_or(if valid { 1.0 } else { 0.0 }, |s| s.clamp(0.0, 1.0));
            json!({
                "valid": valid,
                "score": score,
                "issues": o.get("issues").cloned().unwrap_or_else(|| json!([])),
            })
        }
        TaskType::ItemInfoGeneration => {
            let o = object.ok_or_else(|| malformed(provider, "the JSON item info asked for"))?;
            if !o.get("meaning").is_some_and(Value::is_string) {
                return Err(malformed(provider, "a `meaning`"));
            }
            let mut v = Value::Object(o);
            v["item"] = payload["item"].clone();
            v
        }
        TaskType::Prompt => super::prompt_type::result(payload, answer, provider)?,
        TaskType::TestCustomization => {
            let o = object.ok_or_else(|| malformed(provider, "the JSON test asked for"))?;
            if !o.get("questions").is_some_and(Value::is_array) {
                return Err(malformed(provider, "a `questions` list"));
            }
            let mut v = Value::Object(o);
            if let Some(instruction) = payload.get("instruction") {
                v["instruction"] = instruction.clone();
            }
            v
        }
        TaskType::Echo | TaskType::ExtractContent | TaskType::ImageGeneration | TaskType::Chat => {
            return Err(not_a_text_type(task_type));
        }
    };
    result["provider"] = json!(provider);
    result["model"] = json!(model);
    Ok(result)
}

/// The name a summary by extraction is recorded under, in its result and its attempts.
pub const EXTRACTION_PROVIDER: &str = "extraction";
/// The "model" of a summary by extraction.
pub const EXTRACTION_MODEL: &str = "first-300-characters";

/// The last resort for `summarize` when every provider failed or none is configured (seed
/// 003): the text's first 300 characters, cut at a word boundary when one is near.
pub fn extractive_summary(payload: &Value) -> Value {
    let text = payload_text(payload)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len()
        && let Some(space) = cut.rfind(' ').filter(|&i| i > 200)
    {
        cut.truncate(space);
    }
    json!({
        "summary": cut,
        "key_points": [],
        "language": preference(payload, "language", "en"),
        "length": preference(payload, "length", "medium"),
        "method": "extraction",
        "provider": EXTRACTION_PROVIDER,
        "model": EXTRACTION_MODEL,
    })
}

/// A summary option: the payload's own, else seed 003's `user_preferences`, else `default`.
fn preference<'a>(payload: &'a Value, key: &str, default: &'a str) -> &'a str {
    payload
        .get(key)
        .or_else(|| payload.get("user_preferences").and_then(|p| p.get(key)))
        .and_then(Value::as_str)
        .unwrap_or(default)
}

/// The text to work on: `text`, or `content` (seed 003's articles).
fn payload_text(payload: &Value) -> &str {
    payload
        .get("text")
        .or_else(|| payload.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn summarize(payload: &Value) -> (String, String, u32) {
    let length = match preference(payload, "length", "medium") {
        "short" => "one or two sentences",
        "long" => "two or three paragraphs",
        _ => "one paragraph of three to five sentences",
    };
    let language = preference(payload, "language", "en");
    (
        format!(
            "You summarize texts faithfully, without adding facts. Write the summary in the \
             language with code {language:?}, {length} long. Answer with one JSON object and \
             nothing else: {{\"summary\": string, \"key_points\": [string, at most 5]}}."
        ),
        format!("Summarize this text:\n\n{}", payload_text(payload)),
        match preference(payload, "length", "medium") {
            "short" => 200,
            "long" => 1200,
            _ => 600,
        },
    )
}

fn validate_summary(payload: &Value) -> (String, String, u32) {
    (
        "You check summaries against their source. A summary is valid when it states only \
         facts of the source, keeps its main points and is readable. Answer with one JSON \
         object and nothing else: {\"valid\": boolean, \"score\": number from 0 to 1, \
         \"issues\": [string]}."
            .to_owned(),
        format!(
            "Source:\n{}\n\nSummary:\n{}",
            str_option(payload, "original", ""),
            str_option(payload, "summary", "")
        ),
        400,
    )
}

fn item_info(payload: &Value) -> (String, String, u32) {
    let language = str_option(payload, "language", "en");
    let explain_in = str_option(payload, "explanation_language", language);
    (
        format!(
            "You write entries of a learner's dictionary. The item is in the language with code \
             {language:?}; explain it in the language with code {explain_in:?}. Answer with one \
             JSON object and nothing else: {{\"meaning\": string, \"part_of_speech\": string, \
             \"pronunciation\": string, \"examples\": [{{\"sentence\": string, \"translation\": \
             string}}, 2 or 3 of them], \"synonyms\": [string], \"notes\": string}}."
        ),
        match payload.get("context").and_then(Value::as_str) {
            Some(context) => format!(
                "Item: {}\nContext it was met in: {context}",
                str_option(payload, "item", "")
            ),
            None => format!("Item: {}", str_option(payload, "item", "")),
        },
        800,
    )
}

fn test_customization(payload: &Value) -> (String, String, u32) {
    let count = payload
        .get("question_count")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .clamp(1, 20);
    let level = str_option(payload, "level", "intermediate");
    let kind = str_option(payload, "test_type", "multiple_choice");
    let items = payload.get("items").cloned().unwrap_or_default();
    // Seed 000's customisation request ("only phrasal verbs, harder distractors") goes in the
    // user's turn, where a model weighs it below the system rules it must not override.
    let user = match payload.get("instruction").and_then(Value::as_str) {
        Some(instruction) => format!("Items: {items}\nInstruction: {}", instruction.trim()),
        None => format!("Items: {items}"),
    };
    (
        format!(
            "You write vocabulary tests for a learner at level {level:?}. Write {count} \
             questions of type {kind:?} that test the given items. Follow the learner's \
             instruction, if any, where it does not contradict these rules. Answer with one \
             JSON object and nothing else: {{\"questions\": [{{\"item\": string, \
             \"question\": string, \"choices\": [string], \"answer\": string, \
             \"explanation\": string}}]}}."
        ),
        user,
        (count as u32) * 200 + 200,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_reads_a_json_answer_and_a_plain_one() {
        let payload = json!({"text": "long text", "length": "short"});
        let r = result(
            TaskType::Summarize,
            &payload,
            r#"{"summary": "S", "key_points": ["a"]}"#,
            "groq",
            "m",
        )
        .unwrap();
        assert_eq!(
            (r["summary"].as_str(), r["length"].as_str()),
            (Some("S"), Some("short"))
        );
        let r = result(TaskType::Summarize, &payload, "Just S.", "groq", "m").unwrap();
        assert_eq!(r["summary"], "Just S.");
    }

    #[test]
    fn test_customization_carries_the_instruction() {
        let p = json!({"items": ["run", "walk"], "instruction": "Only past tenses."});
        let req = request(TaskType::TestCustomization, &p).unwrap();
        let ChatMessage { content, .. } = &req.messages[0];
        assert!(
            content.ends_with("Instruction: Only past tenses."),
            "{content}"
        );
        assert!(req.system.unwrap().contains("instruction"));
        let answer = r#"{"questions": [{"item": "run"}]}"#;
        let r = result(TaskType::TestCustomization, &p, answer, "groq", "m").unwrap();
        assert_eq!(r["instruction"], "Only past tenses.");
        let plain = request(TaskType::TestCustomization, &json!({"items": ["a"]})).unwrap();
        assert!(!plain.messages[0].content.contains("Instruction"));
    }

    #[test]
    fn only_text_types_have_prompts() {
        for t in [
            TaskType::Echo,
            TaskType::ExtractContent,
            TaskType::ImageGeneration,
        ] {
            assert!(request(t, &json!({})).is_err(), "{t}");
            assert!(result(t, &json!({}), "{}", "p", "m").is_err(), "{t}");
        }
    }

    #[test]
    fn summarize_reads_seed_003_preferences() {
        let p =
            json!({"content": "text", "user_preferences": {"length": "short", "language": "ja"}});
        let req = request(TaskType::Summarize, &p).unwrap();
        assert!(req.system.as_deref().unwrap().contains("\"ja\""));
        assert_eq!(req.max_tokens, 200);
        let r = result(TaskType::Summarize, &p, "S", "groq", "m").unwrap();
        assert_eq!(
            (r["length"].as_str(), r["language"].as_str()),
            (Some("short"), Some("ja"))
        );
    }

    #[test]
    fn validate_summary_needs_a_verdict() {
        let p = json!({"original": "o", "summary": "s"});
        let err = result(TaskType::ValidateSummary, &p, "looks fine", "openai", "m").unwrap_err();
        assert_eq!(err.class, crate::domain::ErrorClass::Retryable);
        let ok = result(
            TaskType::ValidateSummary,
            &p,
            r#"{"valid": true}"#,
            "openai",
            "m",
        )
        .unwrap();
        assert_eq!(
            (ok["valid"].as_bool(), ok["score"].as_f64()),
            (Some(true), Some(1.0))
        );
    }

    #[test]
    fn extraction_takes_300_characters_at_a_word_boundary() {
        let text = "word ".repeat(100);
        let r = extractive_summary(&json!({ "text": text }));
        let s = r["summary"].as_str().unwrap();
        assert!(
            s.len() <= 300 && s.len() > 200 && s.ends_with("word"),
            "{s}"
        );
        assert_eq!(r["method"], "extraction");
    }
}
