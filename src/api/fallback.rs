//! What a request no route takes gets: an unknown path answers our JSON 404 (gRPC clients get
//! UNIMPLEMENTED, as the gRPC protocol says), a wrong method on a known path our JSON 405.

use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The fallback of the whole router: HTTP and gRPC share the port and the paths, so the
/// content type says which protocol the caller speaks.
pub async fn no_route(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let error = ApiError::NoRoute {
        method,
        path: uri.path().to_owned(),
    };
    if is_grpc(&headers) {
        tonic::Status::from(error).into_http()
    } else {
        error.into_response()
    }
}

/// The fallback of each HTTP route for the methods it does not have (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}

/// `application/grpc`, `application/grpc+proto` and the like.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}
