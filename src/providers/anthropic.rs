//! Anthropic's Messages API (`POST {base}/v1/messages`), plain and streamed.
//!
//! Claude has no JSON mode: a request with `json_output` relies on its prompt.

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

/// The API version we speak; Anthropic requires it on every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Anthropic Claude.
pub struct AnthropicAdapter {
    http: ProviderHttp,
}

impl AnthropicAdapter {
    /// An adapter named `name` (usually `claude`).
    pub fn new(name: &str, config: AdapterConfig, client: reqwest::Client) -> Self {
        Self {
            http: ProviderHttp::new(name, config, client),
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .client
            .post(self.http.url("/v1/messages"))
            .header("x-api-key", &self.http.config.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body)
    }

    async fn chat_once(&self, body: &Value) -> Result<ChatResponse, ProviderError> {
        let response = self.http.send(self.post(body)).await?;
        self.read_message(&self.http.body(response).await?)
    }

    /// A whole Messages answer body, read.
    pub(crate) fn read_message(&self, body: &[u8]) -> Result<ChatResponse, ProviderError> {
        let message: Message = self.http.parse(body)?;
        self.check_stop(message.stop_reason.as_deref())?;
        let text = message
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect();
        Ok(ChatResponse {
            text,
            model: message.model,
            usage: Usage {
                input_tokens: message.usage.input_tokens,
                output_tokens: message.usage.output_tokens,
            },
            finish_reason: message.stop_reason,
        })
    }

    async fn chat_stream(
        &self,
        body: &Value,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let response = self.http.send(self.post(body)).await?;
        self.read_stream(response.bytes_stream(), sink).await
    }

    /// A streamed answer's events, read to `message_stop`; each piece of text goes to `sink`.
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
            let data: StreamEvent = serde_json::from_str(&event.data).map_err(|e| {
                self.http
                    .malformed(format_args!("stream event {}: {e}", event.event))
            })?;
            match state.apply(data) {
                Step::Text(piece) => sink.token(&piece),
                Step::Error { kind, message } => {
                    return Err(self.http.error(
                        stream_error_class(&kind),
                        format!("error in stream: {message} ({kind})"),
                    ));
                }
                Step::Stop => break,
                Step::Nothing => {}
            }
        }
        if !state.stopped {
            return Err(self.http.cut_stream());
        }
        self.check_stop(state.stop_reason.as_deref())?;
        Ok(ChatResponse {
            text: state.text,
            model: state.model,
            usage: state.usage,
            finish_reason: state.stop_reason,
        })
    }

    /// `refusal` means the model declined for safety reasons: a content-policy failure.
    fn check_stop(&self, stop_reason: Option<&str>) -> Result<(), ProviderError> {
        if stop_reason == Some("refusal") {
            return Err(self.http.error(
                ErrorClass::NonRetryable,
                "content policy: the model refused (stop_reason refusal)",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Adapter for AnthropicAdapter {
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
        let body = messages_body(self.http.model(&request.model), request);
        if request.stream {
            self.http.bounded(self.chat_stream(&body, sink)).await
        } else {
            self.http.bounded(self.chat_once(&body)).await
        }
    }
}

/// The Messages request body.
pub(crate) fn messages_body(model: &str, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut body = json!({"model": model, "max_tokens": request.max_tokens, "messages": messages});
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body["system"] = json!(system);
    }
    if let Some(t) = request.temperature {
        // Anthropic accepts 0-1 (OpenAI and Gemini go to 2): clamp rather than fail a fallback.
        body["temperature"] = json!(t.clamp(0.0, 1.0));
    }
    if request.stream {
        body["stream"] = json!(true);
    }
    body
}

/// A non-streamed answer.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    model: String,
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: WireUsage,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// The data of one streamed event; which fields are set depends on `type`.
#[derive(Deserialize)]
pub(crate) struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    /// `message_start`.
    message: Option<StartMessage>,
    /// `content_block_delta` (text) or `message_delta` (stop reason).
    delta: Option<Value>,
    /// `message_delta`: the output token count so far.
    usage: Option<Value>,
    /// `error`.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

/// What one event means for the caller.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    Text(String),
    Error { kind: String, message: String },
    Stop,
    Nothing,
}

/// What a stream has said so far.
#[derive(Default)]
pub(crate) struct StreamState {
    pub text: String,
    pub model: String,
    pub usage: Usage,
    pub stop_reason: Option<String>,
    /// `message_stop` arrived.
    pub stopped: bool,
}

impl StreamState {
    pub fn apply(&mut self, event: StreamEvent) -> Step {
        match event.kind.as_str() {
            "message_start" => {
                if let Some(m) = event.message {
                    self.model = m.model;
                    self.usage.input_tokens = m.usage.input_tokens;
                    self.usage.output_tokens = m.usage.output_tokens;
                }
                Step::Nothing
            }
            "content_block_delta" => {
                let delta = event.delta.unwrap_or_default();
                match (
                    delta.get("type").and_then(Value::as_str),
                    delta.get("text").and_then(Value::as_str),
                ) {
                    (Some("text_delta"), Some(text)) if !text.is_empty() => {
                        self.text.push_str(text);
                        Step::Text(text.to_owned())
                    }
                    _ => Step::Nothing,
                }
            }
            "message_delta" => {
                if let Some(reason) = event
                    .delta
                    .as_ref()
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(out) = event
                    .usage
                    .as_ref()
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64)
                {
                    self.usage.output_tokens = out;
                }
                Step::Nothing
            }
            "message_stop" => {
                self.stopped = true;
                Step::Stop
            }
            "error" => {
                let error = event.error.unwrap_or_default();
                let field = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Step::Error {
                    kind: field("type"),
                    message: field("message"),
                }
            }
            // ping, content_block_start, content_block_stop and kinds added later.
            _ => Step::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn event(data: &str) -> StreamEvent {
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn body_has_a_top_level_system_and_max_tokens() {
        let request = ChatRequest {
            model: None,
            system: Some("Be brief.".into()),
            messages: vec![ChatMessage::user("Hi")],
            max_tokens: 64,
            temperature: None,
            json_output: true,
            stream: true,
        };
        let body = messages_body("claude-3-5-haiku-latest", &request);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(body["stream"], true);
        assert!(body.get("temperature").is_none());
        let hot = ChatRequest {
            temperature: Some(1.7),
            ..request
        };
        assert_eq!(messages_body("m", &hot)["temperature"], 1.0);
    }

    #[test]
    fn a_whole_stream() {
        let mut s = StreamState::default();
        let steps: Vec<Step> = [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ]
        .iter()
        .map(|d| s.apply(event(d)))
        .collect();
        assert_eq!(steps[3], Step::Text("Hello".into()));
        assert_eq!(steps[4], Step::Text("!".into()));
        assert_eq!(steps[7], Step::Stop);
        assert_eq!(s.text, "Hello!");
        assert_eq!(s.model, "claude-3-5-haiku-20241022");
        assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            s.usage,
            Usage {
                input_tokens: 25,
                output_tokens: 15
            }
        );
        assert!(s.stopped);
    }

    #[test]
    fn an_error_event() {
        let mut s = StreamState::default();
        let step = s.apply(event(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ));
        assert_eq!(
            step,
            Step::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            }
        );
        assert_eq!(
            stream_error_class("overloaded_error"),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn non_text_deltas_are_ignored() {
        let mut s = StreamState::default();
        let step = s.apply(event(
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        ));
        assert_eq!(step, Step::Nothing);
        assert!(s.text.is_empty());
    }
}
