//! Limits at the edge that no handler sees: request head size, requests per second per user,
//! and the gRPC message size's status. The body size, body read time and JSON depth are
//! checked where bodies are read (`http::json`); slow request heads are cut off by the accept
//! loop (`app::serve`). See docs/security.md.

mod grpc_size;
mod headers;
mod rate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::JwtKeys;
use crate::config::EdgeLimits;
use crate::ratelimit::RateLimiter;

pub use grpc_size::message_size_status;

/// Most levels of nesting (arrays and objects) in a JSON request body.
pub const MAX_JSON_DEPTH: usize = 64;

/// The body size limit in force for a route, for the 413's message (set beside
/// `DefaultBodyLimit`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How long a JSON body may take to arrive (`BODY_READ_TIMEOUT`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// What the edge checks need besides the request.
#[derive(Clone)]
pub struct Edge {
    /// The configured limits.
    pub limits: EdgeLimits,
    /// Verifies the bearer token of a rate-limited request.
    pub keys: JwtKeys,
    /// Counts requests per user; shared by every instance in clustered mode.
    pub limiter: Arc<dyn RateLimiter>,
}

impl Edge {
    /// Wraps `router` (HTTP and gRPC) in the head-size and per-user rate checks.
    pub fn apply(self, router: Router) -> Router {
        let timeout = BodyTimeout(self.limits.body_read_timeout);
        let max_header_bytes = self.limits.max_header_bytes;
        let mut router = router.layer(axum::Extension(timeout));
        if self.limits.user_rate.is_some() {
            router = router.layer(axum::middleware::from_fn_with_state(
                Arc::new(self),
                rate::per_user,
            ));
        }
        // Outermost: an oversized head is refused before its token is verified.
        router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                headers::check(max_header_bytes, req, next)
            },
        ))
    }
}

/// `application/grpc`, `application/grpc+proto` and the like.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `error` in the caller's protocol.
fn refuse(grpc: bool, error: ApiError) -> Response {
    if grpc {
        tonic::Status::from(error).into_http()
    } else {
        error.into_response()
    }
}
