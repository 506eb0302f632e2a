//! Counts and times every gRPC call by method and status code. The code of a successful call
//! arrives in the trailers, after the body, so the response body is watched and the call is
//! recorded when the body ends (or is dropped: a client that went away).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use crate::telemetry::metrics;

/// Records the call when its response body ends.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.uri().path().to_owned();
    let response = next.run(request).await;
    let code = status_code(response.headers());
    response.map(|body| {
        Body::new(Watched {
            inner: body,
            call: Some(Call {
                method,
                code,
                started,
            }),
        })
    })
}

/// A call waiting for its outcome.
struct Call {
    method: String,
    /// From the headers of a trailers-only answer (an error), else from the trailers.
    code: Option<i32>,
    started: Instant,
}

impl Call {
    fn record(self) {
        // An unknown method answers UNIMPLEMENTED: its path is never a label (unbounded).
        let code = self.code.unwrap_or(CANCELLED);
        let method = if code == UNIMPLEMENTED {
            "unknown".to_owned()
        } else {
            self.method
        };
        metrics::grpc_request(method, code_name(code), self.started.elapsed());
    }
}

struct Watched {
    inner: Body,
    call: Option<Call>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), self.call.as_mut()) {
                    call.code = status_code(trailers).or(call.code);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.record();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record();
        }
    }
}

const CANCELLED: i32 = 1;
const UNIMPLEMENTED: i32 = 12;

fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The canonical name of a status code (the label value).
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_canonical_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }
}
