//! Provider adapters' answers: whole bodies and Server-Sent Event streams, read by the
//! adapters' own code. A provider error must never carry the API key.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::Duration;

use super::pick;
use crate::providers::{
    AdapterConfig, AnthropicAdapter, ChatResponse, GeminiAdapter, ImageResponse, NoSink,
    OpenAiAdapter, ProviderError, UnsplashAdapter,
};

/// The API key every fuzzed adapter has; errors are checked not to contain it.
pub const FUZZ_API_KEY: &str = "sk-fuzz-canary-0123456789abcdef";

/// One adapter of each kind; they make no request, only read what they are given.
struct Adapters {
    openai: OpenAiAdapter,
    anthropic: AnthropicAdapter,
    gemini: GeminiAdapter,
    unsplash: UnsplashAdapter,
}

static ADAPTERS: LazyLock<Adapters> = LazyLock::new(|| {
    let config = AdapterConfig {
        api_key: FUZZ_API_KEY.into(),
        base_url: "http://127.0.0.1:9".into(),
        default_model: "fuzz-model".into(),
        timeout: Duration::from_secs(1),
    };
    let client = reqwest::Client::new();
    Adapters {
        openai: OpenAiAdapter::openai(config.clone(), client.clone()),
        anthropic: AnthropicAdapter::new("claude", config.clone(), client.clone()),
        gemini: GeminiAdapter::new("gemini", config.clone(), client.clone()),
        unsplash: UnsplashAdapter::new("unsplash", config, client),
    }
});

/// Panics if an error leaks the key: a finding, as much as a crash.
fn check<T>(result: Result<T, ProviderError>) {
    if let Err(e) = result {
        assert!(
            !e.message.contains(FUZZ_API_KEY),
            "a provider error carries the API key"
        );
    }
}

/// `data[0]`: which answer the rest is: 0 OpenAI chat completion, 1 OpenAI image generation,
/// 2 Anthropic message, 3 Gemini generateContent, 4 Unsplash search.
pub fn provider_body(data: &[u8]) {
    let Some((variant, body)) = pick(data, 5) else {
        return;
    };
    let a = &*ADAPTERS;
    match variant {
        0 => check::<ChatResponse>(a.openai.read_completion(body)),
        1 => check::<ImageResponse>(a.openai.read_images(body, "fuzz-model".into())),
        2 => check(a.anthropic.read_message(body)),
        3 => check(a.gemini.read_answer(body)),
        _ => check(a.unsplash.read_found(body)),
    }
}

/// `data[0]`: whose stream the rest is: 0 OpenAI (and Groq, compatible servers), 1 Anthropic,
/// 2 Gemini. `data[1]`: the size of the network chunks the stream arrives in (0: one chunk),
/// so that events split across chunks are read too.
pub fn provider_stream(data: &[u8]) {
    let Some((variant, rest)) = pick(data, 3) else {
        return;
    };
    let Some((&chunk, stream)) = rest.split_first() else {
        return;
    };
    let size = if chunk == 0 {
        stream.len().max(1)
    } else {
        usize::from(chunk)
    };
    let chunks: Vec<Result<Vec<u8>, Infallible>> =
        stream.chunks(size).map(|c| Ok(c.to_vec())).collect();
    let bytes = futures::stream::iter(chunks);
    let a = &*ADAPTERS;
    // The readers await only the given stream: no runtime needed.
    let result = futures::executor::block_on(async {
        match variant {
            0 => a.openai.read_stream(bytes, &NoSink).await,
            1 => a.anthropic.read_stream(bytes, &NoSink).await,
            _ => a.gemini.read_stream(bytes, &NoSink).await,
        }
    });
    check(result);
}
