//! Wiring of the AI side: adapters from their settings, the router with its shared breakers,
//! rate limits and budgets, the response cache and the attempt recorder.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::config::AiConfig;
use crate::execution::{
    AttemptRecorder, ExtractConfig, Extractor, ResponseCache, TaskRunner, TaskRunnerParts,
};
use crate::providers::{
    Adapter, AdapterConfig, AnthropicAdapter, Breakers, Budget, GeminiAdapter, OpenAiAdapter,
    ProviderSpec, Router, UnsplashAdapter, http_client,
};
use crate::ratelimit::RateLimiter;
use crate::store::UsageStore;
use crate::telemetry::live::LiveCounters;

/// The shared state the AI side runs on.
pub struct AiBackends {
    /// Attempts, usage and budgets.
    pub usage: Arc<dyn UsageStore>,
    /// One breaker per provider.
    pub breakers: Arc<dyn Breakers>,
    /// Provider rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// Cached answers.
    pub cache: Arc<dyn ResponseCache>,
}

/// The configured adapters, sharing one HTTP client (and its connection pools).
fn provider_specs(config: &AiConfig) -> anyhow::Result<Vec<ProviderSpec>> {
    for (name, var) in &config.disabled {
        tracing::info!(provider = name, "provider disabled: set {var} to enable it");
    }
    let client = http_client()?;
    let mut specs = Vec::new();
    for p in &config.providers {
        let adapter_config = AdapterConfig {
            api_key: p.api_key.expose().to_owned(),
            base_url: p.base_url.clone(),
            default_model: p.model.clone(),
            timeout: config.request_timeout,
        };
        let client = client.clone();
        let adapter: Arc<dyn Adapter> = match p.name {
            "gemini" => Arc::new(GeminiAdapter::new(p.name, adapter_config, client)),
            "openai" => Arc::new(OpenAiAdapter::openai(adapter_config, client)),
            "claude" => Arc::new(AnthropicAdapter::new(p.name, adapter_config, client)),
            "groq" => Arc::new(OpenAiAdapter::groq(adapter_config, client)),
            "compat" => Arc::new(OpenAiAdapter::compatible(adapter_config, client)),
            "unsplash" => Arc::new(UnsplashAdapter::new(p.name, adapter_config, client)),
            other => anyhow::bail!("no adapter for provider {other}"),
        };
        tracing::info!(
            provider = p.name,
            base_url = %p.base_url,
            model = %p.model,
            priority = p.priority,
            rate = ?p.rate.map(|r| r.to_string()),
            "provider enabled"
        );
        specs.push(ProviderSpec {
            adapter,
            priority: p.priority,
            request_rate: p.rate,
            token_rate: p.token_rate,
            price: p.price,
            model: p.model.clone(),
        });
    }
    Ok(specs)
}

/// Builds the task runner.
pub fn task_runner(
    config: &AiConfig,
    backends: AiBackends,
    live: Arc<LiveCounters>,
    tracker: &TaskTracker,
) -> anyhow::Result<TaskRunner> {
    let mut router = Router::new(
        provider_specs(config)?,
        backends.breakers,
        backends.limiter,
        Budget::new(backends.usage.clone(), config.user_monthly_budget),
        config.rate_wait,
    );
    if let Some(max) = config.max_concurrent_requests {
        router = router.with_max_concurrent_calls(max);
    }
    Ok(TaskRunner::new(TaskRunnerParts {
        router,
        chains: config.chains.clone(),
        extractor: Extractor::new(ExtractConfig {
            max_bytes: config.extract_max_bytes,
            timeout: config.extract_timeout,
            allow_private: config.extract_allow_private,
            allowed_hosts: config.allowed_fetch_hosts.clone(),
        }),
        cache: backends.cache,
        cache_ttl: config.cache_ttl,
        recorder: Some(AttemptRecorder::spawn(backends.usage, tracker).with_live_counters(live)),
        extraction_fallback: config.extraction_fallback,
    }))
}
