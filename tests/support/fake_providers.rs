//! Local fake AI providers: one HTTP server that speaks the real wire format of OpenAI, Groq,
//! an OpenAI-compatible server, Anthropic, Gemini and Unsplash, on their real paths, streaming
//! included, and checks what it is sent.
//!
//! | provider | base URL (`base_url`) | paths |
//! |---|---|---|
//! | `openai` | `http://127.0.0.1:PORT` | `/v1/chat/completions`, `/v1/images/generations` |
//! | `groq` | `…/openai` | `/openai/v1/chat/completions` |
//! | `compat` | `…/compat` | `/compat/v1/chat/completions` |
//! | `claude` | `http://127.0.0.1:PORT` | `/v1/messages` |
//! | `gemini` | `http://127.0.0.1:PORT` | `/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` |
//! | `unsplash` | `http://127.0.0.1:PORT` | `/search/photos` |
//!
//! Each provider checks its auth header against [`FakeProviders::key`] (a wrong or missing key
//! gets that provider's real 401/403 body), its required headers and body fields (the real 400
//! body when missing), records every request, then answers from a queue of one-shot
//! [`Fault`]s or, when the queue is empty, with a reply: the text set by
//! [`FakeProviders::set_reply`], or one derived from the prompt (`{"echo": "<prompt>"}` when
//! JSON was asked, `Echo: <prompt>` otherwise). Usage counts words: input = words of the
//! prompt, output = words of the reply. Streams send one chunk per word.
//!
//! Used by the integration tests (`mod support;`) and by `examples/fake_provider.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_integration_service::providers::AdapterConfig;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Every provider the fake speaks for.
pub const PROVIDERS: [&str; 6] = ["openai", "groq", "compat", "claude", "gemini", "unsplash"];

/// One scripted misbehaviour, applied to the next request of a provider.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, body and extra headers (e.g. 429 with `Retry-After`).
    Status {
        /// HTTP status.
        code: u16,
        /// The body, sent as JSON.
        body: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// Wait this long before answering normally (a slow first byte, or a timeout).
    Delay(Duration),
    /// Send the first `after_tokens` words of the answer, then end the body without the
    /// stream's terminator (a non-streamed answer is cut in the middle of its JSON).
    CutStream {
        /// Words sent before the cut.
        after_tokens: usize,
    },
    /// 200 with a body that is not valid JSON (or a stream chunk that is not).
    Malformed,
    /// Never answer.
    Hang,
}

impl Fault {
    /// A status with `provider`'s real error body for it and `message`.
    pub fn error(provider: &str, code: u16, message: &str) -> Self {
        Fault::Status {
            code,
            body: error_body(provider, code, message).to_string(),
            headers: Vec::new(),
        }
    }

    /// A status with `provider`'s real error body and its usual message for that status.
    pub fn status(provider: &str, code: u16) -> Self {
        let message = match code {
            400 => "Invalid request (fake)",
            401 => "Invalid authentication (fake)",
            403 => "Permission denied (fake)",
            404 => "The model `nope` does not exist (fake)",
            429 => "Rate limit reached (fake)",
            529 => "Overloaded",
            500 => "The server had an error while processing your request (fake)",
            _ => "Service unavailable (fake)",
        };
        Self::error(provider, code, message)
    }

    /// `provider`'s way of saying "too many requests, come back in `secs` seconds": 429 with
    /// `Retry-After` (Gemini: a `RetryInfo` in the body; Unsplash: 403 with
    /// `X-Ratelimit-Remaining: 0` and no hint).
    pub fn rate_limited(provider: &str, secs: u64) -> Self {
        match provider {
            "gemini" => Fault::Status {
                code: 429,
                body: json!({"error": {
                    "code": 429,
                    "message": "Resource has been exhausted (e.g. check quota).",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{secs}s"),
                    }],
                }})
                .to_string(),
                headers: Vec::new(),
            },
            "unsplash" => Fault::Status {
                code: 403,
                body: "Rate Limit Exceeded".into(),
                headers: vec![
                    ("x-ratelimit-limit".into(), "50".into()),
                    ("x-ratelimit-remaining".into(), "0".into()),
                ],
            },
            _ => Fault::Status {
                code: 429,
                body: error_body(provider, 429, "Rate limit reached for requests").to_string(),
                headers: vec![("retry-after".into(), secs.to_string())],
            },
        }
    }
}

/// `provider`'s real error body shape.
pub fn error_body(provider: &str, code: u16, message: &str) -> Value {
    match provider {
        "claude" => {
            let kind = match code {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        "gemini" => {
            let status = match code {
                400 => "INVALID_ARGUMENT",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                500 => "INTERNAL",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "UNKNOWN",
            };
            json!({"error": {"code": code, "message": message, "status": status}})
        }
        "unsplash" => json!({"errors": [message]}),
        _ => {
            let (kind, error_code) = match code {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                404 => ("invalid_request_error", json!("model_not_found")),
                429 => ("requests", json!("rate_limit_exceeded")),
                400..=499 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": error_code}})
        }
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which provider it was for.
    pub provider: String,
    /// `GET`, `POST`.
    pub method: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Every header as sent (secrets included: test-only).
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// What the fake knows about one provider.
#[derive(Default)]
struct ProviderState {
    /// The key it expects; `None` accepts any or none.
    key: Option<String>,
    /// Faults for the next requests, first first.
    faults: VecDeque<Fault>,
    /// The fixed reply text, if set.
    reply: Option<String>,
    /// The most recent requests received (at most [`MAX_RECORDED`]).
    requests: VecDeque<Recorded>,
    /// How many requests were received in all.
    received: usize,
}

/// Requests kept per provider, so a long benchmark run does not grow without bound.
const MAX_RECORDED: usize = 10_000;

/// State shared by the server's handlers and the test.
struct Shared {
    providers: Mutex<HashMap<&'static str, ProviderState>>,
    /// Added before every answer.
    latency: Mutex<Duration>,
    /// Added before every chunk of a stream after the first.
    chunk_delay: Mutex<Duration>,
    /// Numbers the ids of answers.
    next_id: AtomicU64,
}

impl Shared {
    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut ProviderState) -> T) -> T {
        let mut providers = self.providers.lock().unwrap();
        let name = PROVIDERS
            .iter()
            .find(|p| **p == provider)
            .unwrap_or_else(|| panic!("unknown fake provider {provider:?}"));
        f(providers.entry(name).or_default())
    }
}

/// The running fake; stops when dropped.
pub struct FakeProviders {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        // Abort rather than drain: a `Hang` fault never finishes on its own.
        self.server.abort();
    }
}

impl FakeProviders {
    /// Starts on `127.0.0.1:0` with no added latency.
    pub async fn start() -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(addr, Duration::ZERO)
            .await
            .expect("bind the fake providers")
    }

    /// Starts on `addr`, adding `latency` before every answer.
    pub async fn start_on(addr: SocketAddr, latency: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            providers: Mutex::new(HashMap::new()),
            latency: Mutex::new(latency),
            chunk_delay: Mutex::new(Duration::ZERO),
            next_id: AtomicU64::new(1),
        });
        for provider in PROVIDERS {
            shared.with(provider, |p| p.key = Some(default_key(provider).to_owned()));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL to configure for `provider` (Groq's real one ends in `/openai`).
    pub fn base_url(&self, provider: &str) -> String {
        match provider {
            "groq" => format!("{}/openai", self.url()),
            "compat" => format!("{}/compat", self.url()),
            _ => self.url(),
        }
    }

    /// The key `provider` expects (empty when it accepts any).
    pub fn key(&self, provider: &str) -> String {
        self.shared
            .with(provider, |p| p.key.clone())
            .unwrap_or_default()
    }

    /// Sets the key `provider` expects; `None` accepts any key or none (a local server).
    pub fn set_key(&self, provider: &str, key: Option<&str>) {
        self.shared
            .with(provider, |p| p.key = key.map(str::to_owned));
    }

    /// Makes `provider` answer every chat with `text` (until changed).
    pub fn set_reply(&self, provider: &str, text: &str) {
        self.shared
            .with(provider, |p| p.reply = Some(text.to_owned()));
    }

    /// Goes back to replies derived from the prompt.
    pub fn clear_reply(&self, provider: &str) {
        self.shared.with(provider, |p| p.reply = None);
    }

    /// Adds `latency` before every answer of every provider.
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Adds `delay` between the chunks of every stream.
    pub fn set_chunk_delay(&self, delay: Duration) {
        *self.shared.chunk_delay.lock().unwrap() = delay;
    }

    /// Queues `fault` for `provider`'s next unanswered request.
    pub fn push_fault(&self, provider: &str, fault: Fault) {
        self.shared.with(provider, |p| p.faults.push_back(fault));
    }

    /// The requests `provider` received, oldest first (the last 10,000).
    pub fn requests(&self, provider: &str) -> Vec<Recorded> {
        self.shared
            .with(provider, |p| p.requests.iter().cloned().collect())
    }

    /// How many requests `provider` received.
    pub fn request_count(&self, provider: &str) -> usize {
        self.shared.with(provider, |p| p.received)
    }

    /// The most recent request `provider` received.
    pub fn last_request(&self, provider: &str) -> Option<Recorded> {
        self.shared.with(provider, |p| p.requests.back().cloned())
    }

    /// An adapter configuration that reaches `provider` here, with its key and default model.
    pub fn config(&self, provider: &str, timeout: Duration) -> AdapterConfig {
        AdapterConfig {
            api_key: self.key(provider),
            base_url: self.base_url(provider),
            default_model: default_model(provider).to_owned(),
            timeout,
        }
    }
}

/// A base URL where nothing listens: connecting is refused.
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    let port = listener.local_addr().expect("probe port").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The key each provider expects by default (shaped like the real ones).
pub fn default_key(provider: &str) -> &'static str {
    match provider {
        "openai" => "sk-fake-openai-0123456789abcdef",
        "groq" => "gsk_fake_groq_0123456789abcdef",
        "compat" => "compat-fake-key-0123456789",
        "claude" => "sk-ant-fake-0123456789abcdef",
        "gemini" => "AIzaFakeGeminiKey0123456789",
        _ => "unsplash-fake-access-key-0123",
    }
}

/// A model name each provider knows.
pub fn default_model(provider: &str) -> &'static str {
    match provider {
        "openai" => "gpt-4o-mini",
        "groq" => "llama-3.1-8b-instant",
        "compat" => "llama3.2",
        "claude" => "claude-3-5-haiku-latest",
        "gemini" => "gemini-2.0-flash",
        _ => "unsplash",
    }
}

/// Which API a route speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    OpenAiChat,
    OpenAiImages,
    Anthropic,
    Gemini,
    Unsplash,
}

fn router(shared: Arc<Shared>) -> Router {
    let route = |provider: &'static str, wire: Wire| {
        move |State(s): State<Arc<Shared>>, request: Request| {
            handle(s, provider, wire, None, request)
        }
    };
    Router::new()
        .route(
            "/v1/chat/completions",
            post(route("openai", Wire::OpenAiChat)),
        )
        .route(
            "/openai/v1/chat/completions",
            post(route("groq", Wire::OpenAiChat)),
        )
        .route(
            "/compat/v1/chat/completions",
            post(route("compat", Wire::OpenAiChat)),
        )
        .route(
            "/v1/images/generations",
            post(route("openai", Wire::OpenAiImages)),
        )
        .route("/v1/messages", post(route("claude", Wire::Anthropic)))
        .route(
            "/v1beta/models/{target}",
            post(
                |State(s): State<Arc<Shared>>, Path(target): Path<String>, request: Request| {
                    handle(s, "gemini", Wire::Gemini, Some(target), request)
                },
            ),
        )
        .route("/search/photos", get(route("unsplash", Wire::Unsplash)))
        .with_state(shared)
}

/// What a checked request asks for.
struct Ask {
    model: String,
    /// All prompt text (system and messages), for usage counts.
    prompt_words: u64,
    /// The last user message, for derived replies.
    last_user: String,
    json: bool,
    stream: bool,
}

async fn handle(
    shared: Arc<Shared>,
    provider: &'static str,
    wire: Wire,
    target: Option<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body_json: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let recorded = Recorded {
        provider: provider.to_owned(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body_json.clone(),
    };
    let expected_key = shared.with(provider, |p| {
        if p.requests.len() == MAX_RECORDED {
            p.requests.pop_front();
        }
        p.requests.push_back(recorded.clone());
        p.received += 1;
        p.key.clone()
    });
    let latency = *shared.latency.lock().unwrap();
    if !latency.is_zero() {
        alarm::sleep(latency).await;
    }

    let ask = match check(
        provider,
        wire,
        target.as_deref(),
        &recorded,
        expected_key.as_deref(),
    ) {
        Ok(ask) => ask,
        Err(response) => return *response,
    };
    let fault = shared.with(provider, |p| p.faults.pop_front());
    let mut cut = None;
    match fault {
        Some(Fault::Status {
            code,
            body,
            headers,
        }) => {
            let mut response = json_response(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            );
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            return response;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Malformed) => {
            return if ask.stream {
                sse_response(
                    vec![Bytes::from_static(b"data: {\"choices\": [{\"delta\": \n\n")],
                    None,
                )
            } else {
                json_response(StatusCode::OK, "{\"id\": \"x\", \"choices\": [".into())
            };
        }
        Some(Fault::CutStream { after_tokens }) => cut = Some(after_tokens),
        None => {}
    }

    let reply = shared
        .with(provider, |p| p.reply.clone())
        .unwrap_or_else(|| derived_reply(&ask));
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let chunk_delay = *shared.chunk_delay.lock().unwrap();
    let answer = Answer {
        id,
        model: ask.model.clone(),
        input: ask.prompt_words.max(1),
        output: words(&reply).max(1),
        pieces: pieces(&reply),
        reply,
    };
    match wire {
        Wire::OpenAiImages => cut_json(openai_images(&answer, &recorded.body, &recorded), cut),
        Wire::Unsplash => unsplash_search(&recorded, cut),
        Wire::OpenAiChat if ask.stream => {
            let include_usage = recorded.body["stream_options"]["include_usage"] == true;
            sse_response(
                openai_stream(&answer, include_usage, cut),
                Some(chunk_delay),
            )
        }
        Wire::OpenAiChat => cut_json(openai_completion(&answer), cut),
        Wire::Anthropic if ask.stream => {
            sse_response(anthropic_stream(&answer, cut), Some(chunk_delay))
        }
        Wire::Anthropic => cut_json(anthropic_message(&answer), cut),
        Wire::Gemini if ask.stream => sse_response(gemini_stream(&answer, cut), Some(chunk_delay)),
        Wire::Gemini => cut_json(gemini_answer(&answer, answer.pieces.clone(), true), cut),
    }
}

/// Checks auth, headers and required fields the way the real provider does; `Err` is the
/// provider's real error answer.
fn check(
    provider: &str,
    wire: Wire,
    target: Option<&str>,
    r: &Recorded,
    key: Option<&str>,
) -> Result<Ask, Box<Response>> {
    let fail = |code: u16, message: &str| {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        Box::new(json_response(
            status,
            error_body(provider, code, message).to_string(),
        ))
    };
    let bearer = r
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    match wire {
        Wire::OpenAiChat | Wire::OpenAiImages => {
            if let Some(key) = key {
                match bearer.as_deref() {
                    None => {
                        return Err(fail(
                            401,
                            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                        ));
                    }
                    // Echo the wrong key whole: the adapter must scrub it from its message.
                    Some(sent) if sent != key => {
                        return Err(fail(
                            401,
                            &format!(
                                "Incorrect API key provided: {sent}. You can find your API key at https://platform.openai.com/account/api-keys."
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Wire::Anthropic => {
            if let Some(key) = key
                && r.header("x-api-key").as_deref() != Some(key)
            {
                return Err(fail(401, "invalid x-api-key"));
            }
            if r.header("anthropic-version").is_none() {
                return Err(fail(400, "anthropic-version: header is required"));
            }
        }
        Wire::Gemini => {
            if let Some(key) = key {
                match r.header("x-goog-api-key") {
                    None => {
                        return Err(fail(
                            403,
                            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                        ));
                    }
                    Some(sent) if sent != key => {
                        return Err(fail(400, "API key not valid. Please pass a valid API key."));
                    }
                    Some(_) => {}
                }
            }
        }
        Wire::Unsplash => {
            if let Some(key) = key {
                let sent = r.header("authorization");
                if sent.as_deref().and_then(|v| v.strip_prefix("Client-ID ")) != Some(key) {
                    return Err(fail(401, "OAuth error: The access token is invalid"));
                }
            }
        }
    }
    if r.method == Method::POST.as_str() {
        let json_type = r
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_type || !r.body.is_object() {
            return Err(fail(
                400,
                "We could not parse the JSON body of your request. The body must be JSON with Content-Type: application/json.",
            ));
        }
    }
    let body = &r.body;
    let text_of = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    };
    match wire {
        Wire::OpenAiChat => {
            let model = body["model"].as_str().unwrap_or_default();
            if model.is_empty() {
                return Err(fail(400, "you must provide a model parameter"));
            }
            let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
                return Err(fail(400, "Missing required parameter: 'messages'."));
            };
            let all: Vec<String> = messages.iter().map(|m| text_of(&m["content"])).collect();
            let last_user = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map(|m| text_of(&m["content"]))
                .unwrap_or_default();
            let json = body["response_format"]["type"] == "json_object";
            Ok(Ask {
                model: model.to_owned(),
                prompt_words: words(&all.join(" ")),
                json: json || all.iter().any(|t| t.contains("JSON")),
                last_user,
                stream: body["stream"] == true,
            })
        }
        Wire::OpenAiImages => {
            let prompt = body["prompt"].as_str().unwrap_or_default();
            if prompt.is_empty() {
                return Err(fail(400, "Missing required parameter: 'prompt'."));
            }
            Ok(Ask {
                model: body["model"].as_str().unwrap_or("dall-e-2").to_owned(),
                prompt_words: words(prompt),
                last_user: prompt.to_owned(),
                json: false,
                stream: false,
            })
        }
        Wire::Anthropic => {
            let model = body["model"].as_str().unwrap_or_default();
            if model.is_empty() {
                return Err(fail(400, "model: Field required"));
            }
            if !body["max_tokens"].is_u64() {
                return Err(fail(400, "max_tokens: Field required"));
            }
            let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
                return Err(fail(400, "messages: Field required"));
            };
            if body
                .get("system")
                .is_some_and(|s| !s.is_string() && !s.is_array())
            {
                return Err(fail(400, "system: Input should be a valid string"));
            }
            let mut all: Vec<String> = messages.iter().map(|m| text_of(&m["content"])).collect();
            all.push(text_of(&body["system"]));
            let last_user = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .map(|m| text_of(&m["content"]))
                .unwrap_or_default();
            Ok(Ask {
                model: model.to_owned(),
                prompt_words: words(&all.join(" ")),
                json: all.iter().any(|t| t.contains("JSON")),
                last_user,
                stream: body["stream"] == true,
            })
        }
        Wire::Gemini => {
            let target = target.unwrap_or_default();
            let Some((model, method)) = target.split_once(':') else {
                return Err(fail(404, "Requested entity was not found."));
            };
            let stream = match method {
                "generateContent" => false,
                "streamGenerateContent"
                    if r.query.as_deref().is_some_and(|q| q.contains("alt=sse")) =>
                {
                    true
                }
                "streamGenerateContent" => {
                    return Err(fail(
                        400,
                        "this fake serves streamGenerateContent with alt=sse only",
                    ));
                }
                _ => return Err(fail(404, "Requested entity was not found.")),
            };
            let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
                return Err(fail(
                    400,
                    "* GenerateContentRequest.contents: contents is not specified\n",
                ));
            };
            let mut all: Vec<String> = contents.iter().map(|c| text_of(&c["parts"])).collect();
            all.push(text_of(&body["systemInstruction"]["parts"]));
            let last_user = contents
                .iter()
                .rev()
                .find(|c| c["role"] == "user" || c.get("role").is_none())
                .map(|c| text_of(&c["parts"]))
                .unwrap_or_default();
            let json = body["generationConfig"]["responseMimeType"] == "application/json";
            Ok(Ask {
                model: model.to_owned(),
                prompt_words: words(&all.join(" ")),
                json: json || all.iter().any(|t| t.contains("JSON")),
                last_user,
                stream,
            })
        }
        Wire::Unsplash => {
            let query = query_param(r, "query").unwrap_or_default();
            if query.is_empty() {
                return Err(fail(400, "query is missing"));
            }
            Ok(Ask {
                model: "unsplash".into(),
                prompt_words: words(&query),
                last_user: query,
                json: false,
                stream: false,
            })
        }
    }
}

/// The reply when none was set: the prompt, echoed.
fn derived_reply(ask: &Ask) -> String {
    if ask.json {
        json!({"echo": ask.last_user}).to_string()
    } else {
        format!("Echo: {}", ask.last_user)
    }
}

/// Words, for usage counts.
fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The reply cut into stream pieces, one word each with its following space.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

/// A decoded query parameter.
fn query_param(r: &Recorded, name: &str) -> Option<String> {
    let query = r.query.as_deref()?;
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What every answer format needs.
struct Answer {
    id: u64,
    model: String,
    reply: String,
    pieces: Vec<String>,
    input: u64,
    output: u64,
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a valid response")
}

/// A JSON answer, or (for `CutStream`) its first half followed by a broken connection.
fn cut_json(body: Value, cut: Option<usize>) -> Response {
    let text = body.to_string();
    if cut.is_none() {
        return json_response(StatusCode::OK, text);
    }
    let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ];
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .expect("a valid response")
}

/// A Server-Sent Events answer of these frames, `delay` apart.
fn sse_response(frames: Vec<Bytes>, delay: Option<Duration>) -> Response {
    let delay = delay.unwrap_or_default();
    let stream =
        futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(frame)
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}

fn data_frame(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn openai_completion(a: &Answer) -> Value {
    json!({
        "id": format!("chatcmpl-fake{}", a.id),
        "object": "chat.completion",
        "created": unix_now(),
        "model": a.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": a.reply, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": a.input, "completion_tokens": a.output, "total_tokens": a.input + a.output},
        "system_fingerprint": "fp_fake",
    })
}

fn openai_stream(a: &Answer, include_usage: bool, cut: Option<usize>) -> Vec<Bytes> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": format!("chatcmpl-fake{}", a.id),
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": a.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut frames = vec![data_frame(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    for (i, piece) in a.pieces.iter().enumerate() {
        if cut == Some(i) {
            return frames;
        }
        frames.push(data_frame(&chunk(json!({"content": piece}), Value::Null)));
    }
    if cut.is_some() {
        return frames;
    }
    frames.push(data_frame(&chunk(json!({}), json!("stop"))));
    if include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = json!({"prompt_tokens": a.input, "completion_tokens": a.output, "total_tokens": a.input + a.output});
        frames.push(data_frame(&last));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn openai_images(a: &Answer, body: &Value, r: &Recorded) -> Value {
    let n = body["n"].as_u64().unwrap_or(1).clamp(1, 10);
    let b64 = body["response_format"] == "b64_json" || a.model.starts_with("gpt-image");
    let host = r.header("host").unwrap_or_else(|| "127.0.0.1".into());
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                // A 1x1 transparent PNG.
                json!({"b64_json": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=", "revised_prompt": format!("A picture of {}", a.reply)})
            } else {
                json!({"url": format!("http://{host}/fake-images/{}-{i}.png", a.id), "revised_prompt": format!("A picture of {}", a.reply)})
            }
        })
        .collect();
    json!({"created": unix_now(), "data": data})
}

fn anthropic_message(a: &Answer) -> Value {
    json!({
        "id": format!("msg_fake{}", a.id),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [{"type": "text", "text": a.reply}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": a.input, "output_tokens": a.output},
    })
}

fn anthropic_stream(a: &Answer, cut: Option<usize>) -> Vec<Bytes> {
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut start = anthropic_message(a);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"] = json!({"input_tokens": a.input, "output_tokens": 1});
    let mut frames = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": start}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for (i, piece) in a.pieces.iter().enumerate() {
        if cut == Some(i) {
            return frames;
        }
        frames.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    if cut.is_some() {
        return frames;
    }
    frames.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": a.output}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    frames
}

fn gemini_answer(a: &Answer, pieces: Vec<String>, last: bool) -> Value {
    let mut candidate = json!({
        "content": {"parts": [{"text": pieces.concat()}], "role": "model"},
        "index": 0,
    });
    if last {
        candidate["finishReason"] = json!("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": a.input,
            "candidatesTokenCount": a.output,
            "totalTokenCount": a.input + a.output,
        },
        "modelVersion": a.model,
        "responseId": format!("fake{}", a.id),
    })
}

fn gemini_stream(a: &Answer, cut: Option<usize>) -> Vec<Bytes> {
    // Gemini separates events with CRLF pairs.
    let frame = |v: Value| Bytes::from(format!("data: {v}\r\n\r\n"));
    let total = a.pieces.len();
    let mut frames = Vec::new();
    for (i, piece) in a.pieces.iter().enumerate() {
        if cut == Some(i) {
            return frames;
        }
        let last = i + 1 == total && cut.is_none();
        frames.push(frame(gemini_answer(a, vec![piece.clone()], last)));
    }
    if total == 0 && cut.is_none() {
        frames.push(frame(gemini_answer(a, Vec::new(), true)));
    }
    frames
}

fn unsplash_search(r: &Recorded, cut: Option<usize>) -> Response {
    let query = query_param(r, "query").unwrap_or_default();
    let per_page: usize = query_param(r, "per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(1, 30);
    let slug: String = query
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let results: Vec<Value> = (0..per_page)
        .map(|i| {
            let id = format!("{slug}-{i}");
            json!({
                "id": id,
                "width": 4000,
                "height": 3000,
                "color": "#c0c0c0",
                "description": format!("Photo {i} of {query}"),
                "alt_description": format!("{query} number {i}"),
                "urls": {
                    "raw": format!("https://images.unsplash.com/photo-{id}?ixid=fake"),
                    "full": format!("https://images.unsplash.com/photo-{id}?q=85"),
                    "regular": format!("https://images.unsplash.com/photo-{id}?w=1080"),
                    "small": format!("https://images.unsplash.com/photo-{id}?w=400"),
                    "thumb": format!("https://images.unsplash.com/photo-{id}?w=200"),
                },
                "links": {
                    "self": format!("https://api.unsplash.com/photos/{id}"),
                    "html": format!("https://unsplash.com/photos/{id}"),
                    "download": format!("https://unsplash.com/photos/{id}/download"),
                    "download_location": format!("https://api.unsplash.com/photos/{id}/download"),
                },
                "user": {"id": "fake-user", "username": "fake", "name": "Fake Photographer"},
            })
        })
        .collect();
    let body = json!({"total": per_page, "total_pages": 1, "results": results});
    let mut response = cut_json(body, cut);
    response
        .headers_mut()
        .insert("x-ratelimit-limit", HeaderValue::from_static("50"));
    response
        .headers_mut()
        .insert("x-ratelimit-remaining", HeaderValue::from_static("49"));
    response
}

/// Sleeps to the exact latency a benchmark asked for. Tokio's timer ticks in whole
/// milliseconds and parks in `epoll_wait` with a millisecond timeout, so its 50 ms sleep ends
/// 50-52 ms later, and a benchmark of our overhead over a "fixed 50 ms provider" would count
/// the fake's slack as ours. One thread keeps every pending wake-up in a heap and sleeps on a
/// condition variable until the earliest (a futex wait with the kernel's high-resolution
/// timer), then wakes its task.
mod alarm {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    struct Alarm {
        at: Instant,
        seq: u64,
        wake: oneshot::Sender<()>,
    }

    impl PartialEq for Alarm {
        fn eq(&self, other: &Self) -> bool {
            (self.at, self.seq) == (other.at, other.seq)
        }
    }
    impl Eq for Alarm {}
    impl PartialOrd for Alarm {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Alarm {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            (self.at, self.seq).cmp(&(other.at, other.seq))
        }
    }

    #[derive(Default)]
    struct Pending {
        heap: BinaryHeap<Reverse<Alarm>>,
        next_seq: u64,
    }

    struct Clock {
        pending: Mutex<Pending>,
        changed: Condvar,
    }

    fn clock() -> &'static Clock {
        static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
        CLOCK.get_or_init(|| {
            let clock: &'static Clock = Box::leak(Box::new(Clock {
                pending: Mutex::new(Pending::default()),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("fake-alarm".into())
                .spawn(move || ring(clock))
                .expect("start the fake's alarm thread");
            clock
        })
    }

    /// The alarm thread: wakes each sleeper at its instant. It lives as long as the process
    /// (the fake's servers come and go; one idle thread serves them all).
    fn ring(clock: &Clock) {
        let mut pending = clock.pending.lock().unwrap();
        loop {
            let now = Instant::now();
            while pending
                .heap
                .peek()
                .is_some_and(|Reverse(alarm)| alarm.at <= now)
            {
                let Reverse(alarm) = pending.heap.pop().expect("peeked");
                // The sleeper may have gone (its request was dropped): nothing to wake.
                let _ = alarm.wake.send(());
            }
            pending = match pending.heap.peek() {
                Some(Reverse(next)) => {
                    let wait = next.at.saturating_duration_since(now);
                    clock.changed.wait_timeout(pending, wait).unwrap().0
                }
                None => clock.changed.wait(pending).unwrap(),
            };
        }
    }

    /// Sleeps for `d`, ending within tens of microseconds of it rather than up to 2 ms late.
    pub async fn sleep(d: Duration) {
        let (wake, woken) = oneshot::channel();
        let at = Instant::now() + d;
        let clock = clock();
        {
            let mut pending = clock.pending.lock().unwrap();
            let earliest = pending.heap.peek().is_none_or(|Reverse(a)| at < a.at);
            let seq = pending.next_seq;
            pending.next_seq += 1;
            pending.heap.push(Reverse(Alarm { at, seq, wake }));
            if earliest {
                clock.changed.notify_one();
            }
        }
        let _ = woken.await;
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn sleepers_wake_in_order_and_on_time() {
            let start = Instant::now();
            let (a, b, c) = tokio::join!(
                async {
                    sleep(Duration::from_millis(30)).await;
                    start.elapsed()
                },
                async {
                    sleep(Duration::from_millis(10)).await;
                    start.elapsed()
                },
                async {
                    sleep(Duration::from_millis(20)).await;
                    start.elapsed()
                },
            );
            assert!(
                b >= Duration::from_millis(10) && b <= c && c <= a,
                "{b:?} {c:?} {a:?}"
            );
            assert!(c >= Duration::from_millis(20) && a >= Duration::from_millis(30));
        }
    }
}
