//! AI providers behind one trait. Each task type maps to the provider that serves it.

mod adapter;
mod echo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{ErrorClass, Task, TaskError, TaskType};

pub use adapter::{
    Adapter, AdapterConfig, Capability, ChatMessage, ChatRequest, ChatResponse, Image,
    ImageRequest, ImageResponse, ImageSearchRequest, NoSink, Role, TokenSink, Usage,
};
pub use echo::EchoProvider;

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
            class: self.class,
            message: self.message.clone(),
            provider: Some(self.provider.clone()),
        }
    }
}

/// The answer of a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOutput {
    /// Which provider answered.
    pub provider: String,
    /// The task's result.
    pub result: Value,
}

/// One AI provider adapter.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Stable name, recorded on tasks and usage rows.
    fn name(&self) -> &'static str;

    /// Runs one attempt of `task`. Cancelling the future aborts the call.
    async fn execute(&self, task: &Task) -> Result<Value, ProviderError>;
}

/// Which provider serves which task type.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    by_type: HashMap<TaskType, Arc<dyn Provider>>,
}

impl ProviderRegistry {
    /// The built-in set: `echo` serves the `echo` type. Real AI adapters register the other
    /// types when configured.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.register(TaskType::Echo, Arc::new(EchoProvider));
        r
    }

    /// Routes `task_type` to `provider`.
    pub fn register(&mut self, task_type: TaskType, provider: Arc<dyn Provider>) {
        self.by_type.insert(task_type, provider);
    }

    /// Task types with a provider.
    pub fn served_types(&self) -> Vec<TaskType> {
        TaskType::ALL
            .into_iter()
            .filter(|t| self.by_type.contains_key(t))
            .collect()
    }

    /// Runs one attempt of `task` on its provider.
    pub async fn execute(&self, task: &Task) -> Result<ProviderOutput, ProviderError> {
        let Some(provider) = self.by_type.get(&task.task_type) else {
            return Err(ProviderError {
                provider: "none".into(),
                class: ErrorClass::NonRetryable,
                message: format!(
                    "no AI provider is configured for task type {}",
                    task.task_type
                ),
                retry_after: None,
            });
        };
        let result = provider.execute(task).await?;
        Ok(ProviderOutput {
            provider: provider.name().to_owned(),
            result,
        })
    }
}
