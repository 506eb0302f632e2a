//! The one place where errors become HTTP and gRPC statuses.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::domain::DomainError;
use crate::domain::chat::TurnRefusal;
use crate::domain::redact::redact_owned;
use crate::service::{ChatError, ServiceError};

/// An error on its way to a client.
#[derive(Debug)]
pub enum ApiError {
    /// Not authenticated.
    Auth(AuthError),
    /// The service refused or failed.
    Service(ServiceError),
    /// The chat service refused or failed.
    Chat(ChatError),
    /// No route has this path.
    NoRoute {
        /// The request's method, for the message.
        method: Method,
        /// The path asked for.
        path: String,
    },
    /// The request's headers are over `MAX_HEADER_BYTES`.
    HeadersTooLarge {
        /// Their size as counted.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The request body did not arrive within `BODY_READ_TIMEOUT`.
    BodyTimeout(std::time::Duration),
    /// The path's route has no such method.
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The path, which has other methods.
        path: String,
    },
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        // The caller hears only "invalid token"; the reason is for operators.
        if let AuthError::Invalid(reason) = &e {
            tracing::debug!(reason = %reason, "token refused");
        }
        Self::Auth(e)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        Self::Chat(e)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::Service(e.into())
    }
}

impl ApiError {
    /// HTTP status, gRPC code and a stable snake_case code string, side by side.
    fn classify(&self) -> (StatusCode, tonic::Code, &'static str) {
        use ServiceError as S;
        match self {
            Self::Auth(_) => (
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                "unauthenticated",
            ),
            // gRPC has one code for both: no such method.
            Self::NoRoute { .. } => (
                StatusCode::NOT_FOUND,
                tonic::Code::Unimplemented,
                "not_found",
            ),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                tonic::Code::Unimplemented,
                "method_not_allowed",
            ),
            Self::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                tonic::Code::ResourceExhausted,
                "headers_too_large",
            ),
            Self::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                tonic::Code::DeadlineExceeded,
                "body_timeout",
            ),
            Self::Chat(e) => chat_class(e),
            Self::Service(e) => match e {
                S::Invalid(_) => (
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    "invalid_argument",
                ),
                S::TooLarge(_) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    tonic::Code::InvalidArgument,
                    "payload_too_large",
                ),
                S::Forbidden(_) => (
                    StatusCode::FORBIDDEN,
                    tonic::Code::PermissionDenied,
                    "permission_denied",
                ),
                S::NotFound(_) | S::Missing(_) => {
                    (StatusCode::NOT_FOUND, tonic::Code::NotFound, "not_found")
                }
                S::Conflict(_) => (
                    StatusCode::CONFLICT,
                    tonic::Code::FailedPrecondition,
                    "failed_precondition",
                ),
                S::VersionConflict { .. } => (
                    StatusCode::CONFLICT,
                    tonic::Code::Aborted,
                    "version_conflict",
                ),
                S::Busy { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    tonic::Code::ResourceExhausted,
                    "resource_exhausted",
                ),
                S::TooManyConnections(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    tonic::Code::ResourceExhausted,
                    "too_many_connections",
                ),
                S::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    tonic::Code::Unavailable,
                    "unavailable",
                ),
                S::Internal => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tonic::Code::Internal,
                    "internal",
                ),
            },
        }
    }

    /// What the client is told, PII and tokens masked: many messages quote the request
    /// (an unknown field, a bad value).
    fn message(&self) -> String {
        redact_owned(self.raw_message())
    }

    fn raw_message(&self) -> String {
        match self {
            Self::Auth(e) => e.to_string(),
            Self::Service(e) => e.to_string(),
            Self::Chat(e) => e.to_string(),
            Self::NoRoute { method, path } => format!("no route for {method} {path}"),
            Self::MethodNotAllowed { method, path } => {
                format!("method {method} is not allowed on {path}")
            }
            Self::HeadersTooLarge { bytes, limit } => format!(
                "request headers are {bytes} bytes, over the limit of {limit} bytes \
                 (MAX_HEADER_BYTES)"
            ),
            Self::BodyTimeout(d) => format!(
                "request body not received within {} (BODY_READ_TIMEOUT)",
                humantime::format_duration(*d)
            ),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Service(ServiceError::Busy { retry_after, .. }) => {
                Some(retry_after.as_secs().max(1))
            }
            Self::Service(ServiceError::TooManyConnections(_)) => Some(1),
            Self::Chat(e) => e.retry_after().map(|d| d.as_secs().max(1)),
            _ => None,
        }
    }

    /// A debug line for operators chasing a client's failure; the log output masks it.
    fn log(&self, code: &str) {
        tracing::debug!(code, reason = %self.raw_message(), "request refused");
    }

    /// The HTTP status alone, for building responses to framework rejections.
    pub fn http_status(&self) -> StatusCode {
        self.classify().0
    }
}

/// The chat errors' statuses (see [`ApiError::classify`]).
fn chat_class(e: &ChatError) -> (StatusCode, tonic::Code, &'static str) {
    use ChatError as C;
    match e {
        C::Invalid(_) => (
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            "invalid_argument",
        ),
        C::NotFound(_) => (StatusCode::NOT_FOUND, tonic::Code::NotFound, "not_found"),
        C::Refused(TurnRefusal::NotActive { .. }) => (
            StatusCode::CONFLICT,
            tonic::Code::FailedPrecondition,
            "session_not_active",
        ),
        C::Refused(TurnRefusal::MaxMessagesReached { .. }) => (
            StatusCode::CONFLICT,
            tonic::Code::FailedPrecondition,
            "max_messages_reached",
        ),
        C::TurnInProgress(_) => (
            StatusCode::CONFLICT,
            tonic::Code::Aborted,
            "turn_in_progress",
        ),
        C::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::ResourceExhausted,
            "resource_exhausted",
        ),
        C::Provider(_) => (
            StatusCode::BAD_GATEWAY,
            tonic::Code::Unavailable,
            "provider_unavailable",
        ),
        C::ClosedMidAnswer => (
            StatusCode::CONFLICT,
            tonic::Code::FailedPrecondition,
            "session_not_active",
        ),
        C::Broken(_) => (
            StatusCode::BAD_GATEWAY,
            tonic::Code::Unavailable,
            "stream_broken",
        ),
        C::Timeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            tonic::Code::DeadlineExceeded,
            "deadline_exceeded",
        ),
        C::ShuttingDown | C::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            "unavailable",
        ),
        C::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::Internal,
            "internal",
        ),
    }
}

impl ApiError {
    /// The `{"code", "message"}` object of an error, for error events inside a stream (SSE).
    pub fn body(&self) -> serde_json::Value {
        let (_, _, code) = self.classify();
        json!({ "code": code, "message": self.message() })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, code) = self.classify();
        self.log(code);
        let mut error = json!({ "code": code, "message": self.message() });
        if let Self::Service(ServiceError::VersionConflict {
            current_version, ..
        }) = &self
        {
            error["current_version"] = json!(current_version);
        }
        let body = Json(json!({ "error": error }));
        let mut resp = (status, body).into_response();
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The rest of an oversized or stalled body may still be in flight: tell HTTP/1.1 clients not to
            // reuse this connection, which the server closes instead of draining.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::Auth(_)) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let (_, code, name) = e.classify();
        e.log(name);
        let mut status = tonic::Status::new(code, e.message());
        if let Some(secs) = e.retry_after_secs()
            && let Ok(v) = secs.to_string().parse()
        {
            status.metadata_mut().insert("retry-after", v);
        }
        if let ApiError::Service(ServiceError::VersionConflict {
            current_version, ..
        }) = &e
            && let Ok(v) = current_version.to_string().parse()
        {
            status.metadata_mut().insert("current-version", v);
        }
        status
    }
}
