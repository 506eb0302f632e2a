//! Authentication at the edge: bearer JWTs on HTTP requests and gRPC metadata.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Caller, JwtKeys};

/// The authenticated caller of an HTTP request.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Verified already by the per-user rate limit, when it is on.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Self(caller.clone()));
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Self(state.keys.verify_header(header)?))
    }
}

/// The authenticated caller of a gRPC request.
pub fn grpc_caller<T>(
    keys: &JwtKeys,
    request: &tonic::Request<T>,
) -> Result<Caller, tonic::Status> {
    // Verified already by the per-user rate limit, when it is on.
    if let Some(caller) = request.extensions().get::<Caller>() {
        return Ok(caller.clone());
    }
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    keys.verify_header(header)
        .map_err(|e| ApiError::from(e).into())
}
