//! `extract_content`'s HTML path: readability on a fetched page.

use std::sync::LazyLock;

use serde_json::Value;

use crate::execution::article;
use crate::providers::ProviderError;

/// The name of the runtime's blocking threads, where readability runs: the fuzz target tells
/// a panic there (which the service turns into an error) from one on its own thread.
pub const EXTRACT_THREAD: &str = "fuzz-extract";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .thread_name(EXTRACT_THREAD)
        .build()
        // Only fails when threads cannot be made at all: nothing to fuzz then.
        .expect("a tokio runtime")
});

/// The article of `html` as `extract_content` answers it (the page already fetched).
pub fn extract_article(html: &[u8]) -> Result<Value, ProviderError> {
    let html = String::from_utf8_lossy(html).into_owned();
    RUNTIME.block_on(article(
        "https://example.com/a",
        "https://example.com/a".into(),
        html,
    ))
}

/// The whole input is the page, read as the fetch does (lossy UTF-8).
pub fn extract_html(data: &[u8]) {
    let _ = extract_article(data);
}
