//! Request heads over `MAX_HEADER_BYTES`: 431 (RESOURCE_EXHAUSTED over gRPC) naming the limit.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::{is_grpc, refuse};
use crate::api::error::ApiError;

/// Counts names and values as they travel in HTTP/1 (`name: value\r\n`); hyper's read buffer
/// (`app::serve::head_buffer`) stops heads far over the limit before they get here.
pub async fn check(limit: usize, req: Request, next: Next) -> Response {
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > limit {
        return refuse(
            is_grpc(req.headers()),
            ApiError::HeadersTooLarge { bytes, limit },
        );
    }
    next.run(req).await
}
