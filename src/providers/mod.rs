//! AI providers behind one trait. Each task type maps to the provider that serves it.

mod adapter;
mod anthropic;
mod breaker;
mod budget;
mod dev;
mod echo;
mod gemini;
mod http;
mod openai;
mod pricing;
mod router;
mod unsplash;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{ErrorClass, Task, TaskError};

pub use adapter::{
    Adapter, AdapterConfig, Capability, ChatMessage, ChatRequest, ChatResponse, Image,
    ImageRequest, ImageResponse, ImageSearchRequest, NoSink, Role, TokenSink, Usage,
};
pub use anthropic::{ANTHROPIC_VERSION, AnthropicAdapter};
pub use breaker::{
    Breaker, BreakerError, BreakerPolicy, BreakerSnapshot, BreakerState, Breakers, MemoryBreakers,
    Permit, RedisBreakers,
};
pub use budget::{Budget, BudgetHold};
pub use dev::{DEV_CHAT_PROVIDER, DevChatAdapter};
pub use echo::EchoProvider;
pub use gemini::GeminiAdapter;
pub use http::http_client;
pub use openai::OpenAiAdapter;
pub use pricing::Price;
pub use router::{CallContext, ProviderSpec, Routed, Router, StreamSink};
pub use unsplash::UnsplashAdapter;

/// A provider call that failed, classified for retry decisions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    /// Which provider failed.
    pub provider: String,
    /// How to treat the failure.
    pub class: ErrorClass,
    /// What happened, safe to show the task's owner.
    pub message: String,
    /// For [`ErrorClass::RateLimited`]: the provider's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// The error record kept on the task.
    pub fn to_task_error(&self) -> TaskError {
        TaskError {
            provider: Some(self.provider.clone()),
            ..TaskError::new(self.class, self.message.clone())
        }
    }
}

/// A provider that answers a task directly, without the router (`echo`).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Stable name, recorded on tasks and usage rows.
    fn name(&self) -> &'static str;

    /// Runs one attempt of `task`. Cancelling the future aborts the call.
    async fn execute(&self, task: &Task) -> Result<Value, ProviderError>;
}
