//! OpenAI's chat completions and image generation, and every server that speaks the same API:
//! Groq (`https://api.groq.com/openai`), Ollama, vLLM, llama.cpp and the like.
//!
//! The base URL is given WITHOUT `/v1` (`https://api.openai.com`, `http://127.0.0.1:11434`);
//! the adapter appends `/v1/chat/completions` and `/v1/images/generations`. A trailing `/v1`
//! (the OpenAI SDKs' convention, e.g. `http://127.0.0.1:11434/v1`) is accepted and dropped.

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{ProviderHttp, stream_error_class};
use super::{
    Adapter, AdapterConfig, Capability, ChatRequest, ChatResponse, Image, ImageRequest,
    ImageResponse, ProviderError, Role, TokenSink, Usage,
};
use crate::domain::ErrorClass;
use crate::domain::payload::ImageStyle;

/// An OpenAI-compatible provider.
pub struct OpenAiAdapter {
    http: ProviderHttp,
    capabilities: Vec<Capability>,
}

impl OpenAiAdapter {
    /// An adapter named `name` (recorded on attempts and usage) offering `capabilities`.
    pub fn new(
        name: &str,
        mut config: AdapterConfig,
        client: reqwest::Client,
        capabilities: Vec<Capability>,
    ) -> Self {
        config.base_url = without_v1(&config.base_url);
        Self {
            http: ProviderHttp::new(name, config, client),
            capabilities,
        }
    }

    /// OpenAI itself: chat and image generation.
    pub fn openai(config: AdapterConfig, client: reqwest::Client) -> Self {
        Self::new(
            "openai",
            config,
            client,
            vec![Capability::Chat, Capability::ImageGeneration],
        )
    }

    /// Groq: chat only (base URL `https://api.groq.com/openai`).
    pub fn groq(config: AdapterConfig, client: reqwest::Client) -> Self {
        Self::new("groq", config, client, vec![Capability::Chat])
    }

    /// Any OpenAI-compatible server (Ollama, vLLM, llama.cpp): chat only. The key may be empty.
    pub fn compatible(config: AdapterConfig, client: reqwest::Client) -> Self {
        Self::new("compat", config, client, vec![Capability::Chat])
    }

    /// A POST to `path` with the bearer key (omitted when empty: local servers need none).
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let request = self.http.client.post(self.http.url(path)).json(body);
        if self.http.config.api_key.is_empty() {
            request
        } else {
            request.bearer_auth(&self.http.config.api_key)
        }
    }

    async fn chat_once(&self, body: &Value) -> Result<ChatResponse, ProviderError> {
        let response = self
            .http
            .send(self.post("/v1/chat/completions", body))
            .await?;
        let body = self.http.body(response).await?;
        self.read_completion(&body)
    }

    /// A whole chat completion body, read.
    pub(crate) fn read_completion(&self, body: &[u8]) -> Result<ChatResponse, ProviderError> {
        let completion: Completion = self.http.parse(body)?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| self.http.malformed("no choices in the completion"))?;
        if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
            return Err(self.http.error(
                ErrorClass::NonRetryable,
                format!("the model refused: {refusal}"),
            ));
        }
        self.check_finish(choice.finish_reason.as_deref())?;
        Ok(ChatResponse {
            text: choice.message.content.unwrap_or_default(),
            model: completion.model,
            usage: completion.usage.map(Usage::from).unwrap_or_default(),
            finish_reason: choice.finish_reason,
        })
    }

    async fn chat_stream(
        &self,
        body: &Value,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let response = self
            .http
            .send(self.post("/v1/chat/completions", body))
            .await?;
        self.read_stream(response.bytes_stream(), sink).await
    }

    /// A streamed completion's events, read to the end; each piece of text goes to `sink`.
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
            if event.data.trim() == "[DONE]" {
                state.done = true;
                break;
            }
            let chunk: Chunk = serde_json::from_str(&event.data)
                .map_err(|e| self.http.malformed(format_args!("stream chunk: {e}")))?;
            if let Some(error) = chunk.error {
                return Err(self.stream_error(&error));
            }
            if let Some(piece) = state.apply(chunk) {
                sink.token(&piece);
            }
        }
        // Without both markers the answer may be cut short: never pass it off as complete.
        if !state.done || state.finish_reason.is_none() {
            return Err(self.http.cut_stream());
        }
        self.check_finish(state.finish_reason.as_deref())?;
        Ok(ChatResponse {
            text: state.text,
            model: state.model,
            usage: state.usage,
            finish_reason: state.finish_reason,
        })
    }

    /// `content_filter` means the answer was withheld: a content-policy failure.
    fn check_finish(&self, finish_reason: Option<&str>) -> Result<(), ProviderError> {
        if finish_reason == Some("content_filter") {
            return Err(self.http.error(
                ErrorClass::NonRetryable,
                "content policy: the answer was filtered (finish_reason content_filter)",
            ));
        }
        Ok(())
    }

    /// An `{"error": {...}}` chunk inside a 200 stream.
    fn stream_error(&self, error: &Value) -> ProviderError {
        let kind = ["type", "code"]
            .iter()
            .filter_map(|k| error.get(*k).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error in stream");
        self.http.error(
            stream_error_class(&kind),
            format!("error in stream: {message} ({kind})"),
        )
    }
}

#[async_trait]
impl Adapter for OpenAiAdapter {
    fn name(&self) -> &str {
        &self.http.name
    }

    fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let body = chat_body(self.http.model(&request.model), request);
        if request.stream {
            self.http.bounded(self.chat_stream(&body, sink)).await
        } else {
            self.http.bounded(self.chat_once(&body)).await
        }
    }

    async fn generate_image(&self, request: &ImageRequest) -> Result<ImageResponse, ProviderError> {
        if !self.capabilities.contains(&Capability::ImageGeneration) {
            return Err(self.http.error(
                ErrorClass::NonRetryable,
                format!("{} does not support image generation", self.http.name),
            ));
        }
        let model = self.http.model(&request.model).to_owned();
        let body = image_body(&model, request);
        self.http
            .bounded(async {
                let response = self
                    .http
                    .send(self.post("/v1/images/generations", &body))
                    .await?;
                let body = self.http.body(response).await?;
                self.read_images(&body, model)
            })
            .await
    }
}

impl OpenAiAdapter {
    /// A whole image generation body, read.
    pub(crate) fn read_images(
        &self,
        body: &[u8],
        model: String,
    ) -> Result<ImageResponse, ProviderError> {
        let generated: Generated = self.http.parse(body)?;
        if generated.data.is_empty() {
            return Err(self.http.malformed("no images in the answer"));
        }
        Ok(ImageResponse {
            images: generated.data.into_iter().map(Image::from).collect(),
            model,
        })
    }
}

/// The base URL without a trailing `/` or `/v1`.
fn without_v1(base_url: &str) -> String {
    let trimmed = base_url.trim_end_matches('/');
    trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned()
}

/// The chat completions request body.
pub(crate) fn chat_body(model: &str, request: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &request.messages {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(json!({"role": role, "content": m.content}));
    }
    // `max_tokens`, not `max_completion_tokens`: every OpenAI-compatible server accepts it.
    let mut body = json!({"model": model, "messages": messages, "max_tokens": request.max_tokens});
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if request.json_output {
        body["response_format"] = json!({"type": "json_object"});
    }
    if request.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The image generation request body. `gpt-image-*` models always answer base64 and reject
/// `response_format`; DALL-E models are asked for URLs. A style becomes DALL-E 3's own
/// `style` parameter where it has one (`vivid`, `natural`; `photo` is `natural`), and a phrase
/// leading the prompt otherwise ("a watercolor painting of: ...").
pub(crate) fn image_body(model: &str, request: &ImageRequest) -> Value {
    let native = match request.style {
        Some(ImageStyle::Vivid) if model.starts_with("dall-e-3") => Some("vivid"),
        Some(ImageStyle::Natural) if model.starts_with("dall-e-3") => Some("natural"),
        _ => None,
    };
    let prompt = match request.style {
        Some(style) if native.is_none() => {
            format!("{} of: {}", style.prompt_phrase(), request.prompt)
        }
        _ => request.prompt.clone(),
    };
    let mut body = json!({"model": model, "prompt": prompt, "n": request.count.max(1)});
    if let Some(style) = native {
        body["style"] = json!(style);
    }
    if let Some(size) = &request.size {
        body["size"] = json!(size);
    }
    if !model.starts_with("gpt-image") {
        body["response_format"] = json!("url");
    }
    body
}

/// A non-streamed chat completion.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

/// Token counts as OpenAI reports them.
#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

/// One `data:` chunk of a streamed completion.
#[derive(Deserialize, Default)]
pub(crate) struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    /// Groq reports usage here instead of `usage`.
    x_groq: Option<GroqExtra>,
    /// An error reported after the stream started.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct GroqExtra {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
}

/// What a stream has said so far.
#[derive(Default)]
pub(crate) struct StreamState {
    pub text: String,
    pub model: String,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    /// `data: [DONE]` arrived.
    pub done: bool,
}

impl StreamState {
    /// Takes in one chunk; returns the new text it carries, if any.
    pub fn apply(&mut self, chunk: Chunk) -> Option<String> {
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = chunk.usage.or_else(|| chunk.x_groq.and_then(|g| g.usage)) {
            self.usage = usage.into();
        }
        let mut piece = String::new();
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                piece.push_str(&text);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if piece.is_empty() {
            return None;
        }
        self.text.push_str(&piece);
        Some(piece)
    }
}

/// The image generation answer.
#[derive(Deserialize)]
struct Generated {
    #[serde(default)]
    data: Vec<GeneratedImage>,
}

#[derive(Deserialize)]
struct GeneratedImage {
    url: Option<String>,
    b64_json: Option<String>,
    revised_prompt: Option<String>,
}

impl From<GeneratedImage> for Image {
    fn from(g: GeneratedImage) -> Self {
        Image {
            url: g.url,
            b64_json: g.b64_json,
            description: g.revised_prompt,
            ..Image::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn request() -> ChatRequest {
        ChatRequest {
            model: None,
            system: Some("Be brief.".into()),
            messages: vec![ChatMessage::user("Hi")],
            max_tokens: 100,
            temperature: Some(0.5),
            json_output: true,
            stream: true,
        }
    }

    #[test]
    fn chat_body_puts_the_system_message_first() {
        let body = chat_body("gpt-4o-mini", &request());
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "Hi"})
        );
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn chat_body_leaves_out_what_was_not_asked() {
        let mut r = request();
        r.system = None;
        r.temperature = None;
        r.json_output = false;
        r.stream = false;
        let body = chat_body("m", &r);
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        for key in ["temperature", "response_format", "stream", "stream_options"] {
            assert!(body.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn image_body_asks_dalle_for_urls_only() {
        let r = ImageRequest {
            model: None,
            prompt: "a cat".into(),
            size: Some("1024x1024".into()),
            count: 1,
            style: None,
        };
        let body = image_body("dall-e-3", &r);
        assert_eq!(body["response_format"], "url");
        assert_eq!(body["size"], "1024x1024");
        assert_eq!(body["n"], 1);
        assert!(
            image_body("gpt-image-1", &r)
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn image_styles_map_to_dalle_3_or_the_prompt() {
        let styled = |model: &str, style: ImageStyle| {
            let r = ImageRequest {
                model: None,
                prompt: "a cat".into(),
                size: None,
                count: 1,
                style: Some(style),
            };
            image_body(model, &r)
        };
        let vivid = styled("dall-e-3", ImageStyle::Vivid);
        assert_eq!(
            (vivid["style"].as_str(), vivid["prompt"].as_str()),
            (Some("vivid"), Some("a cat"))
        );
        let natural = styled("dall-e-3", ImageStyle::Natural);
        assert_eq!(natural["style"], "natural");
        let water = styled("dall-e-3", ImageStyle::Watercolor);
        assert!(water.get("style").is_none());
        assert_eq!(water["prompt"], "a watercolor painting of: a cat");
        // Only DALL-E 3 has the parameter; other models get the phrase.
        let gpt = styled("gpt-image-1", ImageStyle::Vivid);
        assert!(gpt.get("style").is_none());
        assert!(gpt["prompt"].as_str().unwrap().starts_with("a vivid"));
    }

    #[test]
    fn a_trailing_v1_in_the_base_url_is_dropped() {
        assert_eq!(
            without_v1("http://127.0.0.1:11434/v1"),
            "http://127.0.0.1:11434"
        );
        assert_eq!(
            without_v1("https://api.groq.com/openai/v1/"),
            "https://api.groq.com/openai"
        );
        assert_eq!(
            without_v1("https://api.openai.com"),
            "https://api.openai.com"
        );
        assert_eq!(
            without_v1("https://x.example/v1beta"),
            "https://x.example/v1beta"
        );
    }

    #[test]
    fn stream_chunks_accumulate() {
        let mut state = StreamState::default();
        let chunks = [
            r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
        ];
        let pieces: Vec<String> = chunks
            .iter()
            .filter_map(|c| state.apply(serde_json::from_str(c).unwrap()))
            .collect();
        assert_eq!(pieces, ["Hel", "lo"]);
        assert_eq!(state.text, "Hello");
        assert_eq!(state.finish_reason.as_deref(), Some("stop"));
        assert_eq!(state.model, "gpt-4o-mini");
        assert_eq!(
            state.usage,
            Usage {
                input_tokens: 9,
                output_tokens: 2
            }
        );
    }

    #[test]
    fn groq_usage_in_x_groq() {
        let mut state = StreamState::default();
        let chunk = r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":4}}}"#;
        state.apply(serde_json::from_str(chunk).unwrap());
        assert_eq!(state.usage.total(), 7);
    }
}
