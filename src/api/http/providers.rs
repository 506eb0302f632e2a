//! Providers, usage, budgets and attempts over HTTP.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::auth::Authenticated;
use crate::api::error::ApiError;
use crate::api::grpc::admin::window;
use crate::domain::{Micros, ProviderAttempt, TaskId};
use crate::service::{BudgetReport, ServiceError};
use crate::store::UsageSummary;

fn usd(m: Micros) -> Value {
    json!(m.usd())
}

/// `GET /api/v1/admin/providers` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProvidersQuery {
    /// The window the call counts and latencies cover, in seconds (0: 3600).
    #[serde(default)]
    #[param(minimum = 0, maximum = 604800)]
    window_seconds: i64,
}

/// `GET /api/v1/admin/providers`: breakers, limits, recent success rate and latency.
#[utoipa::path(get, path = "/api/v1/admin/providers", tag = "admin", params(ProvidersQuery),
    responses((status = 200, description = "`{\"providers\", \"cache\", \"window_seconds\"}`", body = Object)))]
pub async fn providers(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<ProvidersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let report = state
        .providers
        .providers(&caller, window(q.window_seconds)?)
        .await?;
    let providers: Vec<Value> = report
        .providers
        .iter()
        .map(|p| {
            let rate = if p.stats.calls > 0 {
                json!(p.stats.successes as f64 / p.stats.calls as f64)
            } else {
                Value::Null
            };
            json!({
                "name": p.name,
                "priority": p.priority,
                "model": p.model,
                "capabilities": p.capabilities,
                "rate_limit": p.rate_limit,
                "breaker": p.breaker.map(|b| json!({
                    "state": b.state.as_str(),
                    "failures": b.failures,
                    "successes": b.successes,
                })),
                "disabled": p.breaker.is_some_and(|b| b.disabled),
                "calls": p.stats.calls,
                "successes": p.stats.successes,
                "skipped": p.stats.skipped,
                "success_rate": rate,
                "average_latency_ms": p.stats.avg_latency_ms,
                "max_latency_ms": p.stats.max_latency_ms,
            })
        })
        .collect();
    Ok(Json(json!({
        "providers": providers,
        "cache": report.cache,
        "window_seconds": report.window_seconds,
    })))
}

/// `POST /api/v1/admin/providers/{name}/reset`: closes the provider's circuit breaker.
#[utoipa::path(post, path = "/api/v1/admin/providers/{name}/reset", tag = "admin", params(("name" = String, Path, description = "A configured provider")),
    responses((status = 200, description = "`{\"provider\", \"breaker\": \"closed\"}`", body = Object)))]
pub async fn reset_breaker(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.providers.reset_breaker(&caller, &name).await?;
    Ok(Json(json!({ "provider": name, "breaker": "closed" })))
}

/// `POST /api/v1/admin/providers/{name}/disable`: takes the provider out of every fallback
/// chain, on every instance, until enabled again.
#[utoipa::path(post, path = "/api/v1/admin/providers/{name}/disable", tag = "admin", params(("name" = String, Path, description = "A configured provider")),
    responses((status = 200, description = "`{\"provider\", \"disabled\": true}`", body = Object)))]
pub async fn disable(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .providers
        .set_provider_disabled(&caller, &name, true)
        .await?;
    Ok(Json(json!({ "provider": name, "disabled": true })))
}

/// `POST /api/v1/admin/providers/{name}/enable`: puts a disabled provider back.
#[utoipa::path(post, path = "/api/v1/admin/providers/{name}/enable", tag = "admin", params(("name" = String, Path, description = "A configured provider")),
    responses((status = 200, description = "`{\"provider\", \"disabled\": false}`", body = Object)))]
pub async fn enable(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .providers
        .set_provider_disabled(&caller, &name, false)
        .await?;
    Ok(Json(json!({ "provider": name, "disabled": false })))
}

/// `GET /api/v1/usage` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `YYYY-MM`; every month when absent.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    month: Option<String>,
    /// Admins: this user's usage.
    #[param(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    user_id: Option<String>,
    /// Admins: everyone's usage.
    #[serde(default)]
    all: bool,
}

fn usage_body(rows: &[UsageSummary]) -> Value {
    let total: i64 = rows.iter().map(|r| r.cost.0).sum();
    json!({
        "usage": rows.iter().map(|r| json!({
            "user_id": r.user_id,
            "month": r.month,
            "provider": r.provider,
            "type": r.task_type,
            "calls": r.calls,
            "successes": r.successes,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cost_usd": usd(r.cost),
            "cost_micros": r.cost.0,
        })).collect::<Vec<_>>(),
        "total_cost_usd": usd(Micros(total)),
        "total_cost_micros": total,
    })
}

/// `GET /api/v1/usage?month=YYYY-MM[&user_id=..|&all=true]`: the caller's usage by month,
/// provider and type; admins may ask for any user's or everyone's.
#[utoipa::path(get, path = "/api/v1/usage", tag = "providers", params(UsageQuery),
    responses((status = 200, description = "`{\"usage\": [...], \"total_cost_usd\", \"total_cost_micros\"}`", body = Object)))]
pub async fn usage(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let rows = state
        .providers
        .usage(&caller, q.user_id.as_deref(), q.all, q.month.as_deref())
        .await?;
    Ok(Json(usage_body(&rows)))
}

fn budget_body(b: &BudgetReport) -> Value {
    json!({
        "user_id": b.user_id,
        "month": b.month,
        "budget_usd": b.budget.map(usd),
        "spent_usd": usd(b.spend.spent),
        "reserved_usd": usd(b.spend.reserved),
        "remaining_usd": b.budget.map(|x| usd(Micros(x.0 - b.spend.spent.0 - b.spend.reserved.0))),
    })
}

/// `GET /api/v1/budget` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BudgetQuery {
    /// Admins: this user's budget.
    #[param(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    user_id: Option<String>,
}

/// `GET /api/v1/budget[?user_id=..]`: this month's budget and spend.
#[utoipa::path(get, path = "/api/v1/budget", tag = "providers", params(BudgetQuery),
    responses((status = 200, description = "This month's budget, spent, reserved and remaining", body = Object)))]
pub async fn budget(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<BudgetQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let report = state
        .providers
        .budget(&caller, q.user_id.as_deref())
        .await?;
    Ok(Json(budget_body(&report)))
}

/// `PUT /api/v1/admin/budgets/{user_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// Dollars per month, e.g. `"12.50"` (a JSON number such as `12.5` is accepted too); null
    /// removes the user's own budget.
    #[schema(schema_with = amount_schema)]
    monthly_usd: Value,
}

/// The largest monthly budget, a trillion dollars: past it an amount is a typo.
const MAX_BUDGET_MICROS: i64 = 1_000_000_000_000 * 1_000_000;

/// `monthly_usd` in the document: a decimal string (at most 6 decimals), a number, or null.
fn amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                r"^\s*\$?([0-9]{1,12}(\.[0-9]{0,6})?|\.[0-9]{1,6})\s*$",
            )))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0))
                    .maximum(Some(1e12)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// `PUT /api/v1/admin/budgets/{user_id}`: sets a user's own monthly budget.
#[utoipa::path(put, path = "/api/v1/admin/budgets/{user_id}", tag = "admin",
    params(("user_id" = String, Path, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The user")), request_body = SetBudget,
    responses((status = 200, description = "The user's budget now", body = Object)))]
pub async fn set_budget(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(user): Path<String>,
    body: Result<Json<SetBudget>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|r| ServiceError::Invalid(r.body_text()))?;
    let amount = match &body.monthly_usd {
        Value::Null => None,
        Value::String(s) => Some(Micros::parse_usd(s)?),
        // Six decimals, the precision of a micro-dollar: `1e-7` or `12.5` parse as written.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Some(Micros::parse_usd(&format!("{f:.6}"))?),
            _ => {
                return Err(ServiceError::Invalid(format!(
                    "monthly_usd {n} is not an amount such as 12.50"
                ))
                .into());
            }
        },
        _ => {
            return Err(ServiceError::Invalid(
                "monthly_usd must be an amount such as \"12.50\", or null".into(),
            )
            .into());
        }
    };
    if amount.is_some_and(|m| m.0 > MAX_BUDGET_MICROS) {
        return Err(
            ServiceError::Invalid("monthly_usd must be at most 1000000000000".into()).into(),
        );
    }
    let report = state.providers.set_budget(&caller, &user, amount).await?;
    Ok(Json(budget_body(&report)))
}

/// One provider attempt as JSON.
pub fn attempt_body(a: &ProviderAttempt) -> Value {
    json!({
        "provider": a.provider,
        "model": a.model,
        "outcome": a.outcome.as_str(),
        "error": a.error,
        "latency_ms": a.latency_ms,
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cost_usd": usd(a.cost),
        "at": a.at,
    })
}

/// `GET /api/v1/tasks/{task_id}/attempts`: every provider tried for the task, in order.
#[utoipa::path(get, path = "/api/v1/tasks/{task_id}/attempts", tag = "providers",
    params(("task_id" = uuid::Uuid, Path, description = "A task id (UUID)")),
    responses((status = 200, description = "`{\"task_id\", \"attempts\": [...]}`, in order", body = Object)))]
pub async fn attempts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = TaskId::parse(&task_id)?;
    let attempts = state.providers.attempts(&caller, id).await?;
    Ok(Json(json!({
        "task_id": id,
        "attempts": attempts.iter().map(attempt_body).collect::<Vec<_>>(),
    })))
}
