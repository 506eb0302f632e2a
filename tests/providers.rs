//! The provider adapters against local fake providers that speak each provider's real wire
//! format (tests/support/fake_providers.rs): success, streaming, what we send, and every fault.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ai_integration_service::domain::ErrorClass;
use ai_integration_service::domain::payload::ImageStyle;
use ai_integration_service::providers::{
    Adapter, AnthropicAdapter, ChatMessage, ChatRequest, ChatResponse, GeminiAdapter, ImageRequest,
    ImageSearchRequest, NoSink, OpenAiAdapter, ProviderError, TokenSink, UnsplashAdapter,
    http_client,
};
use futures::future::join_all;
use serde_json::{Value, json};
use support::fake_providers::{FakeProviders, Fault, refused_base_url};

/// Every provider that chats.
const CHAT: [&str; 5] = ["openai", "groq", "compat", "claude", "gemini"];
/// Short, so fault tests stay fast.
const TIMEOUT: Duration = Duration::from_millis(300);

fn adapter_with(
    provider: &str,
    config: ai_integration_service::providers::AdapterConfig,
) -> Box<dyn Adapter> {
    let client = http_client().expect("build the HTTP client");
    match provider {
        "openai" => Box::new(OpenAiAdapter::openai(config, client)),
        "groq" => Box::new(OpenAiAdapter::groq(config, client)),
        "compat" => Box::new(OpenAiAdapter::compatible(config, client)),
        "claude" => Box::new(AnthropicAdapter::new("claude", config, client)),
        "gemini" => Box::new(GeminiAdapter::new("gemini", config, client)),
        "unsplash" => Box::new(UnsplashAdapter::new("unsplash", config, client)),
        other => panic!("no adapter for {other}"),
    }
}

fn adapter(fake: &FakeProviders, provider: &str, timeout: Duration) -> Box<dyn Adapter> {
    adapter_with(provider, fake.config(provider, timeout))
}

/// Collects streamed pieces.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl TokenSink for Collect {
    fn token(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

impl Collect {
    fn pieces(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn chat_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: None,
        system: Some("Answer briefly.".into()),
        messages: vec![ChatMessage::user("What is a queue?")],
        max_tokens: 200,
        temperature: Some(0.2),
        json_output: false,
        stream,
    }
}

async fn chat(
    fake: &FakeProviders,
    provider: &str,
    stream: bool,
    timeout: Duration,
) -> Result<ChatResponse, ProviderError> {
    adapter(fake, provider, timeout)
        .chat(&chat_request(stream), &NoSink)
        .await
}

/// Runs `f` for every chat provider at once and returns the results in [`CHAT`] order.
async fn each_chat_provider<F, Fut, T>(f: F) -> Vec<(&'static str, T)>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let results = join_all(CHAT.iter().map(|p| f(p))).await;
    CHAT.iter().copied().zip(results).collect()
}

fn assert_class<T: std::fmt::Debug>(
    provider: &str,
    result: &Result<T, ProviderError>,
    class: ErrorClass,
) -> ProviderError {
    match result {
        Err(e) => {
            assert_eq!(e.class, class, "{provider}: {e}");
            assert_eq!(e.provider, provider);
            e.clone()
        }
        Ok(v) => panic!("{provider}: expected a {class:?} error, got {v:?}"),
    }
}

#[tokio::test]
async fn chat_answers_with_the_reply_and_its_usage() {
    let fake = FakeProviders::start().await;
    for (provider, result) in each_chat_provider(|p| {
        fake.set_reply(p, "Queues hold work in order");
        chat(&fake, p, false, Duration::from_secs(5))
    })
    .await
    {
        let response = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(response.text, "Queues hold work in order", "{provider}");
        // "Answer briefly. What is a queue?" is 6 words; the reply is 5.
        assert_eq!(response.usage.input_tokens, 6, "{provider}");
        assert_eq!(response.usage.output_tokens, 5, "{provider}");
        assert!(!response.model.is_empty(), "{provider}");
        assert!(response.finish_reason.is_some(), "{provider}");
        assert_eq!(fake.request_count(provider), 1, "{provider}");
    }
}

#[tokio::test]
async fn streamed_chat_passes_every_piece_to_the_sink_in_order() {
    let fake = FakeProviders::start().await;
    let reply = "one two three four five six";
    for (provider, (result, pieces)) in each_chat_provider(|p| {
        fake.set_reply(p, reply);
        let fake = &fake;
        async move {
            let sink = Collect::default();
            let result = adapter(fake, p, Duration::from_secs(5))
                .chat(&chat_request(true), &sink)
                .await;
            (result, sink.pieces())
        }
    })
    .await
    {
        let response = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(response.text, reply, "{provider}");
        assert_eq!(pieces.concat(), reply, "{provider}");
        assert_eq!(pieces.len(), 6, "{provider}: {pieces:?}");
        assert_eq!(response.usage.input_tokens, 6, "{provider}");
        assert_eq!(response.usage.output_tokens, 6, "{provider}");
        assert!(response.finish_reason.is_some(), "{provider}");
    }
}

#[tokio::test]
async fn json_output_gets_a_json_answer_by_default() {
    let fake = FakeProviders::start().await;
    for (provider, result) in each_chat_provider(|p| {
        let fake = &fake;
        async move {
            let mut request = chat_request(false);
            request.json_output = true;
            // Claude has no JSON mode: prompts say "JSON", which the fake notices too.
            request.system = Some("Reply with a JSON object.".into());
            adapter(fake, p, Duration::from_secs(5))
                .chat(&request, &NoSink)
                .await
        }
    })
    .await
    {
        let text = result.unwrap_or_else(|e| panic!("{provider}: {e}")).text;
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{provider}: {e}: {text}"));
        assert_eq!(value, json!({"echo": "What is a queue?"}), "{provider}");
    }
}

#[tokio::test]
async fn openai_compatible_requests_carry_the_bearer_key_and_the_body_shape() {
    let fake = FakeProviders::start().await;
    for provider in ["openai", "groq", "compat"] {
        let mut request = chat_request(true);
        request.json_output = true;
        adapter(&fake, provider, Duration::from_secs(5))
            .chat(&request, &NoSink)
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        let sent = fake.last_request(provider).unwrap();
        let prefix = match provider {
            "groq" => "/openai",
            "compat" => "/compat",
            _ => "",
        };
        assert_eq!(sent.path, format!("{prefix}/v1/chat/completions"));
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {}", fake.key(provider)))
        );
        assert!(
            sent.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        let body = &sent.body;
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Answer briefly."})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "What is a queue?"})
        );
        assert_eq!(body["max_tokens"], 200);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }
}

#[tokio::test]
async fn a_compatible_server_without_a_key_gets_no_authorization_header() {
    let fake = FakeProviders::start().await;
    fake.set_key("compat", None);
    let mut config = fake.config("compat", Duration::from_secs(5));
    config.api_key = String::new();
    let response = adapter_with("compat", config)
        .chat(&chat_request(false), &NoSink)
        .await
        .unwrap();
    assert_eq!(response.text, "Echo: What is a queue?");
    assert_eq!(
        fake.last_request("compat").unwrap().header("authorization"),
        None
    );
}

#[tokio::test]
async fn an_sdk_style_base_url_ending_in_v1_works_too() {
    let fake = FakeProviders::start().await;
    let mut config = fake.config("compat", Duration::from_secs(5));
    config.base_url = format!("{}/v1/", config.base_url);
    adapter_with("compat", config)
        .chat(&chat_request(false), &NoSink)
        .await
        .unwrap();
    assert_eq!(
        fake.last_request("compat").unwrap().path,
        "/compat/v1/chat/completions"
    );
}

#[tokio::test]
async fn anthropic_requests_carry_its_headers_and_body_shape() {
    let fake = FakeProviders::start().await;
    chat(&fake, "claude", true, Duration::from_secs(5))
        .await
        .unwrap();
    let sent = fake.last_request("claude").unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(fake.key("claude")));
    assert_eq!(
        sent.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert!(
        sent.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["model"], "claude-3-5-haiku-latest");
    assert_eq!(sent.body["system"], "Answer briefly.");
    assert_eq!(sent.body["max_tokens"], 200);
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "What is a queue?"}])
    );
    assert_eq!(sent.body["stream"], true);
}

#[tokio::test]
async fn gemini_requests_carry_the_key_in_a_header_never_the_url() {
    let fake = FakeProviders::start().await;
    let mut request = chat_request(false);
    request.model = Some("gemini-1.5-pro".into());
    request.json_output = true;
    adapter(&fake, "gemini", Duration::from_secs(5))
        .chat(&request, &NoSink)
        .await
        .unwrap();
    chat(&fake, "gemini", true, Duration::from_secs(5))
        .await
        .unwrap();
    let sent = fake.requests("gemini");
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-1.5-pro:generateContent"
    );
    assert_eq!(
        sent[1].path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    );
    assert_eq!(sent[1].query.as_deref(), Some("alt=sse"));
    for s in &sent {
        assert_eq!(s.header("x-goog-api-key"), Some(fake.key("gemini")));
        assert!(!s.query.clone().unwrap_or_default().contains("key="));
    }
    let body = &sent[0].body;
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [{"text": "What is a queue?"}]}])
    );
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Answer briefly."}]})
    );
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 200);
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
}

#[tokio::test]
async fn a_wrong_key_is_non_retryable_with_the_providers_message_and_never_the_key() {
    let fake = FakeProviders::start().await;
    let wrong = "sk-wrong-key-that-must-not-leak-0123456789";
    let expected = [
        ("openai", "Incorrect API key provided"),
        ("groq", "Incorrect API key provided"),
        ("compat", "Incorrect API key provided"),
        ("claude", "invalid x-api-key"),
        ("gemini", "API key not valid"),
        ("unsplash", "OAuth error: The access token is invalid"),
    ];
    for (provider, message) in expected {
        let mut config = fake.config(provider, Duration::from_secs(5));
        config.api_key = wrong.into();
        let adapter = adapter_with(provider, config);
        let result = if provider == "unsplash" {
            adapter
                .search_images(&ImageSearchRequest {
                    query: "cats".into(),
                    count: 1,
                    orientation: None,
                    style: None,
                })
                .await
                .map(|_| ())
        } else {
            adapter
                .chat(&chat_request(false), &NoSink)
                .await
                .map(|_| ())
        };
        let err = assert_class(provider, &result, ErrorClass::NonRetryable);
        assert!(err.message.contains(message), "{provider}: {}", err.message);
        assert!(
            !err.to_string().contains(wrong),
            "{provider} leaked the key: {err}"
        );
        assert!(
            !format!("{err:?}").contains(wrong),
            "{provider} leaked the key: {err:?}"
        );
    }
}

#[tokio::test]
async fn rate_limits_carry_the_providers_retry_after() {
    let fake = FakeProviders::start().await;
    for (provider, result) in each_chat_provider(|p| {
        fake.push_fault(p, Fault::rate_limited(p, 7));
        chat(&fake, p, false, Duration::from_secs(5))
    })
    .await
    {
        let err = assert_class(provider, &result, ErrorClass::RateLimited);
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)), "{provider}");
    }
    // An HTTP-date Retry-After.
    let at = std::time::SystemTime::now() + Duration::from_secs(30);
    fake.push_fault(
        "openai",
        Fault::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![("retry-after".into(), httpdate::fmt_http_date(at))],
        },
    );
    let err = chat(&fake, "openai", false, TIMEOUT).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::RateLimited);
    let wait = err.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_in_a_stream_is_rate_limited_too() {
    let fake = FakeProviders::start().await;
    for (provider, result) in each_chat_provider(|p| {
        fake.push_fault(p, Fault::rate_limited(p, 3));
        chat(&fake, p, true, Duration::from_secs(5))
    })
    .await
    {
        let err = assert_class(provider, &result, ErrorClass::RateLimited);
        assert_eq!(err.retry_after, Some(Duration::from_secs(3)), "{provider}");
    }
}

#[tokio::test]
async fn unsplash_hourly_limit_is_rate_limited() {
    let fake = FakeProviders::start().await;
    fake.push_fault("unsplash", Fault::rate_limited("unsplash", 0));
    let result = adapter(&fake, "unsplash", TIMEOUT)
        .search_images(&ImageSearchRequest {
            query: "cats".into(),
            count: 3,
            orientation: None,
            style: None,
        })
        .await;
    let err = assert_class("unsplash", &result, ErrorClass::RateLimited);
    assert!(
        err.message.contains("Rate Limit Exceeded"),
        "{}",
        err.message
    );
    // A 403 without the exhausted header is an ordinary permission error.
    fake.push_fault("unsplash", Fault::status("unsplash", 403));
    let result = adapter(&fake, "unsplash", TIMEOUT)
        .search_images(&ImageSearchRequest {
            query: "cats".into(),
            count: 3,
            orientation: None,
            style: None,
        })
        .await;
    assert_class("unsplash", &result, ErrorClass::NonRetryable);
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let fake = FakeProviders::start().await;
    for code in [500, 503, 529, 408] {
        for stream in [false, true] {
            for (provider, result) in each_chat_provider(|p| {
                fake.push_fault(p, Fault::status(p, code));
                chat(&fake, p, stream, TIMEOUT)
            })
            .await
            {
                let err = assert_class(provider, &result, ErrorClass::Retryable);
                assert!(
                    err.message.contains(&code.to_string()),
                    "{provider}: {}",
                    err.message
                );
            }
        }
    }
}

#[tokio::test]
async fn client_errors_are_non_retryable_with_the_providers_message() {
    let fake = FakeProviders::start().await;
    for code in [400, 401, 403, 404] {
        for (provider, result) in each_chat_provider(|p| {
            fake.push_fault(p, Fault::error(p, code, &format!("fake says no to {p}")));
            chat(&fake, p, true, TIMEOUT)
        })
        .await
        {
            let err = assert_class(provider, &result, ErrorClass::NonRetryable);
            assert!(
                err.message.contains(&format!("fake says no to {provider}")),
                "{provider}: {}",
                err.message
            );
        }
    }
}

#[tokio::test]
async fn content_policy_is_non_retryable() {
    let fake = FakeProviders::start().await;
    fake.push_fault(
        "openai",
        Fault::Status {
            code: 400,
            body: json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}).to_string(),
            headers: vec![],
        },
    );
    let err = chat(&fake, "openai", false, TIMEOUT).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::NonRetryable);
    assert!(
        err.message.contains("content_policy_violation"),
        "{}",
        err.message
    );

    // Gemini blocks with a 200: the prompt's blockReason, or the answer's finishReason.
    fake.push_fault(
        "gemini",
        Fault::Status {
            code: 200,
            body: json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 6}}).to_string(),
            headers: vec![],
        },
    );
    let err = chat(&fake, "gemini", false, TIMEOUT).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::NonRetryable);
    assert!(err.message.contains("SAFETY"), "{}", err.message);
    fake.push_fault(
        "gemini",
        Fault::Status {
            code: 200,
            body: json!({"candidates": [{"finishReason": "PROHIBITED_CONTENT", "index": 0}]})
                .to_string(),
            headers: vec![],
        },
    );
    let err = chat(&fake, "gemini", false, TIMEOUT).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::NonRetryable);

    // OpenAI's filtered answer.
    fake.push_fault(
        "openai",
        Fault::Status {
            code: 200,
            body: json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}]}).to_string(),
            headers: vec![],
        },
    );
    let err = chat(&fake, "openai", false, TIMEOUT).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::NonRetryable);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_retryable() {
    let fake = FakeProviders::start().await;
    for stream in [false, true] {
        for (provider, result) in each_chat_provider(|p| {
            fake.push_fault(p, Fault::Delay(Duration::from_secs(2)));
            let fake = &fake;
            async move {
                let start = Instant::now();
                let result = chat(fake, p, stream, TIMEOUT).await;
                (result, start.elapsed())
            }
        })
        .await
        {
            let (result, elapsed) = result;
            let err = assert_class(provider, &result, ErrorClass::Retryable);
            assert!(
                err.message.contains("timed out"),
                "{provider}: {}",
                err.message
            );
            assert!(
                elapsed < Duration::from_millis(1500),
                "{provider}: {elapsed:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_hung_provider_times_out_as_retryable() {
    let fake = FakeProviders::start().await;
    for (provider, result) in each_chat_provider(|p| {
        fake.push_fault(p, Fault::Hang);
        chat(&fake, p, true, TIMEOUT)
    })
    .await
    {
        assert_class(provider, &result, ErrorClass::Retryable);
    }
}

#[tokio::test]
async fn a_stream_that_stalls_midway_times_out_as_retryable() {
    let fake = FakeProviders::start().await;
    fake.set_chunk_delay(Duration::from_secs(2));
    for (provider, result) in each_chat_provider(|p| chat(&fake, p, true, TIMEOUT)).await {
        let err = assert_class(provider, &result, ErrorClass::Retryable);
        assert!(
            err.message.contains("timed out"),
            "{provider}: {}",
            err.message
        );
    }
}

#[tokio::test]
async fn a_slow_first_byte_within_the_timeout_succeeds() {
    let fake = FakeProviders::start().await;
    for stream in [false, true] {
        for (provider, result) in each_chat_provider(|p| {
            fake.push_fault(p, Fault::Delay(Duration::from_millis(150)));
            chat(&fake, p, stream, Duration::from_secs(2))
        })
        .await
        {
            let response = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
            assert_eq!(response.text, "Echo: What is a queue?", "{provider}");
        }
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let fake = FakeProviders::start().await;
    let refused = refused_base_url();
    for provider in CHAT {
        let mut config = fake.config(provider, TIMEOUT);
        config.base_url = refused.clone();
        let result = adapter_with(provider, config)
            .chat(&chat_request(false), &NoSink)
            .await;
        let err = assert_class(provider, &result, ErrorClass::Retryable);
        assert!(
            err.message.contains("connect"),
            "{provider}: {}",
            err.message
        );
    }
    let mut config = fake.config("unsplash", TIMEOUT);
    config.base_url = refused;
    let result = adapter_with("unsplash", config)
        .search_images(&ImageSearchRequest {
            query: "cats".into(),
            count: 1,
            orientation: None,
            style: None,
        })
        .await;
    assert_class("unsplash", &result, ErrorClass::Retryable);
}

#[tokio::test]
async fn malformed_answers_are_retryable() {
    let fake = FakeProviders::start().await;
    for stream in [false, true] {
        for (provider, result) in each_chat_provider(|p| {
            fake.push_fault(p, Fault::Malformed);
            chat(&fake, p, stream, TIMEOUT)
        })
        .await
        {
            let err = assert_class(provider, &result, ErrorClass::Retryable);
            assert!(
                err.message.contains("malformed"),
                "{provider}: {}",
                err.message
            );
        }
    }
    fake.push_fault("unsplash", Fault::Malformed);
    let result = adapter(&fake, "unsplash", TIMEOUT)
        .search_images(&ImageSearchRequest {
            query: "cats".into(),
            count: 1,
            orientation: None,
            style: None,
        })
        .await;
    assert_class("unsplash", &result, ErrorClass::Retryable);
}

#[tokio::test]
async fn a_stream_cut_mid_answer_is_retryable_never_a_short_success() {
    let fake = FakeProviders::start().await;
    for after_tokens in [0, 2, 5] {
        for (provider, (result, pieces)) in each_chat_provider(|p| {
            fake.set_reply(p, "one two three four five");
            fake.push_fault(p, Fault::CutStream { after_tokens });
            let fake = &fake;
            async move {
                let sink = Collect::default();
                let result = adapter(fake, p, TIMEOUT)
                    .chat(&chat_request(true), &sink)
                    .await;
                (result, sink.pieces())
            }
        })
        .await
        {
            let err = assert_class(provider, &result, ErrorClass::Retryable);
            assert!(
                err.message.contains("mid-answer"),
                "{provider}: {}",
                err.message
            );
            assert_eq!(pieces.len(), after_tokens, "{provider}");
        }
    }
    // A whole-body answer cut in the middle of its JSON.
    for (provider, result) in each_chat_provider(|p| {
        fake.push_fault(p, Fault::CutStream { after_tokens: 1 });
        chat(&fake, p, false, TIMEOUT)
    })
    .await
    {
        assert_class(provider, &result, ErrorClass::Retryable);
    }
}

#[tokio::test]
async fn a_failure_is_followed_by_the_default_answer() {
    let fake = FakeProviders::start().await;
    fake.push_fault("claude", Fault::status("claude", 529));
    fake.push_fault("claude", Fault::status("claude", 500));
    assert!(chat(&fake, "claude", false, TIMEOUT).await.is_err());
    assert!(chat(&fake, "claude", false, TIMEOUT).await.is_err());
    assert!(chat(&fake, "claude", false, TIMEOUT).await.is_ok());
    assert_eq!(fake.request_count("claude"), 3);
}

#[tokio::test]
async fn openai_generates_images() {
    let fake = FakeProviders::start().await;
    let adapter = adapter(&fake, "openai", Duration::from_secs(5));
    let response = adapter
        .generate_image(&ImageRequest {
            model: Some("dall-e-3".into()),
            prompt: "a lighthouse at dusk".into(),
            size: Some("1024x1024".into()),
            count: 2,
            style: None,
        })
        .await
        .unwrap();
    assert_eq!(response.model, "dall-e-3");
    assert_eq!(response.images.len(), 2);
    for image in &response.images {
        assert!(image.url.as_deref().unwrap().ends_with(".png"));
        assert!(image.description.as_deref().unwrap().contains("lighthouse"));
        assert!(image.b64_json.is_none());
    }
    let sent = fake.last_request("openai").unwrap();
    assert_eq!(sent.path, "/v1/images/generations");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {}", fake.key("openai")))
    );
    assert_eq!(
        sent.body,
        json!({"model": "dall-e-3", "prompt": "a lighthouse at dusk", "n": 2, "size": "1024x1024", "response_format": "url"})
    );

    // gpt-image models answer base64.
    let response = adapter
        .generate_image(&ImageRequest {
            model: Some("gpt-image-1".into()),
            prompt: "a cat".into(),
            size: None,
            count: 1,
            style: None,
        })
        .await
        .unwrap();
    assert!(response.images[0].b64_json.is_some());
    assert!(
        fake.last_request("openai")
            .unwrap()
            .body
            .get("response_format")
            .is_none()
    );
}

#[tokio::test]
async fn image_faults_are_classified() {
    let fake = FakeProviders::start().await;
    let adapter = adapter(&fake, "openai", TIMEOUT);
    let request = ImageRequest {
        model: None,
        prompt: "a cat".into(),
        size: None,
        count: 1,
        style: None,
    };
    fake.push_fault("openai", Fault::rate_limited("openai", 2));
    let err = adapter.generate_image(&request).await.unwrap_err();
    assert_eq!(
        (err.class, err.retry_after),
        (ErrorClass::RateLimited, Some(Duration::from_secs(2)))
    );
    fake.push_fault("openai", Fault::Delay(Duration::from_secs(2)));
    assert_eq!(
        adapter.generate_image(&request).await.unwrap_err().class,
        ErrorClass::Retryable
    );
    fake.push_fault("openai", Fault::Malformed);
    assert_eq!(
        adapter.generate_image(&request).await.unwrap_err().class,
        ErrorClass::Retryable
    );
}

#[tokio::test]
async fn only_openai_generates_images() {
    let fake = FakeProviders::start().await;
    let request = ImageRequest {
        model: None,
        prompt: "a cat".into(),
        size: None,
        count: 1,
        style: None,
    };
    for provider in ["groq", "compat", "claude", "gemini", "unsplash"] {
        let result = adapter(&fake, provider, TIMEOUT)
            .generate_image(&request)
            .await;
        assert_class(provider, &result, ErrorClass::NonRetryable);
    }
    assert_eq!(fake.request_count("groq"), 0);
}

#[tokio::test]
async fn unsplash_finds_photos() {
    let fake = FakeProviders::start().await;
    let response = adapter(&fake, "unsplash", Duration::from_secs(5))
        .search_images(&ImageSearchRequest {
            query: "red bicycle".into(),
            count: 3,
            orientation: Some("landscape".into()),
            style: None,
        })
        .await
        .unwrap();
    assert_eq!(response.model, "unsplash");
    assert_eq!(response.images.len(), 3);
    let first = &response.images[0];
    assert_eq!(
        first.url.as_deref(),
        Some("https://images.unsplash.com/photo-red-bicycle-0?w=1080")
    );
    assert_eq!(first.description.as_deref(), Some("red bicycle number 0"));
    assert_eq!(first.author.as_deref(), Some("Fake Photographer"));
    assert_eq!(
        first.source_url.as_deref(),
        Some("https://unsplash.com/photos/red-bicycle-0")
    );
    assert_eq!((first.width, first.height), (Some(4000), Some(3000)));

    let sent = fake.last_request("unsplash").unwrap();
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.path, "/search/photos");
    assert_eq!(
        sent.query.as_deref(),
        Some("query=red+bicycle&per_page=3&orientation=landscape")
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Client-ID {}", fake.key("unsplash")))
    );
    assert_eq!(sent.header("accept-version").as_deref(), Some("v1"));

    // Unsplash has no style parameter: a style's keyword joins the query.
    adapter(&fake, "unsplash", Duration::from_secs(5))
        .search_images(&ImageSearchRequest {
            query: "cat".into(),
            count: 1,
            orientation: None,
            style: Some(ImageStyle::Watercolor),
        })
        .await
        .unwrap();
    let sent = fake.last_request("unsplash").unwrap();
    assert_eq!(
        sent.query.as_deref(),
        Some("query=cat+watercolor&per_page=1")
    );
}

#[tokio::test]
async fn openai_maps_image_styles() {
    let fake = FakeProviders::start().await;
    let adapter = adapter(&fake, "openai", Duration::from_secs(5));
    for (style, key, want) in [
        (ImageStyle::Vivid, "style", "vivid"),
        (ImageStyle::Cartoon, "prompt", "a cartoon drawing of: a fox"),
    ] {
        adapter
            .generate_image(&ImageRequest {
                model: Some("dall-e-3".into()),
                prompt: "a fox".into(),
                size: None,
                count: 1,
                style: Some(style),
            })
            .await
            .unwrap();
        let sent = fake.last_request("openai").unwrap();
        assert_eq!(sent.body[key], want, "{style:?}");
    }
}

#[tokio::test]
async fn the_fake_rejects_what_the_real_providers_reject() {
    let fake = FakeProviders::start().await;
    let http = reqwest::Client::new();
    let url = fake.url();
    // Anthropic without anthropic-version, then without max_tokens.
    let response = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", fake.key("claude"))
        .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "anthropic-version: header is required"
    );
    let response = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", fake.key("claude"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // OpenAI without messages; without a key.
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(fake.key("openai"))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Gemini with the key in the query string instead of the header.
    let response = http
        .post(format!(
            "{url}/v1beta/models/gemini-2.0-flash:generateContent?key={}",
            fake.key("gemini")
        ))
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Unsplash without a query.
    let response = http
        .get(format!("{url}/search/photos"))
        .header(
            "authorization",
            format!("Client-ID {}", fake.key("unsplash")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"errors": ["query is missing"]}));
}
