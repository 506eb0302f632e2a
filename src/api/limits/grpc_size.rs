//! gRPC messages over the decoding limit: tonic answers OUT_OF_RANGE with its own wording;
//! clients expect RESOURCE_EXHAUSTED (what gRPC's own servers answer), with the limit named.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// What tonic's decoder says when a message is over the limit.
const TONIC_TOO_LARGE: &str = "decoded message length too large";

/// Rewrites tonic's "message too large" status (sent in the response head: the request is
/// refused before its handler runs) as RESOURCE_EXHAUSTED.
pub async fn message_size_status(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let headers = resp.headers();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v == HeaderValue::from(tonic::Code::OutOfRange as i32));
    if !out_of_range {
        return resp;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .filter(|m| m.contains(TONIC_TOO_LARGE))
    else {
        return resp;
    };
    let mut numbers = message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok());
    let (found, limit) = (numbers.next(), numbers.next());
    let text = match (found, limit) {
        (Some(found), Some(limit)) => {
            format!("request message of {found} bytes is over this method's limit of {limit} bytes")
        }
        _ => "request message is over this method's size limit".to_owned(),
    };
    let status = tonic::Status::resource_exhausted(text);
    let headers = resp.headers_mut();
    headers.remove("grpc-message");
    headers.remove("grpc-status");
    // `add_header` writes grpc-status and the percent-encoded grpc-message.
    if status.add_header(headers).is_err() {
        tracing::debug!("could not rewrite a gRPC status");
    }
    resp
}

/// gRPC's percent-encoding of `grpc-message` (`%XX`), undone.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_grpc_messages() {
        assert_eq!(percent_decode("found%3A 5 bytes"), "found: 5 bytes");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
