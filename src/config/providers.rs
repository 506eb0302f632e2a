//! Settings of the AI providers, the router and its guards, from the environment.

use std::collections::HashMap;
use std::time::Duration;

use super::{Reader, Secret};
use crate::domain::{Micros, TaskType};
use crate::providers::{BreakerPolicy, Price};
use crate::ratelimit::Rate;

/// One provider's environment variables and defaults (seed 001's endpoints, priorities and
/// rate limits).
pub struct ProviderVars {
    /// Our name for it.
    pub name: &'static str,
    /// Variables holding its API key, first set wins.
    pub key: &'static [&'static str],
    base_url: &'static str,
    model: &'static str,
    priority: &'static str,
    rate: &'static str,
    token_rate: &'static str,
    price: &'static str,
    default_base_url: &'static str,
    default_model: &'static str,
    default_priority: u32,
    default_rate: Option<&'static str>,
    default_price: &'static str,
}

/// Every provider the service knows, in seed 001's order.
pub const PROVIDERS: &[ProviderVars] = &[
    ProviderVars {
        name: "gemini",
        key: &["GEMINI_API_KEY"],
        base_url: "GEMINI_BASE_URL",
        model: "GEMINI_MODEL",
        priority: "GEMINI_PRIORITY",
        rate: "GEMINI_RATE_LIMIT",
        token_rate: "GEMINI_TOKEN_RATE_LIMIT",
        price: "GEMINI_PRICE",
        default_base_url: "https://generativelanguage.googleapis.com",
        default_model: "gemini-2.0-flash",
        default_priority: 1,
        default_rate: Some("60/min"),
        default_price: "input=0.10,output=0.40",
    },
    ProviderVars {
        name: "openai",
        key: &["OPENAI_API_KEY"],
        base_url: "OPENAI_BASE_URL",
        model: "OPENAI_MODEL",
        priority: "OPENAI_PRIORITY",
        rate: "OPENAI_RATE_LIMIT",
        token_rate: "OPENAI_TOKEN_RATE_LIMIT",
        price: "OPENAI_PRICE",
        default_base_url: "https://api.openai.com",
        default_model: "gpt-4o-mini",
        default_priority: 2,
        default_rate: Some("3500/min"),
        default_price: "input=0.15,output=0.60",
    },
    ProviderVars {
        name: "claude",
        key: &["CLAUDE_API_KEY", "ANTHROPIC_API_KEY"],
        base_url: "ANTHROPIC_BASE_URL",
        model: "CLAUDE_MODEL",
        priority: "CLAUDE_PRIORITY",
        rate: "CLAUDE_RATE_LIMIT",
        token_rate: "CLAUDE_TOKEN_RATE_LIMIT",
        price: "CLAUDE_PRICE",
        default_base_url: "https://api.anthropic.com",
        default_model: "claude-3-5-haiku-latest",
        default_priority: 3,
        default_rate: Some("1000/min"),
        default_price: "input=0.80,output=4.00",
    },
    ProviderVars {
        name: "groq",
        key: &["GROQ_API_KEY"],
        base_url: "GROQ_BASE_URL",
        model: "GROQ_MODEL",
        priority: "GROQ_PRIORITY",
        rate: "GROQ_RATE_LIMIT",
        token_rate: "GROQ_TOKEN_RATE_LIMIT",
        price: "GROQ_PRICE",
        default_base_url: "https://api.groq.com/openai",
        default_model: "llama-3.1-8b-instant",
        default_priority: 4,
        default_rate: Some("30/min"),
        default_price: "input=0.05,output=0.08",
    },
    ProviderVars {
        name: "compat",
        key: &["OPENAI_COMPAT_API_KEY"],
        base_url: "OPENAI_COMPAT_BASE_URL",
        model: "OPENAI_COMPAT_MODEL",
        priority: "OPENAI_COMPAT_PRIORITY",
        rate: "OPENAI_COMPAT_RATE_LIMIT",
        token_rate: "OPENAI_COMPAT_TOKEN_RATE_LIMIT",
        price: "OPENAI_COMPAT_PRICE",
        default_base_url: "",
        default_model: "llama3.2",
        default_priority: 5,
        default_rate: None,
        default_price: "",
    },
    ProviderVars {
        name: "unsplash",
        key: &["UNSPLASH_API_KEY"],
        base_url: "UNSPLASH_BASE_URL",
        model: "UNSPLASH_MODEL",
        priority: "UNSPLASH_PRIORITY",
        rate: "UNSPLASH_RATE_LIMIT",
        token_rate: "UNSPLASH_TOKEN_RATE_LIMIT",
        price: "UNSPLASH_PRICE",
        default_base_url: "https://api.unsplash.com",
        default_model: "unsplash",
        default_priority: 1,
        default_rate: Some("50/hour"),
        default_price: "",
    },
];

/// A provider that is configured (has its key, or for `compat` its base URL).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Our name for it.
    pub name: &'static str,
    /// Its API key (empty for a keyless OpenAI-compatible server).
    pub api_key: Secret,
    /// Where it is, without a trailing slash.
    pub base_url: String,
    /// Its default model.
    pub model: String,
    /// Lower goes first.
    pub priority: u32,
    /// Requests allowed across all instances.
    pub rate: Option<Rate>,
    /// Tokens allowed across all instances.
    pub token_rate: Option<Rate>,
    /// What calls cost.
    pub price: Price,
}

/// Settings of the router and its guards.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// Configured providers.
    pub providers: Vec<ProviderSettings>,
    /// Providers without settings, with the variable that would enable each.
    pub disabled: Vec<(&'static str, &'static str)>,
    /// Chains set per task type (`PROVIDER_CHAIN_<TYPE>`).
    pub chains: HashMap<TaskType, Vec<String>>,
    /// Bound on one provider call (`AI_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Most provider calls this instance makes at once (`AI_MAX_CONCURRENT_REQUESTS`, seed
    /// 003); `None` leaves it to the worker pool.
    pub max_concurrent_requests: Option<usize>,
    /// Longest wait for a provider's rate limit before moving on (`PROVIDER_RATE_WAIT`).
    pub rate_wait: Duration,
    /// Circuit breaker thresholds.
    pub breaker: BreakerPolicy,
    /// Monthly budget of users without their own (`USER_MONTHLY_BUDGET`, USD).
    pub user_monthly_budget: Option<Micros>,
    /// The whole service's monthly budget (`MONTHLY_BUDGET`, USD): exported for the cost
    /// alert, not enforced (users' budgets are).
    pub monthly_budget: Option<Micros>,
    /// How long answers stay cached (`RESPONSE_CACHE_TTL`; 0 turns the cache off).
    pub cache_ttl: Duration,
    /// Whether `summarize` falls back to extraction (`AI_FALLBACK_ENABLED`).
    pub extraction_fallback: bool,
    /// Whether `extract_content` may fetch private addresses (`EXTRACT_ALLOW_PRIVATE`).
    pub extract_allow_private: bool,
    /// Hosts a user's URL may name even when they are not public (`ALLOWED_FETCH_HOSTS`,
    /// comma-separated, lower-cased).
    pub allowed_fetch_hosts: Vec<String>,
    /// Largest page `extract_content` reads (`EXTRACT_MAX_BYTES`).
    pub extract_max_bytes: usize,
    /// Bound on one page fetch (`EXTRACT_TIMEOUT`).
    pub extract_timeout: Duration,
}

const CHAIN_VARS: &[(TaskType, &str)] = &[
    (TaskType::Summarize, "PROVIDER_CHAIN_SUMMARIZE"),
    (TaskType::ValidateSummary, "PROVIDER_CHAIN_VALIDATE_SUMMARY"),
    (
        TaskType::ItemInfoGeneration,
        "PROVIDER_CHAIN_ITEM_INFO_GENERATION",
    ),
    (
        TaskType::TestCustomization,
        "PROVIDER_CHAIN_TEST_CUSTOMIZATION",
    ),
    (TaskType::ImageGeneration, "PROVIDER_CHAIN_IMAGE_GENERATION"),
    (TaskType::Chat, "PROVIDER_CHAIN_CHAT"),
    (TaskType::Prompt, "PROVIDER_CHAIN_PROMPT"),
];

impl Reader<'_> {
    /// An amount in US dollars, if set.
    fn usd(&mut self, var: &'static str) -> Option<Micros> {
        let raw = self.raw(var)?;
        match Micros::parse_usd(raw) {
            Ok(m) => Some(m),
            Err(e) => {
                self.problem(var, e.to_string());
                None
            }
        }
    }

    pub(super) fn optional<T: std::str::FromStr<Err = String>>(
        &mut self,
        var: &'static str,
        default: Option<&str>,
    ) -> Option<T> {
        let raw = self.raw(var).or(default)?.to_owned();
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(var, e);
                None
            }
        }
    }

    pub(super) fn flag(&mut self, var: &'static str, default: bool) -> bool {
        match self.raw(var).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("1" | "true" | "yes" | "on") => true,
            Some("0" | "false" | "no" | "off") => false,
            Some(other) => {
                self.problem(var, format!("{other:?} is not true or false"));
                default
            }
        }
    }

    /// Reads the AI settings.
    pub(super) fn ai(&mut self) -> AiConfig {
        let mut providers = Vec::new();
        let mut disabled = Vec::new();
        for p in PROVIDERS {
            let key = p.key.iter().find_map(|k| self.raw(k)).map(str::to_owned);
            let base_url = self
                .raw(p.base_url)
                .unwrap_or(p.default_base_url)
                .trim_end_matches('/')
                .to_owned();
            // A keyless OpenAI-compatible server (Ollama, llama.cpp) is enabled by its URL.
            let enabled = key.is_some() && !base_url.is_empty()
                || (p.name == "compat" && !base_url.is_empty());
            if !enabled {
                disabled.push((
                    p.name,
                    if p.name == "compat" {
                        p.base_url
                    } else {
                        p.key[0]
                    },
                ));
                continue;
            }
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                self.problem(p.base_url, "must start with http:// or https://");
            }
            let priority = self.range(p.priority, p.default_priority, 0, 1000);
            let price = self
                .optional::<Price>(p.price, Some(p.default_price))
                .unwrap_or_default();
            providers.push(ProviderSettings {
                name: p.name,
                api_key: Secret::new(key.unwrap_or_default()),
                base_url,
                model: self.raw(p.model).unwrap_or(p.default_model).to_owned(),
                priority,
                rate: self.optional(p.rate, p.default_rate),
                token_rate: self.optional(p.token_rate, None),
                price,
            });
        }
        let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
        let mut chains = HashMap::new();
        for (task_type, var) in CHAIN_VARS {
            if let Some(raw) = self.raw(var) {
                let chain: Vec<String> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(unknown) = chain.iter().find(|n| !names.contains(&n.as_str())) {
                    self.problem(
                        var,
                        format!("unknown provider {unknown:?}; known: {}", names.join(", ")),
                    );
                }
                chains.insert(*task_type, chain);
            }
        }
        let breaker = BreakerPolicy {
            failure_threshold: self.range("BREAKER_FAILURE_THRESHOLD", 5u32, 1, 1000),
            success_threshold: self.range("BREAKER_SUCCESS_THRESHOLD", 2u32, 1, 1000),
            open_for: self.duration(
                "BREAKER_OPEN_DURATION",
                Duration::from_secs(60),
                Duration::from_millis(10),
            ),
            half_open_trials: 1,
        };
        let user_monthly_budget = self.usd("USER_MONTHLY_BUDGET");
        let monthly_budget = self.usd("MONTHLY_BUDGET");
        AiConfig {
            providers,
            disabled,
            chains,
            request_timeout: self.duration(
                "AI_REQUEST_TIMEOUT",
                Duration::from_secs(30),
                Duration::from_millis(10),
            ),
            max_concurrent_requests: self
                .raw("AI_MAX_CONCURRENT_REQUESTS")
                .is_some()
                .then(|| self.range("AI_MAX_CONCURRENT_REQUESTS", 10usize, 1, 100_000)),
            rate_wait: self.duration("PROVIDER_RATE_WAIT", Duration::from_secs(2), Duration::ZERO),
            breaker,
            user_monthly_budget,
            monthly_budget,
            cache_ttl: self.duration(
                "RESPONSE_CACHE_TTL",
                Duration::from_secs(3600),
                Duration::ZERO,
            ),
            extraction_fallback: self.flag("AI_FALLBACK_ENABLED", true),
            extract_allow_private: self.flag("EXTRACT_ALLOW_PRIVATE", false),
            allowed_fetch_hosts: self
                .raw("ALLOWED_FETCH_HOSTS")
                .map(|list| {
                    list.split(',')
                        .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            extract_max_bytes: self.range(
                "EXTRACT_MAX_BYTES",
                5 * 1024 * 1024usize,
                1024,
                100 * 1024 * 1024,
            ),
            extract_timeout: self.duration(
                "EXTRACT_TIMEOUT",
                Duration::from_secs(15),
                Duration::from_millis(10),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PROVIDERS;
    use crate::providers::Capability;

    /// Error messages name these variables; each must be one this module reads.
    #[test]
    fn enabling_vars_are_real_variables() {
        for c in [
            Capability::Chat,
            Capability::ImageGeneration,
            Capability::ImageSearch,
        ] {
            for var in c.enabling_vars() {
                assert!(
                    PROVIDERS
                        .iter()
                        .any(|p| p.key.contains(var) || p.base_url == *var),
                    "{var}"
                );
            }
        }
    }
}
