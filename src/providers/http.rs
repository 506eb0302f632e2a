//! HTTP plumbing shared by the provider adapters: one pooled client, bounded calls, the
//! classification of every failure into an [`ErrorClass`], and Server-Sent Events.
//!
//! Classification (design.md): `Retryable` for timeouts, connection errors, 5xx (including
//! Anthropic's 529), 408 and bodies we cannot parse; `RateLimited` for 429, with the provider's
//! `Retry-After`; `NonRetryable` for every other 4xx (bad request, auth, model not found,
//! content policy). Every message carries the provider's own error text, never the API key, and
//! with e-mail addresses, phone numbers and tokens masked ([`crate::domain::redact`]): it is
//! stored on the task and shown to its owner.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{AdapterConfig, ProviderError};
use crate::domain::ErrorClass;
use crate::domain::redact::redact_owned;
use crate::error_text::error_chain;

/// Largest response body we read (generated images come back base64-encoded, a few MB each).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How much of an unparseable error body goes into a message.
const MAX_SNIPPET_CHARS: usize = 300;

/// The reqwest client every adapter shares, so connections to a provider are pooled.
/// Per-call deadlines come from each adapter's [`AdapterConfig::timeout`], not from here.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!(
            "ai-integration-service/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

/// A provider's Server-Sent Events, decoded.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Result<Event, ProviderError>> + Send>>;

/// Decides the class of an HTTP failure before the generic rules, for providers that signal
/// something special (Unsplash's hourly limit is a 403).
pub(crate) type StatusOverride = fn(StatusCode, &HeaderMap) -> Option<ErrorClass>;

/// One provider's endpoint: the shared client, its configuration and its name for errors.
pub(crate) struct ProviderHttp {
    /// The adapter's name, put on every error.
    pub name: String,
    /// The shared, pooled client.
    pub client: reqwest::Client,
    /// Key, base URL, default model and timeout.
    pub config: AdapterConfig,
    /// Provider-specific status classification, tried first.
    pub status_override: Option<StatusOverride>,
}

impl ProviderHttp {
    /// An endpoint with the generic classification.
    pub fn new(name: &str, config: AdapterConfig, client: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            client,
            config,
            status_override: None,
        }
    }

    /// `{base_url}{path}`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// The model of a request, or the configured default.
    pub fn model<'a>(&'a self, requested: &'a Option<String>) -> &'a str {
        requested
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.config.default_model)
    }

    /// An error of this provider, with the API key and PII scrubbed from the message.
    pub fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError {
            provider: self.name.clone(),
            class,
            message: scrub(&message.into(), &self.config.api_key),
            retry_after: None,
        }
    }

    /// A `Retryable` error for an answer we cannot make sense of.
    pub fn malformed(&self, what: impl std::fmt::Display) -> ProviderError {
        self.error(
            ErrorClass::Retryable,
            format!("malformed response from provider: {what}"),
        )
    }

    /// The `Retryable` error for a stream that stopped before the provider said it was done.
    pub fn cut_stream(&self) -> ProviderError {
        self.error(
            ErrorClass::Retryable,
            "stream ended mid-answer (no end-of-answer marker)",
        )
    }

    /// Runs `call` within the configured timeout; running out is a `Retryable` error. Wrap the
    /// whole call, stream included, so a slow first byte or a stalled stream ends here.
    pub async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(self.error(
                ErrorClass::Retryable,
                format!("timed out after {}", humantime::format_duration(timeout)),
            )),
        }
    }

    /// Sends `request`; a non-2xx answer becomes a classified error carrying the provider's
    /// own message.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ProviderError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        // The body is only for the message: a failure to read it must not hide the status.
        let body = match read_limited(response).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(error body unreadable: {e})"),
        };
        let class = self
            .status_override
            .and_then(|f| f(status, &headers))
            .unwrap_or_else(|| status_class(status));
        let mut err = self.error(class, status_message(status, &body));
        if class == ErrorClass::RateLimited {
            err.retry_after =
                retry_after(&headers, SystemTime::now()).or_else(|| body_retry_delay(&body));
        }
        Err(err)
    }

    /// Reads a whole body; one that is cut or too large is a `Retryable` error (the provider
    /// misbehaved, another try or provider may do better).
    pub async fn body(&self, response: Response) -> Result<Vec<u8>, ProviderError> {
        read_limited(response)
            .await
            .map_err(|e| self.error(ErrorClass::Retryable, format!("reading the response: {e}")))
    }

    /// A whole JSON body already read; not the expected shape is a `Retryable` error.
    pub fn parse<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ProviderError> {
        serde_json::from_slice(bytes).map_err(|e| self.malformed(e))
    }

    /// Server-Sent Events decoded from a stream of byte chunks (a response body, or bytes
    /// given by a fuzz target, `src/fuzzing/`). A broken connection or an undecodable stream
    /// is a `Retryable` error item.
    pub fn event_stream<S, B, E>(&self, bytes: S) -> EventStream
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: AsRef<[u8]>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let name = self.name.clone();
        let key = self.config.api_key.clone();
        Box::pin(bytes.eventsource().map(move |item| {
            item.map_err(|e| ProviderError {
                provider: name.clone(),
                class: ErrorClass::Retryable,
                message: scrub(
                    &format!("reading the event stream: {}", error_chain(&e)),
                    &key,
                ),
                retry_after: None,
            })
        }))
    }

    /// The error for a request that got no HTTP answer: connection refused or reset, a body
    /// cut off, a client-side timeout. All `Retryable`.
    fn transport(&self, e: &reqwest::Error) -> ProviderError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        self.error(ErrorClass::Retryable, format!("{what}: {}", error_chain(e)))
    }
}

/// Reads at most [`MAX_BODY_BYTES`] of a body.
async fn read_limited(response: Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The generic class of a non-2xx status.
pub(crate) fn status_class(status: StatusCode) -> ErrorClass {
    match status.as_u16() {
        429 => ErrorClass::RateLimited,
        408 => ErrorClass::Retryable,
        500..=599 => ErrorClass::Retryable,
        // 400 bad request or content policy, 401/403 auth, 404 unknown model, 413, 422, ...
        _ => ErrorClass::NonRetryable,
    }
}

/// "HTTP 401 Unauthorized: <the provider's own message>".
pub(crate) fn status_message(status: StatusCode, body: &str) -> String {
    let detail = provider_message(body).unwrap_or_else(|| snippet(body));
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

/// The provider's own message from an error body, in any of the shapes we know:
/// OpenAI `{"error":{"message","type","code"}}`, Anthropic
/// `{"type":"error","error":{"type","message"}}`, Gemini `{"error":{"code","message","status"}}`,
/// Unsplash `{"errors":[...]}`, or a bare `{"error": "..."}` / `{"message": "..."}`
/// (OpenAI-compatible servers).
pub(crate) fn provider_message(body: &str) -> Option<String> {
    let json: Value = serde_json::from_str(body).ok()?;
    if let Some(error) = json.get("error") {
        if let Some(text) = error.as_str() {
            return Some(text.to_owned());
        }
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        // The machine-readable kind, which often says more than the text (content_policy_violation).
        let kinds: Vec<String> = ["type", "code", "status"]
            .iter()
            .filter_map(|k| error.get(*k))
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        return Some(match (message.is_empty(), kinds.is_empty()) {
            (false, false) => format!("{message} ({})", kinds.join(", ")),
            (false, true) => message.to_owned(),
            (true, false) => kinds.join(", "),
            (true, true) => error.to_string(),
        });
    }
    if let Some(errors) = json.get("errors").and_then(Value::as_array) {
        let texts: Vec<String> = errors
            .iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .collect();
        return Some(texts.join("; "));
    }
    json.get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The start of a body that is not a known error shape (an HTML page from a proxy, say).
fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    let mut out: String = trimmed.chars().take(MAX_SNIPPET_CHARS).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// `message` with every occurrence of `key` replaced, so an error that echoes the key (some
/// servers do) never carries it into task records or logs, even a key of no known shape; then
/// with PII and tokens masked.
pub(crate) fn scrub(message: &str, key: &str) -> String {
    // Very short keys would blank out ordinary words; no real key is that short.
    let message = if key.len() < 8 {
        message.to_owned()
    } else {
        message.replace(key, "[redacted]")
    };
    redact_owned(message)
}

/// How long a 429 asks us to wait: `Retry-After` (seconds or an HTTP date), `retry-after-ms`,
/// or OpenAI's `x-ratelimit-reset-*` for the exhausted limit ("1s", "6m0s", "20ms").
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return duration_from_secs(ms / 1000.0);
    }
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<f64>() {
            return duration_from_secs(secs);
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    // OpenAI: the reset of whichever limit is used up.
    ["requests", "tokens"]
        .iter()
        .filter(|limit| header(&format!("x-ratelimit-remaining-{limit}")) == Some("0"))
        .filter_map(|limit| header(&format!("x-ratelimit-reset-{limit}")).and_then(go_duration))
        .max()
}

/// A non-negative, finite number of seconds as a duration.
fn duration_from_secs(secs: f64) -> Option<Duration> {
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// Parses a Go-style duration such as `1s`, `6m0s`, `1h2m3.5s` or `20ms`; `None` for
/// anything else.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0_f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (scale, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    duration_from_secs(total)
}

/// Gemini's wait hint inside a 429 body: `error.details[].retryDelay` ("37s") of the
/// `google.rpc.RetryInfo` detail.
pub(crate) fn body_retry_delay(body: &str) -> Option<Duration> {
    let json: Value = serde_json::from_str(body).ok()?;
    json.pointer("/error/details")?
        .as_array()?
        .iter()
        .filter_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .find_map(go_duration)
}

/// The class of an error reported inside a 200 stream, from the provider's error type
/// (`overloaded_error`, `rate_limit_error`, `RESOURCE_EXHAUSTED`, `invalid_request_error`, ...).
pub(crate) fn stream_error_class(kind: &str) -> ErrorClass {
    let kind = kind.to_ascii_lowercase();
    if kind.contains("rate_limit") || kind.contains("resource_exhausted") {
        ErrorClass::RateLimited
    } else if kind.contains("invalid_request")
        || kind.contains("invalid_argument")
        || kind.contains("permission")
        || kind.contains("authentication")
        || kind.contains("not_found")
    {
        ErrorClass::NonRetryable
    } else {
        // overloaded_error, api_error, server_error, INTERNAL, UNAVAILABLE, unknown kinds.
        ErrorClass::Retryable
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified_as_the_design_says() {
        let class = |c: u16| status_class(StatusCode::from_u16(c).unwrap());
        assert_eq!(class(429), ErrorClass::RateLimited);
        for c in [408, 500, 502, 503, 504, 529] {
            assert_eq!(class(c), ErrorClass::Retryable, "{c}");
        }
        for c in [400, 401, 403, 404, 413, 422] {
            assert_eq!(class(c), ErrorClass::NonRetryable, "{c}");
        }
    }

    #[test]
    fn openai_error_body() {
        let body = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        assert_eq!(
            provider_message(body).unwrap(),
            "Your request was rejected as a result of our safety system. (invalid_request_error, content_policy_violation)"
        );
    }

    #[test]
    fn anthropic_error_body() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            provider_message(body).unwrap(),
            "Overloaded (overloaded_error)"
        );
    }

    #[test]
    fn gemini_error_body() {
        let body = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            provider_message(body).unwrap(),
            "API key not valid. Please pass a valid API key. (400, INVALID_ARGUMENT)"
        );
    }

    #[test]
    fn unsplash_error_body() {
        let body = r#"{"errors":["OAuth error: The access token is invalid"]}"#;
        assert_eq!(
            provider_message(body).unwrap(),
            "OAuth error: The access token is invalid"
        );
    }

    #[test]
    fn bare_error_bodies_of_compatible_servers() {
        assert_eq!(
            provider_message(r#"{"error":"model \"llama9\" not found"}"#).unwrap(),
            "model \"llama9\" not found"
        );
        assert_eq!(provider_message(r#"{"message":"nope"}"#).unwrap(), "nope");
        assert_eq!(provider_message("<html>Bad Gateway</html>"), None);
    }

    #[test]
    fn status_message_falls_back_to_a_snippet() {
        let msg = status_message(StatusCode::BAD_GATEWAY, "<html>Bad Gateway</html>");
        assert_eq!(msg, "HTTP 502 Bad Gateway: <html>Bad Gateway</html>");
        let long = "x".repeat(1000);
        assert!(status_message(StatusCode::BAD_GATEWAY, &long).len() < 400);
        assert_eq!(
            status_message(StatusCode::SERVICE_UNAVAILABLE, ""),
            "HTTP 503 Service Unavailable"
        );
    }

    #[test]
    fn scrub_removes_the_key_and_pii() {
        let key = "abcdefghijklmnop-unsplash";
        let msg = format!("Incorrect API key provided: {key}. Write to ops@example.com.");
        let out = scrub(&msg, key);
        assert_eq!(
            out,
            "Incorrect API key provided: [redacted]. Write to [email]."
        );
        // An empty or tiny key (OpenAI-compatible servers without auth) changes nothing else.
        assert_eq!(scrub("a b", ""), "a b");
        assert_eq!(scrub("key sk-proj-abcdefghijklmnop", ""), "key [api-key]");
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_from_openai_reset_headers() {
        let now = SystemTime::now();
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1200"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(360)));
        // Retry-After wins when present.
        let mut h = h;
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(2)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(go_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5 days"), None);
    }

    #[test]
    fn gemini_retry_delay_in_the_body() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
        assert_eq!(body_retry_delay(body), Some(Duration::from_secs(37)));
        assert_eq!(body_retry_delay("{}"), None);
    }

    #[test]
    fn stream_error_kinds() {
        assert_eq!(
            stream_error_class("overloaded_error"),
            ErrorClass::Retryable
        );
        assert_eq!(stream_error_class("api_error"), ErrorClass::Retryable);
        assert_eq!(
            stream_error_class("rate_limit_error"),
            ErrorClass::RateLimited
        );
        assert_eq!(
            stream_error_class("RESOURCE_EXHAUSTED"),
            ErrorClass::RateLimited
        );
        assert_eq!(
            stream_error_class("invalid_request_error"),
            ErrorClass::NonRetryable
        );
    }
}
