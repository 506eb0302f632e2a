//! The development chat provider, `echo`: answers a chat by streaming back what it was asked,
//! word by word, for free. It lets a newcomer try chat sessions with no provider key; the chat
//! service adds it to its chain only when no real chat provider is configured and `echo` is
//! enabled (`ENABLE_ECHO`, on by default in embedded mode). Tasks never route to it.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    Adapter, Capability, ChatRequest, ChatResponse, ProviderError, Role, TokenSink, Usage,
};

/// Our name for it, recorded on answers and usage rows.
pub const DEV_CHAT_PROVIDER: &str = "echo";

/// Streams an answer made of the question, one word every `word_delay`.
#[derive(Debug, Clone, Copy)]
pub struct DevChatAdapter {
    /// Pause before each word, so the answer visibly streams.
    pub word_delay: Duration,
}

impl Default for DevChatAdapter {
    fn default() -> Self {
        Self {
            word_delay: Duration::from_millis(15),
        }
    }
}

impl DevChatAdapter {
    /// The answer to `request`.
    fn answer(request: &ChatRequest) -> String {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let earlier = request.messages.len().saturating_sub(1);
        format!(
            "You asked: \"{}\". This answer comes from the built-in development provider \
             (echo), which repeats your question; it saw {earlier} earlier messages of this \
             conversation. Set a provider key such as GROQ_API_KEY for real answers.",
            question.trim()
        )
    }
}

#[async_trait]
impl Adapter for DevChatAdapter {
    fn name(&self) -> &str {
        DEV_CHAT_PROVIDER
    }

    fn capabilities(&self) -> &[Capability] {
        &[Capability::Chat]
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        sink: &dyn TokenSink,
    ) -> Result<ChatResponse, ProviderError> {
        let text = Self::answer(request);
        let mut words = 0u64;
        if request.stream {
            for (i, word) in text.split(' ').enumerate() {
                if !self.word_delay.is_zero() {
                    tokio::time::sleep(self.word_delay).await;
                }
                let piece = if i == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                };
                sink.token(&piece);
                words += 1;
            }
        } else {
            words = text.split(' ').count() as u64;
        }
        let prompt_chars: usize = request.system.as_deref().map_or(0, str::len)
            + request
                .messages
                .iter()
                .map(|m| m.content.len())
                .sum::<usize>();
        Ok(ChatResponse {
            text,
            model: DEV_CHAT_PROVIDER.into(),
            usage: Usage {
                input_tokens: (prompt_chars as u64).div_ceil(4),
                output_tokens: words,
            },
            finish_reason: Some("stop".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::providers::ChatMessage;

    #[derive(Default)]
    struct Pieces(Mutex<Vec<String>>);

    impl TokenSink for Pieces {
        fn token(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn streams_the_question_back_word_by_word() {
        let request = ChatRequest {
            model: None,
            system: Some("s".into()),
            messages: vec![ChatMessage::user("what is it?")],
            max_tokens: 100,
            temperature: None,
            json_output: false,
            stream: true,
        };
        let pieces = Pieces::default();
        let r = DevChatAdapter::default()
            .chat(&request, &pieces)
            .await
            .unwrap();
        let pieces = pieces.0.into_inner().unwrap();
        assert!(pieces.len() > 5);
        assert_eq!(pieces.concat(), r.text);
        assert!(r.text.contains("what is it?"));
        assert_eq!(r.usage.output_tokens, pieces.len() as u64);
    }
}
