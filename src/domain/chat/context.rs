//! What the model is sent for one turn: a system prompt carrying the item and its context,
//! then as much of the conversation as fits the model's context window, then the question.
//!
//! Trimming rule: the system prompt (with the item context) and the new question are always
//! kept; earlier turns are kept newest first while they fit, so the oldest are dropped first,
//! a whole turn (question and answer) at a time, so the conversation the model sees always
//! starts with a question. Sizes are estimated at 4 characters per token (plus a few tokens
//! of framing per message), the same estimate the router reserves budget with.

use serde_json::Value;

use super::{ChatMessage, ChatRole, ItemId};
use crate::domain::DomainError;

/// Framing tokens counted per message (role markers and separators).
const PER_MESSAGE_TOKENS: u32 = 4;

/// A model's context window, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextWindow {
    /// Everything the model takes: prompt plus answer (`CHAT_CONTEXT_TOKENS`).
    pub total_tokens: u32,
    /// Kept free for the answer (`CHAT_MAX_ANSWER_TOKENS`).
    pub answer_tokens: u32,
}

/// One message of the conversation as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTurn {
    /// Who said it.
    pub role: ChatRole,
    /// What was said.
    pub content: String,
}

/// The whole prompt of one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Instructions, the item and its context.
    pub system: String,
    /// The kept history, oldest first, then the question.
    pub messages: Vec<PromptTurn>,
    /// Earlier messages left out to fit the window.
    pub dropped: usize,
    /// The prompt's estimated size.
    pub estimated_tokens: u32,
}

/// Estimated tokens of `text` as one message.
pub fn estimate_tokens(text: &str) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).saturating_add(PER_MESSAGE_TOKENS)
}

/// The system prompt for a conversation about `item` with `context`.
fn system_prompt(item: &ItemId, context: &Value) -> String {
    let mut s = format!(
        "You are a helpful tutor in a deep-dive conversation about one item. Answer the \
         user's questions about it concisely and accurately.\nItem: {item}"
    );
    if !context.is_null() {
        s.push_str("\nItem context (JSON): ");
        s.push_str(&context.to_string());
    }
    s
}

/// Builds the prompt for `question` after `history` (stored messages, oldest first), within
/// `window`. Fails only when the system prompt and the question alone do not fit.
pub fn build_prompt(
    item: &ItemId,
    context: &Value,
    history: &[ChatMessage],
    question: &str,
    window: ContextWindow,
) -> Result<Prompt, DomainError> {
    let system = system_prompt(item, context);
    let budget = window.total_tokens.saturating_sub(window.answer_tokens);
    let fixed = estimate_tokens(&system).saturating_add(estimate_tokens(question));
    if fixed > budget {
        return Err(DomainError::Invalid(format!(
            "the question and the item context need about {fixed} tokens, more than the \
             {budget} the model's context window leaves for a prompt; ask a shorter question"
        )));
    }
    let mut left = budget - fixed;
    // Whole turns, newest first: a turn is a question and the answers that follow it.
    let mut turns: Vec<&[ChatMessage]> = Vec::new();
    let mut end = history.len();
    for start in (0..history.len()).rev() {
        if history[start].role == ChatRole::User {
            turns.push(&history[start..end]);
            end = start;
        }
    }
    let mut kept: Vec<&[ChatMessage]> = Vec::new();
    for turn in turns {
        let size: u32 = turn.iter().map(|m| estimate_tokens(&m.content)).sum();
        if size > left {
            break;
        }
        left -= size;
        kept.push(turn);
    }
    let kept_count: usize = kept.iter().map(|t| t.len()).sum();
    let mut messages: Vec<PromptTurn> = kept
        .into_iter()
        .rev()
        .flatten()
        .map(|m| PromptTurn {
            role: m.role,
            content: m.content.clone(),
        })
        .collect();
    messages.push(PromptTurn {
        role: ChatRole::User,
        content: question.to_owned(),
    });
    Ok(Prompt {
        system,
        messages,
        dropped: history.len() - kept_count,
        estimated_tokens: budget - left,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::domain::Micros;
    use crate::domain::chat::ChatSessionId;

    fn history(turns: usize, chars: usize) -> Vec<ChatMessage> {
        let session = ChatSessionId::new();
        (0..turns * 2)
            .map(|i| ChatMessage {
                id: uuid::Uuid::now_v7(),
                session_id: session,
                seq: i as u32 + 1,
                role: if i % 2 == 0 {
                    ChatRole::User
                } else {
                    ChatRole::Assistant
                },
                content: format!("{i:03}{}", "x".repeat(chars - 3)),
                tokens_used: 0,
                provider: None,
                model: None,
                cost_micros: Micros(0),
                created_at: Utc::now(),
            })
            .collect()
    }

    #[test]
    fn everything_is_kept_when_it_fits() {
        let item = ItemId::parse("apple").unwrap();
        let h = history(3, 40);
        let window = ContextWindow {
            total_tokens: 10_000,
            answer_tokens: 1_000,
        };
        let p = build_prompt(&item, &json!({"lang": "en"}), &h, "why?", window).unwrap();
        assert_eq!(p.dropped, 0);
        assert_eq!(p.messages.len(), 7);
        assert!(p.system.contains("apple") && p.system.contains("\"lang\":\"en\""));
        assert_eq!(p.messages.last().unwrap().content, "why?");
    }

    #[test]
    fn the_oldest_turns_are_dropped_first_and_whole() {
        let item = ItemId::parse("apple").unwrap();
        // Each message is 400 chars: 104 tokens; a turn 208.
        let h = history(5, 400);
        let system = estimate_tokens(&system_prompt(&item, &Value::Null));
        let question = estimate_tokens("q");
        let window = ContextWindow {
            total_tokens: system + question + 2 * 208 + 50 + 100,
            answer_tokens: 100,
        };
        let p = build_prompt(&item, &Value::Null, &h, "q", window).unwrap();
        assert_eq!(p.dropped, 6, "three oldest turns dropped");
        assert_eq!(p.messages.len(), 5);
        assert!(
            p.messages[0].content.starts_with("006"),
            "{:?}",
            p.messages[0]
        );
        assert_eq!(p.messages[0].role, ChatRole::User);
        assert!(p.estimated_tokens <= window.total_tokens - window.answer_tokens);
    }

    #[test]
    fn a_question_that_cannot_fit_is_refused() {
        let item = ItemId::parse("apple").unwrap();
        let window = ContextWindow {
            total_tokens: 120,
            answer_tokens: 100,
        };
        let err = build_prompt(&item, &Value::Null, &[], &"q".repeat(400), window).unwrap_err();
        assert!(err.to_string().contains("context window"), "{err}");
    }
}
