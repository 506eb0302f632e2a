//! Deep-dive chat sessions (seeds 000 and 001): one user's conversation about one item, its
//! messages, the rules for taking a new turn, and how a conversation is trimmed to fit a
//! model's context window.
//!
//! Pure: no I/O, no clock. Callers pass `now` in.

mod context;
mod message;
mod page;
mod session;

pub use context::{ContextWindow, Prompt, PromptTurn, build_prompt, estimate_tokens};
pub use message::{ChatMessage, ChatRole, IdempotencyKey, MAX_MESSAGE_CHARS, Turn};
pub use page::{SessionCursor, SessionPageRequest};
pub use session::{ChatSession, ChatSessionId, ChatStatus, ItemId, MAX_CONTEXT_BYTES, TurnRefusal};
