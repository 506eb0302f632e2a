//! The AI side as users and operators see it: provider health and breakers, usage and cost,
//! budgets, and each task's provider attempts.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::admin::require_admin;
use super::audit::AuditLog;
use super::{ServiceError, TaskService};
use crate::auth::Caller;
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::{Micros, ProviderAttempt, TaskId, UserId, month_of, parse_month};
use crate::execution::{CacheStats, TaskRunner};
use crate::providers::BreakerSnapshot;
use crate::store::{ProviderStats, Spend, UsageStore, UsageSummary};

/// Longest window the provider stats may cover, as for the queue statistics.
const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One provider's health, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    /// e.g. `openai`.
    pub name: String,
    /// Lower goes first.
    pub priority: u32,
    /// Its default model.
    pub model: String,
    /// What it can do.
    pub capabilities: Vec<crate::providers::Capability>,
    /// Its circuit breaker, shared by all instances in clustered mode.
    pub breaker: Option<BreakerSnapshot>,
    /// Its configured request rate, e.g. `60/1m`.
    pub rate_limit: Option<String>,
    /// Calls over the stats window (all instances: from the usage table).
    pub stats: ProviderStats,
}

/// Provider health plus cache counters.
#[derive(Debug, Clone, Serialize)]
pub struct ProvidersReport {
    /// Every configured provider, by priority.
    pub providers: Vec<ProviderHealth>,
    /// Response cache hits and misses on this instance since start.
    pub cache: CacheStats,
    /// The window of `stats`.
    pub window_seconds: u64,
}

/// A user's money this month.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    /// Whose.
    pub user_id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Their monthly budget; `None` means unlimited.
    pub budget: Option<Micros>,
    /// Settled and reserved money.
    pub spend: Spend,
}

/// Usage, budgets and providers.
#[derive(Clone)]
pub struct ProvidersService {
    runner: TaskRunner,
    usage: Arc<dyn UsageStore>,
    tasks: TaskService,
    default_budget: Option<Micros>,
    /// Where breaker resets and budget changes are recorded.
    audit: AuditLog,
}

impl ProvidersService {
    /// The service over `runner`'s router and `usage`; `tasks` checks task access; admin
    /// changes recorded in `audit`.
    pub fn new(
        runner: TaskRunner,
        usage: Arc<dyn UsageStore>,
        tasks: TaskService,
        default_budget: Option<Micros>,
        audit: AuditLog,
    ) -> Self {
        Self {
            runner,
            usage,
            tasks,
            default_budget,
            audit,
        }
    }

    /// Every provider's breaker, limits and recent stats (admin only), over at most
    /// [`MAX_WINDOW`].
    pub async fn providers(
        &self,
        caller: &Caller,
        window: Duration,
    ) -> Result<ProvidersReport, ServiceError> {
        require_admin(caller)?;
        // Bounded: a window of millennia reached before PostgreSQL's first timestamp (a 503, found
        // by schemathesis), and one of millions of years would overflow the subtraction (a panic).
        if window > MAX_WINDOW {
            return Err(ServiceError::Invalid(format!(
                "window_seconds must be at most {}",
                MAX_WINDOW.as_secs()
            )));
        }
        let since = clock::now() - chrono::Duration::from_std(window).unwrap_or_default();
        let stats = self.usage.provider_stats(since).await?;
        let router = self.runner.router();
        let mut providers = Vec::new();
        for spec in router.providers() {
            let name = spec.adapter.name().to_owned();
            let breaker = match router.breakers().snapshot(&name).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "breaker state unavailable");
                    None
                }
            };
            let stats = stats
                .iter()
                .find(|s| s.provider == name)
                .cloned()
                .unwrap_or(ProviderStats {
                    provider: name.clone(),
                    calls: 0,
                    successes: 0,
                    skipped: 0,
                    avg_latency_ms: 0.0,
                    max_latency_ms: 0,
                });
            providers.push(ProviderHealth {
                priority: spec.priority,
                model: spec.model.clone(),
                capabilities: spec.adapter.capabilities().to_vec(),
                breaker,
                rate_limit: spec.request_rate.map(|r| r.to_string()),
                stats,
                name,
            });
        }
        Ok(ProvidersReport {
            providers,
            cache: self.runner.cache_stats(),
            window_seconds: window.as_secs(),
        })
    }

    /// Closes a provider's breaker (admin only).
    pub async fn reset_breaker(&self, caller: &Caller, provider: &str) -> Result<(), ServiceError> {
        require_admin(caller)?;
        let outcome = self.reset_breaker_now(caller, provider).await;
        let action = AuditAction::ResetBreaker;
        self.audit
            .record(caller, action, provider, outcome, |()| Value::Null)
            .await
    }

    async fn reset_breaker_now(&self, caller: &Caller, provider: &str) -> Result<(), ServiceError> {
        let router = self.runner.router();
        if !router.has(provider) {
            return Err(ServiceError::Missing(format!(
                "no provider named {provider:?} is configured"
            )));
        }
        router
            .breakers()
            .reset(provider)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        tracing::info!(provider, by = %caller.user_id, "circuit breaker reset");
        Ok(())
    }

    /// Takes a provider out of every fallback chain on every instance (`disabled`), or puts it
    /// back (admin only). Its breaker is left as it is.
    pub async fn set_provider_disabled(
        &self,
        caller: &Caller,
        provider: &str,
        disabled: bool,
    ) -> Result<(), ServiceError> {
        require_admin(caller)?;
        let router = self.runner.router();
        let outcome = if router.has(provider) {
            router
                .breakers()
                .set_disabled(provider, disabled)
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))
        } else {
            Err(ServiceError::Missing(format!(
                "no provider named {provider:?} is configured"
            )))
        };
        if outcome.is_ok() {
            tracing::info!(provider, disabled, by = %caller.user_id, "provider switched");
        }
        let action = if disabled {
            AuditAction::DisableProvider
        } else {
            AuditAction::EnableProvider
        };
        self.audit
            .record(caller, action, provider, outcome, |()| Value::Null)
            .await
    }

    /// Usage by month, provider and type: the caller's own, or for an admin any user's
    /// (`user`) or everyone's (`user` = None).
    pub async fn usage(
        &self,
        caller: &Caller,
        user: Option<&str>,
        all_users: bool,
        month: Option<&str>,
    ) -> Result<Vec<UsageSummary>, ServiceError> {
        let month = month.map(parse_month).transpose()?;
        let who = self.subject(caller, user, all_users)?;
        Ok(self
            .usage
            .usage_summary(who.as_ref(), month.as_deref())
            .await?)
    }

    /// A user's budget and spend this month: the caller's own, or for an admin any user's.
    pub async fn budget(
        &self,
        caller: &Caller,
        user: Option<&str>,
    ) -> Result<BudgetReport, ServiceError> {
        let who = self
            .subject(caller, user, false)?
            .unwrap_or_else(|| caller.user_id.clone());
        let month = month_of(clock::now());
        let own = self.usage.budget(&who).await?;
        Ok(BudgetReport {
            spend: self.usage.spend(&who, &month).await?,
            budget: own.or(self.default_budget),
            user_id: who.as_str().to_owned(),
            month,
        })
    }

    /// Sets or removes a user's own monthly budget (admin only).
    pub async fn set_budget(
        &self,
        caller: &Caller,
        user: &str,
        budget: Option<Micros>,
    ) -> Result<BudgetReport, ServiceError> {
        require_admin(caller)?;
        let outcome = async {
            let who = UserId::parse(user)?;
            if budget.is_some_and(|b| b.0 < 0) {
                return Err(ServiceError::Invalid("a budget cannot be negative".into()));
            }
            self.usage.set_budget(&who, budget).await?;
            self.budget(caller, Some(user)).await
        }
        .await;
        let detail = |_: &BudgetReport| json!({ "budget_micros": budget.map(|b| b.0) });
        self.audit
            .record(caller, AuditAction::SetBudget, user, outcome, detail)
            .await
    }

    /// A task's provider attempts, oldest first (its owner or an admin).
    pub async fn attempts(
        &self,
        caller: &Caller,
        task: TaskId,
    ) -> Result<Vec<ProviderAttempt>, ServiceError> {
        self.tasks.get(caller, task).await?;
        Ok(self.usage.attempts_for_task(task).await?)
    }

    /// Whose usage a request is about; `None` means every user (admins only).
    fn subject(
        &self,
        caller: &Caller,
        user: Option<&str>,
        all_users: bool,
    ) -> Result<Option<UserId>, ServiceError> {
        match (user, all_users) {
            (Some(_), true) => Err(ServiceError::Invalid(
                "give either user_id or all, not both".into(),
            )),
            (None, false) => Ok(Some(caller.user_id.clone())),
            (Some(u), false) if u == caller.user_id.as_str() => Ok(Some(caller.user_id.clone())),
            (Some(u), false) => {
                require_admin(caller)?;
                Ok(Some(UserId::parse(u)?))
            }
            (None, true) => {
                require_admin(caller)?;
                Ok(None)
            }
        }
    }
}
