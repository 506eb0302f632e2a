//! `USER_RATE_LIMIT`: requests per second per authenticated user, counted by the service's
//! rate limiter (Redis in clustered mode, so the limit holds across instances). Over it: 429
//! with `Retry-After`, or RESOURCE_EXHAUSTED with `retry-after` metadata.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::{Edge, is_grpc, refuse};
use crate::api::error::ApiError;
use crate::ratelimit::Decision;
use crate::service::ServiceError;

/// Requests without a valid token pass: their handler refuses them (401), and they cost no
/// more than the token check already made. A verified caller is left in the request's
/// extensions, where the handlers' authentication takes it rather than verify the token again.
pub async fn per_user(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let Some(rate) = edge.limits.user_rate else {
        return next.run(req).await;
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Ok(caller) = edge.keys.verify_header(header) else {
        return next.run(req).await;
    };
    let key = format!("user_requests:{}", caller.user_id);
    req.extensions_mut().insert(caller);
    match edge.limiter.check(&key, rate, 1).await {
        Ok(Decision::Allowed) => next.run(req).await,
        Ok(Decision::Limited { retry_after }) => {
            let error = ServiceError::Busy {
                message: format!(
                    "too many requests: at most {} per second per user, bursts of {} \
                     (USER_RATE_LIMIT); retry after the Retry-After delay",
                    rate.count, rate.burst
                ),
                retry_after,
            };
            refuse(is_grpc(req.headers()), ApiError::from(error))
        }
        Err(e) => {
            // The limiter's store is down: serving beats refusing everyone.
            tracing::warn!(error = %e, "request rate not checked");
            next.run(req).await
        }
    }
}
