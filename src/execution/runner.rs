//! Runs one attempt of a task: the response cache first, then the task type's work through the
//! provider router (or the echo provider, or article extraction).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::Instrument;

use super::cache::{self, CacheCounters, ResponseCache};
use super::{AttemptRecorder, Extractor, TokenCollector, dev_image, prompt_type, prompts};
use crate::domain::payload::ImageStyle;
use crate::domain::{AttemptOutcome, ErrorClass, Task, TaskType};
use crate::providers::{
    CallContext, Capability, EchoProvider, ImageRequest, ImageSearchRequest, Provider,
    ProviderError, Router,
};
use crate::telemetry::traces;

/// The answer of a successful attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOutput {
    /// Which provider answered (`cache` for a cached answer).
    pub provider: String,
    /// The task's result.
    pub result: Value,
}

/// Everything a [`TaskRunner`] is built from.
pub struct TaskRunnerParts {
    /// Providers behind breakers, limits and budgets.
    pub router: Router,
    /// Chains configured per task type; types without one use the defaults.
    pub chains: HashMap<TaskType, Vec<String>>,
    /// Fetches articles.
    pub extractor: Extractor,
    /// Cached answers.
    pub cache: Arc<dyn ResponseCache>,
    /// How long answers stay cached; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Where attempts go.
    pub recorder: Option<AttemptRecorder>,
    /// Whether `summarize` falls back to plain extraction when every provider failed.
    pub extraction_fallback: bool,
}

/// Executes attempts of tasks.
#[derive(Clone)]
pub struct TaskRunner {
    inner: Arc<TaskRunnerParts>,
    counters: Arc<CacheCounters>,
}

impl TaskRunner {
    /// A runner from its parts.
    pub fn new(parts: TaskRunnerParts) -> Self {
        Self {
            inner: Arc::new(parts),
            counters: Arc::default(),
        }
    }

    /// The router, for the admin API.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Where provider attempts are written, for other callers of the router (chat turns).
    pub fn recorder(&self) -> Option<&AttemptRecorder> {
        self.inner.recorder.as_ref()
    }

    /// Cache hits and misses so far.
    pub fn cache_stats(&self) -> super::CacheStats {
        self.counters.read()
    }

    /// The provider chain for `task_type` (and, for images, the payload's `source`).
    pub fn chain(&self, task_type: TaskType, payload: &Value) -> Vec<String> {
        if let Some(chain) = self.inner.chains.get(&task_type) {
            return chain.clone();
        }
        let router = &self.inner.router;
        match task_type {
            TaskType::ImageGeneration => router.chain_for(image_capability(router, payload)),
            TaskType::Summarize => {
                // Seed 003: Groq first (free tier), then Claude, then the others.
                let mut chain: Vec<String> = ["groq", "claude"]
                    .into_iter()
                    .filter(|p| router.has(p))
                    .map(str::to_owned)
                    .collect();
                for p in router.chain_for(Capability::Chat) {
                    if !chain.contains(&p) {
                        chain.push(p);
                    }
                }
                chain
            }
            _ => router.chain_for(Capability::Chat),
        }
    }

    /// Runs one attempt of `task`; `tokens` receives a streamed answer as it arrives.
    pub async fn execute(
        &self,
        task: &Task,
        tokens: &TokenCollector,
    ) -> Result<ProviderOutput, ProviderError> {
        if task.task_type == TaskType::Echo {
            // Echo is its own provider, one try, outside the router.
            let span = traces::provider_attempt_span("echo", 1, "echo");
            let answer = EchoProvider.execute(task).instrument(span.clone()).await;
            let outcome = match &answer {
                Ok(_) => AttemptOutcome::Ok,
                Err(e) if e.class == ErrorClass::NonRetryable => AttemptOutcome::NonRetryable,
                Err(_) => AttemptOutcome::Retryable,
            };
            traces::provider_outcome(&span, outcome.as_str(), None);
            let result = answer?;
            return Ok(ProviderOutput {
                provider: "echo".into(),
                result,
            });
        }
        let chain = self.chain(task.task_type, &task.payload);
        // Hashing the payload is skipped when the cache is off or the request opts out.
        let key = (!self.inner.cache_ttl.is_zero() && cache::allowed(&task.payload))
            .then(|| cache::key(task.task_type, &task.payload, &chain));
        if let Some(key) = &key {
            let hit = self.inner.cache.get(key).await;
            self.counters.count(hit.is_some());
            if let Some(mut result) = hit {
                result["cached"] = json!(true);
                return Ok(ProviderOutput {
                    provider: "cache".into(),
                    result,
                });
            }
        }
        let output = self.run(task, &chain, tokens).await?;
        if let Some(key) = &key {
            self.inner
                .cache
                .put(key, &output.result, self.inner.cache_ttl)
                .await;
        }
        Ok(output)
    }

    async fn run(
        &self,
        task: &Task,
        chain: &[String],
        tokens: &TokenCollector,
    ) -> Result<ProviderOutput, ProviderError> {
        let mut ctx = CallContext::new(task.user_id.clone(), Some(task.id), task.task_type);
        if let Some(recorder) = self.inner.recorder.clone() {
            ctx = ctx.on_attempt(move |a| recorder.record(a.clone()));
        }
        let router = &self.inner.router;
        let payload = &task.payload;
        match task.task_type {
            TaskType::Echo => unreachable!("echo is answered before routing"),
            TaskType::ExtractContent => {
                let result = self.inner.extractor.extract(payload).await?;
                Ok(ProviderOutput {
                    provider: "extraction".into(),
                    result,
                })
            }
            TaskType::ImageGeneration => run_images(router, payload, chain, &mut ctx).await,
            text_type => {
                let request = prompts::request(text_type, payload)?;
                match router.chat(chain, &request, tokens, &mut ctx).await {
                    Ok(routed) => {
                        let result = prompts::result(
                            text_type,
                            payload,
                            &routed.value.text,
                            &routed.provider,
                            &routed.model,
                        )?;
                        Ok(ProviderOutput {
                            provider: routed.provider,
                            result,
                        })
                    }
                    // Seed 003's last resort: every provider failed, or none is configured
                    // (a first run without keys still shows the AI path working).
                    Err(e)
                        if text_type == TaskType::Summarize
                            && self.inner.extraction_fallback
                            && (chain.is_empty() || e.class != ErrorClass::NonRetryable) =>
                    {
                        tracing::info!(task_id = %task.id, error = %e, "summarizing by extraction");
                        let started = std::time::Instant::now();
                        let result = prompts::extractive_summary(payload);
                        ctx.record_local(
                            prompts::EXTRACTION_PROVIDER,
                            prompts::EXTRACTION_MODEL,
                            started,
                        );
                        Ok(ProviderOutput {
                            provider: prompts::EXTRACTION_PROVIDER.into(),
                            result,
                        })
                    }
                    // A first run without keys: the development answer, so a pipeline of
                    // prompts (the `menu` example) visibly works.
                    Err(_) if text_type == TaskType::Prompt && chain.is_empty() => {
                        let started = std::time::Instant::now();
                        let mut result = prompt_type::development_answer(payload);
                        result["provider"] = json!(prompt_type::DEVELOPMENT_PROVIDER);
                        result["model"] = json!(prompt_type::DEVELOPMENT_MODEL);
                        ctx.record_local(
                            prompt_type::DEVELOPMENT_PROVIDER,
                            prompt_type::DEVELOPMENT_MODEL,
                            started,
                        );
                        Ok(ProviderOutput {
                            provider: prompt_type::DEVELOPMENT_PROVIDER.into(),
                            result,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// One image task: generated, or searched (seed 000's name → image). With no image provider
/// configured at all, the development tiles, so a first run without keys shows images.
async fn run_images(
    router: &Router,
    payload: &Value,
    chain: &[String],
    ctx: &mut CallContext,
) -> Result<ProviderOutput, ProviderError> {
    let count = payload
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 4) as u32;
    let text = ["prompt", "query", "description"]
        .into_iter()
        .find_map(|k| payload.get(k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    // Validated at submit; an unknown name (an older task) is simply unstyled.
    let style: Option<ImageStyle> = payload
        .get("style")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let capability = image_capability(router, payload);
    let source = if capability == Capability::ImageSearch {
        "search"
    } else {
        "generated"
    };
    if chain.is_empty() {
        let started = std::time::Instant::now();
        let result =
            dev_image::development_images(&text, count, source, capability.enabling_vars());
        ctx.record_local(
            prompt_type::DEVELOPMENT_PROVIDER,
            prompt_type::DEVELOPMENT_MODEL,
            started,
        );
        return Ok(ProviderOutput {
            provider: prompt_type::DEVELOPMENT_PROVIDER.into(),
            result,
        });
    }
    let routed = if capability == Capability::ImageSearch {
        let request = ImageSearchRequest {
            query: text,
            count,
            orientation: payload
                .get("orientation")
                .and_then(Value::as_str)
                .map(str::to_owned),
            style,
        };
        router.search_images(chain, &request, ctx).await?
    } else {
        let request = ImageRequest {
            model: payload
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned),
            prompt: text,
            size: payload
                .get("size")
                .and_then(Value::as_str)
                .map(str::to_owned),
            count,
            style,
        };
        router.generate_image(chain, &request, ctx).await?
    };
    let mut result = json!({
        "images": routed.value.images,
        "source": source,
        "provider": routed.provider,
        "model": routed.model,
    });
    if let Some(style) = style {
        result["style"] = json!(style.as_str());
    }
    Ok(ProviderOutput {
        result,
        provider: routed.provider,
    })
}

/// Search when asked (`"source": "search"`) or when no provider can generate images.
fn image_capability(router: &Router, payload: &Value) -> Capability {
    match payload.get("source").and_then(Value::as_str) {
        Some("search") => Capability::ImageSearch,
        Some("generate") => Capability::ImageGeneration,
        _ if router.chain_for(Capability::ImageGeneration).is_empty() => Capability::ImageSearch,
        _ => Capability::ImageGeneration,
    }
}
