//! `ai.integration.v1.ProviderService`: provider health, breakers, usage, budgets, attempts.

use tonic::{Request, Response, Status};

use super::admin::window;
use super::convert::timestamp;
use crate::api::AppState;
use crate::api::auth::grpc_caller;
use crate::api::error::ApiError;
use crate::api::proto::{self, provider_service_server::ProviderService};
use crate::domain::{Micros, TaskId};
use crate::service::BudgetReport;

/// The gRPC face of the AI service.
pub struct ProviderApi {
    state: AppState,
}

impl ProviderApi {
    /// Serves `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn budget_to_proto(b: BudgetReport) -> proto::Budget {
    proto::Budget {
        user_id: b.user_id,
        month: b.month,
        budget_micros: b.budget.map(|m| m.0),
        spent_micros: b.spend.spent.0,
        reserved_micros: b.spend.reserved.0,
    }
}

#[tonic::async_trait]
impl ProviderService for ProviderApi {
    async fn get_provider_health(
        &self,
        request: Request<proto::GetProviderHealthRequest>,
    ) -> Result<Response<proto::ProviderHealthReport>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let window = window(request.into_inner().window_seconds).map_err(ApiError::from)?;
        let report = self
            .state
            .providers
            .providers(&caller, window)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ProviderHealthReport {
            providers: report
                .providers
                .into_iter()
                .map(|p| proto::ProviderHealth {
                    capabilities: p
                        .capabilities
                        .iter()
                        .map(|c| {
                            serde_json::to_value(c)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        })
                        .collect(),
                    breaker_state: p
                        .breaker
                        .map(|b| b.state.as_str().to_owned())
                        .unwrap_or_default(),
                    breaker_failures: p.breaker.map_or(0, |b| b.failures),
                    disabled: p.breaker.is_some_and(|b| b.disabled),
                    rate_limit: p.rate_limit.unwrap_or_default(),
                    calls: p.stats.calls,
                    successes: p.stats.successes,
                    skipped: p.stats.skipped,
                    average_latency_ms: p.stats.avg_latency_ms,
                    max_latency_ms: p.stats.max_latency_ms,
                    name: p.name,
                    priority: p.priority,
                    model: p.model,
                })
                .collect(),
            cache_hits: report.cache.hits,
            cache_misses: report.cache.misses,
            window_seconds: report.window_seconds as i64,
        }))
    }

    async fn reset_circuit_breaker(
        &self,
        request: Request<proto::ResetCircuitBreakerRequest>,
    ) -> Result<Response<proto::ResetCircuitBreakerResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let provider = request.into_inner().provider;
        self.state
            .providers
            .reset_breaker(&caller, &provider)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ResetCircuitBreakerResponse {
            provider,
        }))
    }

    async fn set_provider_disabled(
        &self,
        request: Request<proto::SetProviderDisabledRequest>,
    ) -> Result<Response<proto::SetProviderDisabledResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        self.state
            .providers
            .set_provider_disabled(&caller, &r.provider, r.disabled)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::SetProviderDisabledResponse {
            provider: r.provider,
            disabled: r.disabled,
        }))
    }

    async fn get_usage(
        &self,
        request: Request<proto::GetUsageRequest>,
    ) -> Result<Response<proto::UsageReport>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let rows = self
            .state
            .providers
            .usage(
                &caller,
                non_empty(&r.user_id),
                r.all_users,
                non_empty(&r.month),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::UsageReport {
            total_cost_micros: rows.iter().map(|u| u.cost.0).sum(),
            usage: rows
                .into_iter()
                .map(|u| proto::UsageRow {
                    user_id: u.user_id,
                    month: u.month,
                    provider: u.provider,
                    r#type: u.task_type,
                    calls: u.calls,
                    successes: u.successes,
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    cost_micros: u.cost.0,
                })
                .collect(),
        }))
    }

    async fn get_budget(
        &self,
        request: Request<proto::GetBudgetRequest>,
    ) -> Result<Response<proto::Budget>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let user = request.into_inner().user_id;
        let report = self
            .state
            .providers
            .budget(&caller, non_empty(&user))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(budget_to_proto(report)))
    }

    async fn set_budget(
        &self,
        request: Request<proto::SetBudgetRequest>,
    ) -> Result<Response<proto::Budget>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let r = request.into_inner();
        let report = self
            .state
            .providers
            .set_budget(&caller, &r.user_id, r.monthly_micros.map(Micros))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(budget_to_proto(report)))
    }

    async fn list_task_attempts(
        &self,
        request: Request<proto::ListTaskAttemptsRequest>,
    ) -> Result<Response<proto::ListTaskAttemptsResponse>, Status> {
        let caller = grpc_caller(&self.state.keys, &request)?;
        let id = TaskId::parse(&request.into_inner().task_id).map_err(ApiError::from)?;
        let attempts = self
            .state
            .providers
            .attempts(&caller, id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::ListTaskAttemptsResponse {
            attempts: attempts
                .into_iter()
                .map(|a| proto::ProviderAttempt {
                    provider: a.provider,
                    model: a.model,
                    outcome: a.outcome.as_str().to_owned(),
                    error: a.error.unwrap_or_default(),
                    latency_ms: a.latency_ms,
                    input_tokens: a.input_tokens,
                    output_tokens: a.output_tokens,
                    cost_micros: a.cost.0,
                    at: Some(timestamp(a.at)),
                })
                .collect(),
        }))
    }
}
