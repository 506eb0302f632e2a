//! Wiring of the AI side: adapters from their settings, the router with its shared breakers,
//! rate limits and budgets, the response cache and the attempt recorder.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::config::AiConfig;
use crate::providers::{Breakers, Budget, ProviderSpec, Router};
use crate::ratelimit::RateLimiter;
use crate::store::UsageStore;
use crate::tasks::{
    AttemptRecorder, ExtractConfig, Extractor, ResponseCache, TaskRunner, TaskRunnerParts,
};

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

/// The configured adapters.
fn provider_specs(config: &AiConfig) -> Vec<ProviderSpec> {
    for (name, var) in &config.disabled {
        tracing::info!(provider = name, "provider disabled: set {var} to enable it");
    }
    Vec::new()
}

/// Builds the task runner.
pub fn task_runner(config: &AiConfig, backends: AiBackends, tracker: &TaskTracker) -> TaskRunner {
    let router = Router::new(
        provider_specs(config),
        backends.breakers,
        backends.limiter,
        Budget::new(backends.usage.clone(), config.user_monthly_budget),
        config.rate_wait,
    );
    TaskRunner::new(TaskRunnerParts {
        router,
        chains: config.chains.clone(),
        extractor: Extractor::new(ExtractConfig {
            max_bytes: config.extract_max_bytes,
            timeout: config.extract_timeout,
            allow_private: config.extract_allow_private,
        }),
        cache: backends.cache,
        cache_ttl: config.cache_ttl,
        recorder: Some(AttemptRecorder::spawn(backends.usage, tracker)),
        extraction_fallback: config.extraction_fallback,
    })
}
