//! The adapter port: what every AI provider offers, in our terms. Each adapter maps these
//! requests to its provider's real HTTP API and its answers (and errors) back.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::ProviderError;
use crate::domain::ErrorClass;
use crate::domain::payload::ImageStyle;

/// What a provider can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Text generation from a conversation (chat completions, messages, generateContent).
    Chat,
    /// A generated image from a prompt.
    ImageGeneration,
    /// Existing photos matching a query (Unsplash).
    ImageSearch,
}

impl Capability {
    /// In a few words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Chat => "text generation",
            Self::ImageGeneration => "image generation",
            Self::ImageSearch => "image search",
        }
    }

    /// The environment variables that would enable a provider with this capability (see the
    /// provider table in `config/providers.rs`).
    pub fn enabling_vars(self) -> &'static [&'static str] {
        match self {
            Self::Chat => &[
                "GROQ_API_KEY",
                "OPENAI_API_KEY",
                "CLAUDE_API_KEY",
                "GEMINI_API_KEY",
                "OPENAI_COMPAT_BASE_URL",
            ],
            Self::ImageGeneration => &["OPENAI_API_KEY"],
            Self::ImageSearch => &["UNSPLASH_API_KEY"],
        }
    }
}

/// Who said a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The end user (or our prompt on their behalf).
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message from the user.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// A text generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model to use; `None` means the adapter's configured default.
    pub model: Option<String>,
    /// Instructions that frame the conversation (OpenAI's system message, Anthropic's `system`,
    /// Gemini's `systemInstruction`).
    pub system: Option<String>,
    /// The conversation, oldest first; the last message is the user's.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature, when the caller cares.
    pub temperature: Option<f32>,
    /// Ask for a single JSON object as the answer (OpenAI `response_format`, Gemini
    /// `responseMimeType`; Anthropic relies on the prompt).
    pub json_output: bool,
    /// Stream the answer, passing each piece of text to the [`TokenSink`] as it arrives.
    pub stream: bool,
}

/// Tokens the provider reports it used; the basis of cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// A complete text answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The whole generated text (for a stream: every piece, joined).
    pub text: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Reported token usage.
    pub usage: Usage,
    /// Why generation stopped (`stop`, `length`, `end_turn`, `STOP`, ...), as the provider says.
    pub finish_reason: Option<String>,
}

/// An image generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    /// The model to use; `None` means the adapter's configured default.
    pub model: Option<String>,
    /// What to draw.
    pub prompt: String,
    /// `WIDTHxHEIGHT`, e.g. `1024x1024`, when the caller cares.
    pub size: Option<String>,
    /// How many images (1-4).
    pub count: u32,
    /// Seed 000's style; each adapter maps it to its API (see `openai::image_body`).
    pub style: Option<ImageStyle>,
}

/// A photo search request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSearchRequest {
    /// What to look for.
    pub query: String,
    /// How many photos (1-30).
    pub count: u32,
    /// `landscape`, `portrait` or `squarish`, when the caller cares.
    pub orientation: Option<String>,
    /// Seed 000's style; a search adds the style's keyword to its query.
    pub style: Option<ImageStyle>,
}

/// One image of an answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Where the image can be fetched (absent when only `b64_json` is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The image itself, base64, when the provider returns bytes instead of a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// A description (Unsplash's alt text, OpenAI's revised prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The photographer, for attribution (Unsplash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The page to link for attribution (Unsplash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Pixels, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixels, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Images generated or found.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageResponse {
    /// The images, in the provider's order.
    pub images: Vec<Image>,
    /// The model that answered (for a search: the provider's name).
    pub model: String,
}

/// Receives the pieces of a streamed answer as they arrive.
pub trait TokenSink: Send + Sync {
    /// One piece of generated text.
    fn token(&self, text: &str);
}

/// A sink that drops every piece, for callers that only want the whole answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl TokenSink for NoSink {
    fn token(&self, _text: &str) {}
}

/// How to reach one provider.
#[derive(Clone)]
pub struct AdapterConfig {
    /// The provider's API key, sent as the provider expects (never logged).
    pub api_key: String,
    /// Scheme, host and optional path prefix, without a trailing slash, e.g.
    /// `https://api.openai.com` or `http://127.0.0.1:11434`.
    pub base_url: String,
    /// The model used when a request names none.
    pub default_model: String,
    /// Bound on one whole call (for a stream: until its last byte).
    pub timeout: Duration,
}

impl std::fmt::Debug for AdapterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterConfig")
            .field("api_key", &"***")
            .field("base_url", &self.base_url)
            .field("default_model", &self.default_model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One AI provider's HTTP API. Dropping a returned future aborts the call.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Stable name, recorded on attempts and usage rows (`openai`, `claude`, ...).
    fn name(&self) -> &str;

    /// What this provider can do; the router only asks for these.
    fn capabilities(&self) -> &[Capability];

    /// Generates text.
    async fn chat(
        &self,
        request: &ChatRequest,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let _ = (request, sink);
        Err(unsupported(self.name(), Capability::Chat))
    }

    /// Generates images.
    async fn generate_image(&self, request: &ImageRequest) -> Result<ImageResponse, ProviderError> {
        let _ = request;
        Err(unsupported(self.name(), Capability::ImageGeneration))
    }

    /// Searches photos.
    async fn search_images(
        &self,
        request: &ImageSearchRequest,
    ) -> Result<ImageResponse, ProviderError> {
        let _ = request;
        Err(unsupported(self.name(), Capability::ImageSearch))
    }
}

/// The error for a capability an adapter lacks.
fn unsupported(provider: &str, capability: Capability) -> ProviderError {
    ProviderError {
        provider: provider.to_owned(),
        class: ErrorClass::NonRetryable,
        message: format!("{provider} does not support {capability:?}"),
        retry_after: None,
    }
}
