//! Settings of chat sessions, from the environment.

use std::time::Duration;

use super::Reader;
use crate::ratelimit::Rate;

/// How chat sessions behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// `CHAT_IDLE_TIMEOUT` (default 30m): sessions idle longer are expired.
    pub idle_timeout: Duration,
    /// `CHAT_EXPIRY_INTERVAL` (default 1m, at most the idle timeout): how often the expiry job
    /// runs (on one instance at a time).
    pub expiry_interval: Duration,
    /// `CHAT_MAX_MESSAGES` (default 100): messages one session holds at most (seed 000's
    /// MaxMessagesReached).
    pub max_messages: u32,
    /// `CHAT_USER_MESSAGE_RATE` (default `20/min`; `off` for none): messages one user may
    /// send, across every instance.
    pub user_message_rate: Option<Rate>,
    /// `CHAT_CONTEXT_TOKENS` (default 8000): the model's context window the prompt is trimmed
    /// to, answer included.
    pub context_tokens: u32,
    /// `CHAT_MAX_ANSWER_TOKENS` (default 1024): the longest answer asked for, kept free in the
    /// window.
    pub max_answer_tokens: u32,
}

impl Reader<'_> {
    pub(super) fn chat(&mut self) -> ChatConfig {
        let idle_timeout = self.duration(
            "CHAT_IDLE_TIMEOUT",
            Duration::from_secs(30 * 60),
            Duration::from_millis(100),
        );
        let expiry_interval = self
            .duration(
                "CHAT_EXPIRY_INTERVAL",
                Duration::from_secs(60),
                Duration::from_millis(50),
            )
            .min(idle_timeout);
        let max_messages = self.range("CHAT_MAX_MESSAGES", 100u32, 2, 10_000);
        let user_message_rate = match self.raw("CHAT_USER_MESSAGE_RATE") {
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            _ => self.optional("CHAT_USER_MESSAGE_RATE", Some("20/min")),
        };
        let context_tokens = self.range("CHAT_CONTEXT_TOKENS", 8000u32, 256, 10_000_000);
        let max_answer_tokens = self.range("CHAT_MAX_ANSWER_TOKENS", 1024u32, 16, 1_000_000);
        if max_answer_tokens >= context_tokens {
            self.problem(
                "CHAT_MAX_ANSWER_TOKENS",
                format!(
                    "{max_answer_tokens} leaves no room for a prompt in CHAT_CONTEXT_TOKENS={context_tokens}"
                ),
            );
        }
        ChatConfig {
            idle_timeout,
            expiry_interval,
            max_messages,
            user_message_rate,
            context_tokens,
            max_answer_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = config(&[]).unwrap().chat;
        assert_eq!(c.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.max_messages, 100);
        assert_eq!(c.user_message_rate.unwrap().count, 20);
        let c = config(&[
            ("CHAT_IDLE_TIMEOUT", "2s"),
            ("CHAT_USER_MESSAGE_RATE", "off"),
            ("CHAT_MAX_MESSAGES", "4"),
        ])
        .unwrap()
        .chat;
        assert_eq!(c.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.expiry_interval, Duration::from_secs(2));
        assert_eq!(c.user_message_rate, None);
        assert_eq!(c.max_messages, 4);
    }

    #[test]
    fn bad_values_are_reported_together() {
        let err = config(&[
            ("CHAT_IDLE_TIMEOUT", "soon"),
            ("CHAT_CONTEXT_TOKENS", "1000"),
            ("CHAT_MAX_ANSWER_TOKENS", "2000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("CHAT_IDLE_TIMEOUT"), "{err}");
        assert!(err.contains("CHAT_MAX_ANSWER_TOKENS"), "{err}");
    }
}
