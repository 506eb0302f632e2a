//! `x-request-id` on every HTTP request and gRPC call: the caller's, when it is a sensible
//! one, else a new UUIDv7. It is answered in the response's headers and is current in the
//! service layer while the request is handled (recorded with audit entries).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::service::request;

/// The header.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest id taken from a caller.
const MAX_LEN: usize = 100;

/// Whether a caller's id is kept: 1 to 100 visible ASCII characters.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Gives the request its id and handles it in that id's scope.
pub async fn assign(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let mut response = request::scope(id.clone(), next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn only_short_visible_ids_are_kept() {
        assert!(acceptable("req-123"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable(&"x".repeat(101)));
        assert!(!acceptable("bad\u{7f}"));
    }
}
