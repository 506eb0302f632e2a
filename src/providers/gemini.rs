//! Google Gemini's `generateContent` and `streamGenerateContent?alt=sse`
//! (`{base}/v1beta/models/{model}:...`).
//!
//! The key goes in the `x-goog-api-key` header, never in the query string, so it cannot leak
//! through URLs in logs or error messages.

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{ProviderHttp, stream_error_class};
use super::{
    Adapter, AdapterConfig, Capability, ChatRequest, ChatResponse, ProviderError, Role, TokenSink,
    Usage,
};
use crate::domain::ErrorClass;

/// Finish reasons of a complete answer.
const FINISHED: [&str; 2] = ["STOP", "MAX_TOKENS"];
/// Finish reasons that mean the answer was withheld by a content policy.
const BLOCKED: [&str; 7] = [
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
];

/// Google Gemini.
pub struct GeminiAdapter {
    http: ProviderHttp,
}

impl GeminiAdapter {
    /// An adapter named `name` (usually `gemini`).
    pub fn new(name: &str, config: AdapterConfig, client: reqwest::Client) -> Self {
        Self {
            http: ProviderHttp::new(name, config, client),
        }
    }

    /// `{base}/v1beta/models/{model}:{method}`, refusing model names that would change the path.
    fn url(&self, model: &str, method: &str) -> Result<String, ProviderError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let valid = !model.is_empty()
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !valid {
            return Err(self.http.error(
                ErrorClass::NonRetryable,
                format!("invalid Gemini model name {model:?}"),
            ));
        }
        Ok(self.http.url(&format!("/v1beta/models/{model}:{method}")))
    }

    fn post(&self, url: String, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .client
            .post(url)
            .header("x-goog-api-key", &self.http.config.api_key)
            .json(body)
    }

    async fn chat_once(&self, model: &str, body: &Value) -> Result<ChatResponse, ProviderError> {
        let url = self.url(model, "generateContent")?;
        let response = self.http.send(self.post(url, body)).await?;
        self.read_answer(&self.http.body(response).await?)
    }

    /// A whole generateContent body, read.
    pub(crate) fn read_answer(&self, body: &[u8]) -> Result<ChatResponse, ProviderError> {
        let answer: Answer = self.http.parse(body)?;
        let mut state = StreamState::default();
        state.apply(answer).map_err(|f| self.failure(f))?;
        self.finish(state)
    }

    async fn chat_stream(
        &self,
        model: &str,
        body: &Value,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let url = self.url(model, "streamGenerateContent?alt=sse")?;
        let response = self.http.send(self.post(url, body)).await?;
        self.read_stream(response.bytes_stream(), sink).await
    }

    /// A streamed answer's events, read to the end; each piece of text goes to `sink`.
    pub(crate) async fn read_stream<S, B, E>(
        &self,
        bytes: S,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError>
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: AsRef<[u8]>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut events = self.http.event_stream(bytes);
        let mut state = StreamState::default();
        while let Some(event) = events.next().await {
            let event = event?;
            let answer: Answer = serde_json::from_str(&event.data)
                .map_err(|e| self.http.malformed(format_args!("stream chunk: {e}")))?;
            if let Some(piece) = state.apply(answer).map_err(|f| self.failure(f))? {
                sink.token(&piece);
            }
        }
        if state.finish_reason.is_none() {
            return Err(self.http.cut_stream());
        }
        self.finish(state)
    }

    /// Checks the finish reason of a complete answer.
    fn finish(&self, state: StreamState) -> Result<ChatResponse, ProviderError> {
        let reason = state.finish_reason.as_deref().unwrap_or_default();
        if !FINISHED.contains(&reason) {
            return Err(self.failure(Failure::Finish(reason.to_owned())));
        }
        Ok(ChatResponse {
            text: state.text,
            model: state.model,
            usage: state.usage,
            finish_reason: state.finish_reason,
        })
    }

    fn failure(&self, failure: Failure) -> ProviderError {
        match failure {
            Failure::PromptBlocked(reason) => self.http.error(
                ErrorClass::NonRetryable,
                format!("content policy: the prompt was blocked ({reason})"),
            ),
            Failure::Finish(reason) if BLOCKED.contains(&reason.as_str()) => self.http.error(
                ErrorClass::NonRetryable,
                format!("content policy: the answer was blocked (finishReason {reason})"),
            ),
            Failure::Finish(reason) if reason.is_empty() => {
                self.http.malformed("no candidate and no finish reason")
            }
            // OTHER, MALFORMED_FUNCTION_CALL and reasons added later: may go better next time.
            Failure::Finish(reason) => self.http.error(
                ErrorClass::Retryable,
                format!("generation stopped early (finishReason {reason})"),
            ),
            Failure::Error(error) => {
                let status = error.get("status").and_then(Value::as_str).unwrap_or("");
                let message = error.get("message").and_then(Value::as_str).unwrap_or("");
                self.http.error(
                    stream_error_class(status),
                    format!("error in answer: {message} ({status})"),
                )
            }
        }
    }
}

#[async_trait]
impl Adapter for GeminiAdapter {
    fn name(&self) -> &str {
        &self.http.name
    }

    fn capabilities(&self) -> &[Capability] {
        &[Capability::Chat]
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let model = self.http.model(&request.model).to_owned();
        let body = generate_body(request);
        if request.stream {
            self.http
                .bounded(self.chat_stream(&model, &body, sink))
                .await
        } else {
            self.http.bounded(self.chat_once(&model, &body)).await
        }
    }
}

/// The generateContent request body.
pub(crate) fn generate_body(request: &ChatRequest) -> Value {
    let contents: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            json!({"role": role, "parts": [{"text": m.content}]})
        })
        .collect();
    let mut config = json!({"maxOutputTokens": request.max_tokens});
    if let Some(t) = request.temperature {
        config["temperature"] = json!(t);
    }
    if request.json_output {
        config["responseMimeType"] = json!("application/json");
    }
    let mut body = json!({"contents": contents, "generationConfig": config});
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    body
}

/// A GenerateContentResponse (a whole answer, or one chunk of a stream).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    /// An error reported inside a 200 stream.
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
    /// Thinking models' reasoning summaries: not part of the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    /// Thinking tokens are billed as output.
    #[serde(default)]
    thoughts_token_count: u64,
}

/// Why an answer is not a success.
#[derive(Debug, PartialEq)]
pub(crate) enum Failure {
    PromptBlocked(String),
    Finish(String),
    Error(Value),
}

/// What an answer (or a stream of chunks) has said so far.
#[derive(Default)]
pub(crate) struct StreamState {
    pub text: String,
    pub model: String,
    pub usage: Usage,
    pub finish_reason: Option<String>,
}

impl StreamState {
    /// Takes in one answer or chunk; returns the new text it carries, if any.
    pub fn apply(&mut self, answer: Answer) -> Result<Option<String>, Failure> {
        if let Some(error) = answer.error {
            return Err(Failure::Error(error));
        }
        if let Some(reason) = answer.prompt_feedback.and_then(|f| f.block_reason) {
            return Err(Failure::PromptBlocked(reason));
        }
        if let Some(model) = answer.model_version {
            self.model = model;
        }
        // Each chunk carries the counts so far; the last one is the total.
        if let Some(u) = answer.usage_metadata {
            self.usage = Usage {
                input_tokens: u.prompt_token_count,
                output_tokens: u.candidates_token_count + u.thoughts_token_count,
            };
        }
        let Some(candidate) = answer.candidates.into_iter().next() else {
            return Ok(None);
        };
        let piece: String = candidate
            .content
            .map(|c| c.parts)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.thought)
            .filter_map(|p| p.text)
            .collect();
        if let Some(reason) = candidate.finish_reason {
            self.finish_reason = Some(reason);
        }
        if piece.is_empty() {
            return Ok(None);
        }
        self.text.push_str(&piece);
        Ok(Some(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn answer(data: &str) -> Answer {
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn body_shape() {
        let request = ChatRequest {
            model: None,
            system: Some("Be brief.".into()),
            messages: vec![
                ChatMessage::user("Hi"),
                crate::providers::ChatMessage {
                    role: Role::Assistant,
                    content: "Hello".into(),
                },
            ],
            max_tokens: 32,
            temperature: Some(0.0),
            json_output: true,
            stream: false,
        };
        let body = generate_body(&request);
        assert_eq!(
            body["contents"][0],
            json!({"role": "user", "parts": [{"text": "Hi"}]})
        );
        assert_eq!(body["contents"][1]["role"], "model");
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            body["generationConfig"],
            json!({"maxOutputTokens": 32, "temperature": 0.0, "responseMimeType": "application/json"})
        );
    }

    #[test]
    fn chunks_accumulate_until_the_finish_reason() {
        let mut s = StreamState::default();
        let first = s
            .apply(answer(
                r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1},"modelVersion":"gemini-2.0-flash"}"#,
            ))
            .unwrap();
        assert_eq!(first.as_deref(), Some("Hel"));
        assert!(s.finish_reason.is_none());
        s.apply(answer(
            r#"{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3,"totalTokenCount":9},"modelVersion":"gemini-2.0-flash"}"#,
        ))
        .unwrap();
        assert_eq!(s.text, "Hello");
        assert_eq!(s.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(s.model, "gemini-2.0-flash");
        assert_eq!(
            s.usage,
            Usage {
                input_tokens: 4,
                output_tokens: 5
            }
        );
    }

    #[test]
    fn thoughts_are_not_part_of_the_answer() {
        let mut s = StreamState::default();
        s.apply(answer(
            r#"{"candidates":[{"content":{"parts":[{"text":"thinking...","thought":true},{"text":"42"}]},"finishReason":"STOP"}]}"#,
        ))
        .unwrap();
        assert_eq!(s.text, "42");
    }

    #[test]
    fn model_names_cannot_change_the_path() {
        let adapter = GeminiAdapter::new(
            "gemini",
            AdapterConfig {
                api_key: "k".into(),
                base_url: "http://127.0.0.1:1/".into(),
                default_model: "gemini-2.0-flash".into(),
                timeout: std::time::Duration::from_secs(1),
            },
            reqwest::Client::new(),
        );
        assert_eq!(
            adapter
                .url("models/gemini-2.0-flash", "generateContent")
                .unwrap(),
            "http://127.0.0.1:1/v1beta/models/gemini-2.0-flash:generateContent"
        );
        for bad in ["", "../x", "a/b", "m?key=1", "m#x", "m:x"] {
            let err = adapter.url(bad, "generateContent").unwrap_err();
            assert_eq!(err.class, ErrorClass::NonRetryable, "{bad}");
        }
    }

    #[test]
    fn a_blocked_prompt() {
        let mut s = StreamState::default();
        let err = s
            .apply(answer(
                r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":8}}"#,
            ))
            .unwrap_err();
        assert_eq!(err, Failure::PromptBlocked("SAFETY".into()));
    }

    #[test]
    fn a_blocked_answer_keeps_its_reason() {
        let mut s = StreamState::default();
        s.apply(answer(
            r#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#,
        ))
        .unwrap();
        assert_eq!(s.finish_reason.as_deref(), Some("SAFETY"));
        assert!(BLOCKED.contains(&"SAFETY"));
        assert!(!FINISHED.contains(&"SAFETY"));
    }
}
