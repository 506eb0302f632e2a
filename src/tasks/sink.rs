//! Collects a streamed answer's pieces while it arrives.

use std::sync::Mutex;

use crate::providers::{StreamSink, TokenSink};

/// Keeps the text streamed so far and how many pieces came; a fallback to another provider
/// starts it over.
#[derive(Debug, Default)]
pub struct TokenCollector {
    state: Mutex<(String, u64)>,
}

impl TokenCollector {
    /// Text and piece count so far.
    pub fn snapshot(&self) -> (String, u64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the text received since the last call (for progress events).
    pub fn take(&self) -> String {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).0)
    }
}

impl TokenSink for TokenCollector {
    fn token(&self, text: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.push_str(text);
        s.1 += 1;
    }
}

impl StreamSink for TokenCollector {
    fn restart(&self, provider: &str) {
        tracing::debug!(provider, "stream broke; falling back");
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
    }
}
