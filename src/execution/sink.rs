//! Collects a streamed answer's pieces as they arrive, for TaskProgress events.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::providers::{StreamSink, TokenSink};

#[derive(Debug, Default)]
struct State {
    /// Text received since the last drain.
    pending: String,
    /// Pieces received in this answer.
    pieces: u64,
    /// Set when a broken stream was abandoned for another provider since the last drain.
    restarted_from: Option<String>,
}

/// Buffers streamed text between progress events; a fallback to another provider starts the
/// answer over and says so in the next event.
#[derive(Debug, Default)]
pub struct TokenCollector {
    state: Mutex<State>,
}

impl TokenCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data of the next TaskProgress event, if anything arrived since the last one:
    /// `{"tokens": text, "pieces": n}`, with `"restart": true, "abandoned": provider` first when
    /// the answer started over.
    pub fn drain(&self) -> Option<Value> {
        let mut s = self.lock();
        if s.pending.is_empty() && s.restarted_from.is_none() {
            return None;
        }
        let mut data = json!({
            "tokens": std::mem::take(&mut s.pending),
            "pieces": s.pieces,
        });
        if let Some(provider) = s.restarted_from.take() {
            data["restart"] = json!(true);
            data["abandoned"] = json!(provider);
        }
        Some(data)
    }
}

impl TokenSink for TokenCollector {
    fn token(&self, text: &str) {
        let mut s = self.lock();
        s.pending.push_str(text);
        s.pieces += 1;
    }
}

impl StreamSink for TokenCollector {
    fn restart(&self, provider: &str) {
        let mut s = self.lock();
        s.pending.clear();
        s.pieces = 0;
        s.restarted_from = Some(provider.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_what_arrived_and_flags_a_restart() {
        let c = TokenCollector::default();
        assert_eq!(c.drain(), None);
        c.token("Hel");
        c.token("lo");
        assert_eq!(c.drain(), Some(json!({"tokens": "Hello", "pieces": 2})));
        assert_eq!(c.drain(), None);
        c.token("broken");
        c.restart("groq");
        c.token("New");
        assert_eq!(
            c.drain(),
            Some(json!({"tokens": "New", "pieces": 1, "restart": true, "abandoned": "groq"}))
        );
    }
}
