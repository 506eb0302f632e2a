//! The router: tries a task's providers in order, skipping those whose breaker is open or whose
//! rate limit is spent, reserving budget before each call, and falling back on Retryable and
//! RateLimited failures. NonRetryable failures end the chain at once. Every try is recorded.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, Span};

use super::breaker::{Breakers, Permit};
use super::budget::{Budget, BudgetHold};
use super::pricing::Price;
use super::{
    Adapter, Capability, ChatRequest, ChatResponse, ImageRequest, ImageResponse,
    ImageSearchRequest, ProviderError, TokenSink, Usage,
};
use crate::clock;
use crate::domain::{
    AttemptOutcome, ErrorClass, Micros, ProviderAttempt, TaskId, TaskType, UserId,
};
use crate::ratelimit::{Decision, Rate, RateLimiter};
use crate::telemetry::{metrics, traces};

/// One configured provider.
#[derive(Clone)]
pub struct ProviderSpec {
    /// Talks to it.
    pub adapter: Arc<dyn Adapter>,
    /// Lower goes first in default chains (seed 001's priorities).
    pub priority: u32,
    /// Requests allowed, across all instances.
    pub request_rate: Option<Rate>,
    /// Tokens (prompt + generated, estimated before the call) allowed, across all instances.
    pub token_rate: Option<Rate>,
    /// What calls cost.
    pub price: Price,
    /// The model its requests use by default (recorded on attempts).
    pub model: String,
}

/// A streamed answer's receiver that can be told to start over when the router falls back to
/// another provider after a stream broke.
pub trait StreamSink: TokenSink {
    /// Everything received so far is void; a new answer follows.
    fn restart(&self, provider: &str);

    /// Whether text already passed on cannot be taken back, so a provider failing now must
    /// end the call instead of the router starting the answer over on the next one (a chat
    /// client has shown the words). False by default: tasks restart their progress.
    fn holds_fallback(&self) -> bool {
        false
    }
}

/// Called with each try as it is made.
type AttemptHook = Box<dyn Fn(&ProviderAttempt) + Send + Sync>;

/// Who a call is for; collects the attempts made.
pub struct CallContext {
    /// Who pays.
    pub user_id: UserId,
    /// The task served.
    pub task_id: Option<TaskId>,
    /// The task's type.
    pub task_type: TaskType,
    /// Every try so far, in order.
    pub attempts: Vec<ProviderAttempt>,
    /// Also gets each try as it is made, so tries survive a dropped call.
    on_attempt: Option<AttemptHook>,
}

impl CallContext {
    /// A context for `task_id` of `user_id`.
    pub fn new(user_id: UserId, task_id: Option<TaskId>, task_type: TaskType) -> Self {
        Self {
            user_id,
            task_id,
            task_type,
            attempts: Vec::new(),
            on_attempt: None,
        }
    }

    /// Calls `f` with each try as it is made.
    pub fn on_attempt(mut self, f: impl Fn(&ProviderAttempt) + Send + Sync + 'static) -> Self {
        self.on_attempt = Some(Box::new(f));
        self
    }

    /// Records a step answered here without a provider (seed 003's extraction fallback for
    /// `summarize`): free, outcome `ok`, so a task's attempts show how it was answered.
    pub fn record_local(&mut self, name: &str, model: &str, started: Instant) {
        let attempt = self.attempt(
            name,
            model,
            Usage::default(),
            Micros(0),
            AttemptOutcome::Ok,
            None,
            started,
        );
        self.record(attempt);
    }

    /// Keeps `attempt` (made by [`Self::attempt`]) with the call's tries.
    fn record(&mut self, attempt: ProviderAttempt) {
        self.attempts.push(attempt);
    }

    /// A try as made now, handed to the hook.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        provider: &str,
        model: &str,
        usage: Usage,
        cost: Micros,
        outcome: AttemptOutcome,
        error: Option<String>,
        started: Instant,
    ) -> ProviderAttempt {
        let attempt = ProviderAttempt {
            id: uuid::Uuid::now_v7(),
            task_id: self.task_id,
            user_id: self.user_id.clone(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            task_type: self.task_type,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost,
            outcome,
            error,
            latency_ms: started.elapsed().as_millis() as u64,
            at: clock::now(),
        };
        metrics::provider_try(
            provider,
            outcome.as_str(),
            started.elapsed(),
            (usage.input_tokens, usage.output_tokens),
            cost.0,
        );
        if let Some(f) = &self.on_attempt {
            f(&attempt);
        }
        attempt
    }
}

/// A provider call under way, holding its budget reservation. Dropped before
/// [`InFlight::answered`] (its future dropped: the task timed out or was cancelled, its
/// instance stopped, its commit failed), it records the try as [`AttemptOutcome::Abandoned`] at
/// the reserved cost, and the reservation, dropped with it, books that cost (see
/// [`BudgetHold`]).
struct InFlight<'c> {
    ctx: &'c CallContext,
    provider: &'c str,
    model: &'c str,
    hold: Option<BudgetHold>,
    started: Instant,
    answered: bool,
    /// The try's span, which gets the abandoned outcome too.
    span: &'c Span,
}

impl InFlight<'_> {
    /// The provider answered (or failed): the caller records the try and settles the
    /// reservation it gets back.
    fn answered(mut self) -> Option<BudgetHold> {
        self.answered = true;
        self.hold.take()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            traces::provider_outcome(self.span, AttemptOutcome::Abandoned.as_str(), None);
            self.ctx.attempt(
                self.provider,
                self.model,
                Usage::default(),
                self.hold.as_ref().map_or(Micros(0), BudgetHold::amount),
                AttemptOutcome::Abandoned,
                Some("dropped before the provider answered".into()),
                self.started,
            );
        }
    }
}

/// A successful routed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed<T> {
    /// The answer.
    pub value: T,
    /// Who gave it.
    pub provider: String,
    /// Which model.
    pub model: String,
}

type CallFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<(T, String, Usage), ProviderError>> + Send + 'a>>;

/// Providers by name, with the shared breakers, rate limits and budget.
#[derive(Clone)]
pub struct Router {
    providers: HashMap<String, ProviderSpec>,
    breakers: Arc<dyn Breakers>,
    limiter: Arc<dyn RateLimiter>,
    budget: Budget,
    /// Longest we wait for a provider's rate limit before moving on to the next provider.
    max_rate_wait: Duration,
    /// Caps provider calls in flight on this instance (`AI_MAX_CONCURRENT_REQUESTS`), across
    /// every worker, so a burst of tasks cannot open more connections than a provider plan
    /// allows; `None` leaves the bound to the worker pool.
    call_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Router {
    /// A router over `providers`.
    pub fn new(
        providers: Vec<ProviderSpec>,
        breakers: Arc<dyn Breakers>,
        limiter: Arc<dyn RateLimiter>,
        budget: Budget,
        max_rate_wait: Duration,
    ) -> Self {
        Self {
            providers: providers
                .into_iter()
                .map(|p| (p.adapter.name().to_owned(), p))
                .collect(),
            breakers,
            limiter,
            budget,
            max_rate_wait,
            call_slots: None,
        }
    }

    /// The same router with `spec` added (the chat service's development provider), sharing
    /// the breakers, rate limits, budget and call slots.
    pub fn with_provider(mut self, spec: ProviderSpec) -> Self {
        self.providers.insert(spec.adapter.name().to_owned(), spec);
        self
    }

    /// The same router making at most `max` provider calls at once.
    pub fn with_max_concurrent_calls(mut self, max: usize) -> Self {
        self.call_slots = Some(Arc::new(tokio::sync::Semaphore::new(max)));
        self
    }

    /// Configured providers, by priority then name.
    pub fn providers(&self) -> Vec<&ProviderSpec> {
        let mut all: Vec<_> = self.providers.values().collect();
        all.sort_by(|a, b| (a.priority, a.adapter.name()).cmp(&(b.priority, b.adapter.name())));
        all
    }

    /// The breakers, for the admin API.
    pub fn breakers(&self) -> &Arc<dyn Breakers> {
        &self.breakers
    }

    /// The default chain for `capability`: every provider that has it, by priority.
    pub fn chain_for(&self, capability: Capability) -> Vec<String> {
        self.providers()
            .into_iter()
            .filter(|p| p.adapter.capabilities().contains(&capability))
            .map(|p| p.adapter.name().to_owned())
            .collect()
    }

    /// Whether a provider called `name` is configured.
    pub fn has(&self, name: &str) -> bool {
        self.providers.contains_key(name)
    }

    /// Generates text on the first provider of `chain` that answers.
    pub async fn chat<'a>(
        &'a self,
        chain: &[String],
        request: &'a ChatRequest,
        sink: &'a dyn StreamSink,
        ctx: &mut CallContext,
    ) -> Result<Routed<ChatResponse>, ProviderError> {
        let prompt_chars: usize = request.system.as_deref().map_or(0, str::len)
            + request
                .messages
                .iter()
                .map(|m| m.content.len())
                .sum::<usize>();
        let estimate = Usage {
            input_tokens: (prompt_chars as u64).div_ceil(4),
            output_tokens: u64::from(request.max_tokens),
        };
        let mut streamed_from: Option<String> = None;
        let halt = || sink.holds_fallback();
        self.route(chain, Capability::Chat, estimate, ctx, &halt, |spec| {
            if let Some(previous) = streamed_from.take() {
                sink.restart(&previous);
            }
            if request.stream {
                streamed_from = Some(spec.adapter.name().to_owned());
            }
            let adapter = spec.adapter.clone();
            Box::pin(async move {
                let r = adapter.chat(request, sink).await?;
                let (model, usage) = (r.model.clone(), r.usage);
                Ok((r, model, usage))
            })
        })
        .await
    }

    /// Generates images on the first provider of `chain` that answers.
    pub async fn generate_image<'a>(
        &'a self,
        chain: &[String],
        request: &'a ImageRequest,
        ctx: &mut CallContext,
    ) -> Result<Routed<ImageResponse>, ProviderError> {
        self.route(
            chain,
            Capability::ImageGeneration,
            Usage::default(),
            ctx,
            &|| false,
            |spec| {
                let adapter = spec.adapter.clone();
                Box::pin(async move {
                    let r = adapter.generate_image(request).await?;
                    let model = r.model.clone();
                    Ok((r, model, Usage::default()))
                })
            },
        )
        .await
    }

    /// Searches photos on the first provider of `chain` that answers.
    pub async fn search_images<'a>(
        &'a self,
        chain: &[String],
        request: &'a ImageSearchRequest,
        ctx: &mut CallContext,
    ) -> Result<Routed<ImageResponse>, ProviderError> {
        self.route(
            chain,
            Capability::ImageSearch,
            Usage::default(),
            ctx,
            &|| false,
            |spec| {
                let adapter = spec.adapter.clone();
                Box::pin(async move {
                    let r = adapter.search_images(request).await?;
                    let model = r.model.clone();
                    Ok((r, model, Usage::default()))
                })
            },
        )
        .await
    }

    async fn route<'a, T>(
        &'a self,
        chain: &[String],
        capability: Capability,
        estimate: Usage,
        ctx: &mut CallContext,
        halt: &(dyn Fn() -> bool + Sync),
        mut call: impl FnMut(&'a ProviderSpec) -> CallFuture<'a, T>,
    ) -> Result<Routed<T>, ProviderError> {
        let mut last: Option<ProviderError> = None;
        let mut soonest_retry: Option<Duration> = None;
        let mut tries = 0;
        for name in chain {
            let Some(spec) = self.providers.get(name) else {
                continue;
            };
            if !spec.adapter.capabilities().contains(&capability) {
                continue;
            }
            tries += 1;
            // From here to the end of the iteration: the guards' waits and the call.
            let span = traces::provider_attempt_span(name, tries, &spec.model);
            // Waited for before anything is taken (breaker trial, rate, budget), so a call
            // dropped while it waits has spent nothing. The semaphore is never closed.
            let _call_slot = match &self.call_slots {
                Some(slots) => slots.clone().acquire_owned().await.ok(),
                None => None,
            };
            let started = Instant::now();
            let permit = match self.breakers.acquire(name).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, provider = %name, "breaker unavailable; calling anyway");
                    Permit::Allowed
                }
            };
            if permit == Permit::Disabled {
                traces::provider_outcome(&span, AttemptOutcome::SkippedDisabled.as_str(), None);
                ctx.record(ctx.attempt(
                    name,
                    &spec.model,
                    Usage::default(),
                    Micros(0),
                    AttemptOutcome::SkippedDisabled,
                    Some("disabled by an operator".to_owned()),
                    started,
                ));
                last = Some(ProviderError {
                    provider: name.clone(),
                    class: ErrorClass::Retryable,
                    message: format!("{name}: disabled by an operator"),
                    retry_after: None,
                });
                continue;
            }
            if let Permit::Rejected { retry_in } = permit {
                traces::provider_outcome(&span, AttemptOutcome::SkippedBreaker.as_str(), None);
                ctx.record(ctx.attempt(
                    name,
                    &spec.model,
                    Usage::default(),
                    Micros(0),
                    AttemptOutcome::SkippedBreaker,
                    Some(format!(
                        "circuit breaker open for {}s more",
                        retry_in.as_secs()
                    )),
                    started,
                ));
                soonest_retry = Some(soonest_retry.map_or(retry_in, |s| s.min(retry_in)));
                last = Some(ProviderError {
                    provider: name.clone(),
                    class: ErrorClass::Retryable,
                    message: format!("{name}: circuit breaker open"),
                    retry_after: Some(retry_in),
                });
                continue;
            }
            if let Err(wait) = self.take_rate(spec, estimate).await {
                self.release_trial(name, permit).await;
                traces::provider_outcome(&span, AttemptOutcome::SkippedRateLimit.as_str(), None);
                ctx.record(ctx.attempt(
                    name,
                    &spec.model,
                    Usage::default(),
                    Micros(0),
                    AttemptOutcome::SkippedRateLimit,
                    Some(format!(
                        "rate limit reached; next slot in {} ms",
                        wait.as_millis()
                    )),
                    started,
                ));
                soonest_retry = Some(soonest_retry.map_or(wait, |s| s.min(wait)));
                last = Some(ProviderError {
                    provider: name.clone(),
                    class: ErrorClass::RateLimited,
                    message: format!("{name}: rate limit reached"),
                    retry_after: Some(wait),
                });
                continue;
            }
            let hold = match self
                .budget
                .reserve(&ctx.user_id, spec.price.estimate(estimate))
                .await
            {
                Ok(hold) => hold,
                Err(e) => {
                    self.release_trial(name, permit).await;
                    traces::provider_outcome(&span, "over_budget", None);
                    return Err(e);
                }
            };
            let in_flight = InFlight {
                ctx,
                provider: name,
                model: &spec.model,
                hold,
                started,
                answered: false,
                span: &span,
            };
            let outcome = call(spec).instrument(span.clone()).await;
            let hold = in_flight.answered();
            let failed_health = matches!(
                &outcome,
                Err(e) if e.class != ErrorClass::NonRetryable
            );
            if let Err(e) = self.breakers.record(name, permit, !failed_health).await {
                tracing::warn!(error = %e, provider = %name, "could not record breaker outcome");
            }
            match outcome {
                Ok((value, model, usage)) => {
                    let cost = spec.price.cost(usage);
                    let tokens = (usage.input_tokens, usage.output_tokens);
                    traces::provider_outcome(&span, AttemptOutcome::Ok.as_str(), Some(tokens));
                    self.settle(hold, cost).await;
                    ctx.record(ctx.attempt(
                        name,
                        &model,
                        usage,
                        cost,
                        AttemptOutcome::Ok,
                        None,
                        started,
                    ));
                    return Ok(Routed {
                        value,
                        provider: name.clone(),
                        model,
                    });
                }
                Err(e) => {
                    self.settle(hold, Micros(0)).await;
                    let outcome = match e.class {
                        ErrorClass::Retryable => AttemptOutcome::Retryable,
                        ErrorClass::RateLimited => AttemptOutcome::RateLimited,
                        ErrorClass::NonRetryable => AttemptOutcome::NonRetryable,
                    };
                    traces::provider_outcome(&span, outcome.as_str(), None);
                    ctx.record(ctx.attempt(
                        name,
                        &spec.model,
                        Usage::default(),
                        Micros(0),
                        outcome,
                        Some(e.message.clone()),
                        started,
                    ));
                    if e.class == ErrorClass::NonRetryable || halt() {
                        return Err(e);
                    }
                    if let Some(after) = e.retry_after {
                        soonest_retry = Some(soonest_retry.map_or(after, |s| s.min(after)));
                    }
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(mut e) => {
                if chain.len() > 1 {
                    e.message = format!("every provider failed; last: {}", e.message);
                }
                e.retry_after = soonest_retry.or(e.retry_after);
                e
            }
            None => ProviderError {
                provider: "none".into(),
                class: ErrorClass::NonRetryable,
                message: format!(
                    "no configured provider can do {}; set {}",
                    capability.describe(),
                    capability.enabling_vars().join(" or ")
                ),
                retry_after: None,
            },
        })
    }

    /// Takes one request (and the estimated tokens) from `spec`'s limits, waiting up to
    /// `max_rate_wait`; returns the wait that would be needed when that is too long.
    async fn take_rate(&self, spec: &ProviderSpec, estimate: Usage) -> Result<(), Duration> {
        let name = spec.adapter.name();
        let deadline = Instant::now() + self.max_rate_wait;
        let limits = [
            (spec.request_rate, format!("provider:{name}:requests"), 1),
            (
                spec.token_rate,
                format!("provider:{name}:tokens"),
                estimate.total().clamp(1, u64::from(u32::MAX)) as u32,
            ),
        ];
        for (rate, key, cost) in limits {
            let Some(rate) = rate else { continue };
            // A request larger than the whole burst could never pass; let it count as a full
            // burst instead of blocking the provider for ever.
            let cost = cost.min(rate.burst.max(1));
            loop {
                match self.limiter.check(&key, rate, cost).await {
                    Ok(Decision::Allowed) => break,
                    Ok(Decision::Limited { retry_after }) => {
                        let now = Instant::now();
                        if now + retry_after > deadline {
                            return Err(retry_after);
                        }
                        tokio::time::sleep(retry_after).await;
                        metrics::rate_limit_waited(name, retry_after);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, provider = %name, "rate limiter unavailable; calling anyway");
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// A half-open trial slot that is not used for a call must not stay taken.
    async fn release_trial(&self, name: &str, permit: Permit) {
        if permit == Permit::Trial {
            let _ = self.breakers.record(name, permit, true).await;
        }
    }

    async fn settle(&self, hold: Option<BudgetHold>, cost: Micros) {
        if let Some(hold) = hold
            && let Err(e) = self.budget.settle(hold, cost).await
        {
            tracing::warn!(error = %e, "could not settle a budget reservation");
        }
    }
}
