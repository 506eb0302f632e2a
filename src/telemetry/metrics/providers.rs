//! AI providers: tries, latency, tokens, money, breakers, rate limits and budgets.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use super::bounded;

/// Provider tries, by `provider` and `outcome` (`ok`, `retryable`, `rate_limited`,
/// `non_retryable`, `skipped_breaker`, `skipped_rate_limit`, `abandoned`).
pub const PROVIDER_REQUESTS: &str = "ais_provider_requests_total";
/// Seconds of provider calls, by `provider` and `outcome`.
pub const PROVIDER_DURATION: &str = "ais_provider_request_duration_seconds";
/// Tokens, by `provider` and `direction` (`in`, `out`).
pub const PROVIDER_TOKENS: &str = "ais_provider_tokens_total";
/// Cost in micro-dollars, by `provider`.
pub const PROVIDER_COST: &str = "ais_provider_cost_microdollars_total";
/// Breaker state by `provider`: 0 closed, 1 half-open, 2 open (read from the shared breakers
/// at scrape time).
pub const BREAKER_STATE: &str = "ais_provider_breaker_state";
/// Seconds a call waited for a provider's rate limit, by `provider` (only calls that waited;
/// its `_count` is the number of waits).
pub const RATE_LIMIT_WAIT: &str = "ais_provider_rate_limit_wait_seconds";
/// Calls refused because the user's monthly budget could not hold them.
pub const BUDGET_REJECTIONS: &str = "ais_budget_rejections_total";
/// Money spent this calendar month (UTC) by every user, in micro-dollars, read from the store.
pub const COST_MONTH: &str = "ais_cost_month_microdollars";
/// The service-wide monthly budget (`MONTHLY_BUDGET`), in micro-dollars; absent when unset.
pub const COST_BUDGET_MONTH: &str = "ais_cost_budget_month_microdollars";

pub(super) fn describe() {
    describe_counter!(
        PROVIDER_REQUESTS,
        "Provider tries, by provider and outcome."
    );
    describe_histogram!(
        PROVIDER_DURATION,
        metrics::Unit::Seconds,
        "Seconds of provider calls (skipped tries included, near zero), by provider and outcome."
    );
    describe_counter!(
        PROVIDER_TOKENS,
        "Provider tokens, by provider and direction (in, out)."
    );
    describe_counter!(
        PROVIDER_COST,
        "Provider cost in micro-dollars, by provider."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by provider: 0 closed, 1 half-open, 2 open."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        metrics::Unit::Seconds,
        "Seconds a call waited for a provider's rate limit, by provider (calls that waited)."
    );
    describe_counter!(
        BUDGET_REJECTIONS,
        "Calls refused because the user's monthly budget could not hold them."
    );
    describe_gauge!(
        COST_MONTH,
        "Money spent this calendar month (UTC) by all users, in micro-dollars."
    );
    describe_gauge!(
        COST_BUDGET_MONTH,
        "The service-wide monthly budget (MONTHLY_BUDGET), in micro-dollars."
    );
}

/// One provider try: `provider` answered `outcome` after `took`, using these tokens and
/// costing `cost_micros`.
pub fn provider_try(
    provider: &str,
    outcome: &'static str,
    took: Duration,
    tokens: (u64, u64),
    cost_micros: i64,
) {
    let provider = bounded_provider(provider);
    counter!(PROVIDER_REQUESTS, "provider" => provider, "outcome" => outcome).increment(1);
    histogram!(PROVIDER_DURATION, "provider" => provider, "outcome" => outcome)
        .record(took.as_secs_f64());
    if tokens.0 > 0 {
        counter!(PROVIDER_TOKENS, "provider" => provider, "direction" => "in").increment(tokens.0);
    }
    if tokens.1 > 0 {
        counter!(PROVIDER_TOKENS, "provider" => provider, "direction" => "out").increment(tokens.1);
    }
    if cost_micros > 0 {
        counter!(PROVIDER_COST, "provider" => provider).increment(cost_micros as u64);
    }
}

/// A call to `provider` waited `waited` for its rate limit.
pub fn rate_limit_waited(provider: &str, waited: Duration) {
    histogram!(RATE_LIMIT_WAIT, "provider" => bounded_provider(provider))
        .record(waited.as_secs_f64());
}

/// A call was refused by a budget.
pub fn budget_rejected() {
    counter!(BUDGET_REJECTIONS).increment(1);
}

/// `provider`'s breaker state, as the gauge's number.
pub fn set_breaker_state(provider: &str, code: u8) {
    gauge!(BREAKER_STATE, "provider" => bounded_provider(provider)).set(f64::from(code));
}

/// This month's spend and, when configured, the service-wide budget.
pub fn set_month_cost(spent_micros: i64, budget_micros: Option<i64>) {
    gauge!(COST_MONTH).set(spent_micros as f64);
    if let Some(budget) = budget_micros {
        gauge!(COST_BUDGET_MONTH).set(budget as f64);
    }
}

/// Provider names are configured ones, plus the few local answerers; anything else (never
/// expected) is folded so a label cannot grow without bound.
pub(super) fn bounded_provider(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "openai",
        "claude",
        "gemini",
        "groq",
        "compat",
        "unsplash",
        "echo",
        "cache",
        "extraction",
        "budget",
        "none",
    ];
    bounded(KNOWN, name, "other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_fold_into_other() {
        assert_eq!(bounded_provider("groq"), "groq");
        assert_eq!(bounded_provider("sk-secret-name"), "other");
    }
}
