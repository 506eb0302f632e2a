//! Sending a message: one turn at a time per session (the store's turn lock), the prompt
//! trimmed to the context window, the answer streamed from the router, and the question and
//! complete answer stored together. A failure stores nothing and releases the lock; the same
//! `idempotency_key` sent again then runs the turn afresh, and once a turn is stored the key
//! returns it instead of asking again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChatError, ChatService};
use crate::clock;
use crate::domain::chat::{
    ChatMessage, ChatRole, ChatSession, IdempotencyKey, MAX_MESSAGE_CHARS, Prompt, Turn,
    build_prompt,
};
use crate::domain::{
    AttemptOutcome, Micros, StoredEvent, TaskEvent, TaskEventType, TaskId, TaskType,
};
use crate::providers::{
    CallContext, ChatMessage as ProviderMessage, ChatRequest, Role, StreamSink, TokenSink,
};
use crate::ratelimit::Decision;
use crate::store::EventPublisher;
use crate::store::chat::TurnLock;

/// How much longer the turn lock lasts than the turn may take, so a live turn never loses it.
const LOCK_MARGIN: Duration = Duration::from_secs(5);

/// What a sent message produces, in order: deltas, then exactly one of the other two.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The next piece of the answer.
    Delta(String),
    /// The stored turn: the question and the complete answer, with usage and provider.
    Answered(Box<Turn>),
    /// The answer failed; nothing was stored.
    Failed(ChatError),
}

/// The answer to a sent message, as it streams.
pub struct ChatReply {
    /// The session, as it stood when the turn began.
    pub session: ChatSession,
    /// True when the key named a turn already stored: `events` holds only that turn.
    pub replayed: bool,
    /// The answer's events. Unbounded: an answer is at most `CHAT_MAX_ANSWER_TOKENS` pieces.
    pub events: mpsc::UnboundedReceiver<ChatEvent>,
}

/// Passes the streamed pieces on and remembers whether any went out: after the first, a
/// failing provider ends the answer instead of falling back (the client has shown the text).
struct TurnSink {
    tx: mpsc::UnboundedSender<ChatEvent>,
    streamed: AtomicBool,
    /// Also tells the user's notification streams.
    live: LiveNotes,
}

impl TokenSink for TurnSink {
    fn token(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.streamed.store(true, Ordering::Release);
        let _ = self.tx.send(ChatEvent::Delta(text.to_owned()));
        self.live
            .note(TaskEventType::ChatDelta, json!({ "text": text }));
    }
}

/// Publishes a turn's live-only events to its user's notification streams.
#[derive(Clone)]
struct LiveNotes {
    publisher: Option<Arc<dyn EventPublisher>>,
    session: ChatSession,
}

impl LiveNotes {
    /// One event of `kind` with `data` plus the session and item.
    fn note(&self, kind: TaskEventType, mut data: serde_json::Value) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        data["session_id"] = json!(self.session.id);
        data["item_id"] = json!(self.session.item_id);
        publisher.publish(vec![StoredEvent::live(TaskEvent {
            task_id: TaskId::from_uuid(self.session.id.as_uuid()),
            user_id: self.session.user_id.clone(),
            kind,
            data,
            created_at: clock::now(),
        })]);
    }
}

impl StreamSink for TurnSink {
    fn restart(&self, _provider: &str) {
        // Only reached before any text went out (see `holds_fallback`): nothing to undo.
    }

    fn holds_fallback(&self) -> bool {
        self.streamed.load(Ordering::Acquire)
    }
}

impl ChatService {
    /// Sends `content` to `user`'s session `id` and streams the answer. Refusals (not found,
    /// closed, full, busy, rate limited, bad input) come back at once as errors; failures of
    /// the answer itself as the last event.
    pub async fn send_message(
        &self,
        user: &crate::domain::UserId,
        id: &str,
        content: &str,
        idempotency_key: Option<&str>,
    ) -> Result<ChatReply, ChatError> {
        let content = content.trim();
        if content.is_empty() {
            return Err(ChatError::Invalid("content must not be empty".into()));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ChatError::Invalid(format!(
                "content must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let key = match idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => IdempotencyKey::parse(k)?,
            None => IdempotencyKey::generated(),
        };
        let session = self.session(user, id).await?;
        let store = &self.inner.store;
        if let Some(turn) = store.find_turn(session.id, &key).await? {
            return Ok(replay(session, turn));
        }
        session.check_turn(self.inner.settings.max_messages)?;
        self.check_rate(user).await?;
        let holder = Uuid::now_v7();
        let now = clock::now();
        let lease = self.inner.settings.turn_timeout + LOCK_MARGIN;
        let until = now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        let session = match store.begin_turn(session.id, holder, until, now).await? {
            TurnLock::Taken(s) => s,
            TurnLock::Busy => return Err(ChatError::TurnInProgress(session.id)),
            TurnLock::Missing => return Err(ChatError::NotFound(session.id.to_string())),
        };
        // Under the lock: the session may have changed, or the same key been answered, since
        // the checks above.
        let prepared = async {
            if let Some(turn) = store.find_turn(session.id, &key).await? {
                return Ok(Err(turn));
            }
            session.check_turn(self.inner.settings.max_messages)?;
            let history = store
                .messages(session.id, 0, self.inner.settings.max_messages)
                .await?;
            let prompt = build_prompt(
                &session.item_id,
                &session.context,
                &history,
                content,
                self.inner.settings.window,
            )?;
            Ok(Ok(prompt))
        }
        .await;
        let prompt = match prepared {
            Ok(Ok(prompt)) => prompt,
            Ok(Err(turn)) => {
                store.release_turn(session.id, holder).await?;
                return Ok(replay(session, turn));
            }
            Err(e) => {
                store.release_turn(session.id, holder).await?;
                return Err(e);
            }
        };
        if prompt.dropped > 0 {
            tracing::debug!(session = %session.id, dropped = prompt.dropped, "chat history trimmed to the context window");
        }
        let (tx, events) = mpsc::unbounded_channel();
        let running = RunningTurn {
            service: self.clone(),
            session: session.clone(),
            holder,
            key,
            question: content.to_owned(),
        };
        self.inner.tracker.spawn(running.run(prompt, tx));
        Ok(ChatReply {
            session,
            replayed: false,
            events,
        })
    }

    /// The per-user message rate.
    async fn check_rate(&self, user: &crate::domain::UserId) -> Result<(), ChatError> {
        let Some(rate) = self.inner.settings.user_message_rate else {
            return Ok(());
        };
        match self
            .inner
            .limiter
            .check(&format!("chat:{user}"), rate, 1)
            .await
        {
            Ok(Decision::Allowed) => Ok(()),
            Ok(Decision::Limited { retry_after }) => Err(ChatError::RateLimited {
                rate: rate.to_string(),
                retry_after,
            }),
            Err(e) => {
                tracing::error!(error = %e, "rate limiter unavailable");
                Err(ChatError::Unavailable)
            }
        }
    }
}

/// A stored turn handed back for a repeated key.
fn replay(session: ChatSession, turn: Turn) -> ChatReply {
    let (tx, events) = mpsc::unbounded_channel();
    let _ = tx.send(ChatEvent::Answered(Box::new(turn)));
    ChatReply {
        session,
        replayed: true,
        events,
    }
}

/// One answer being written, holding the session's turn lock.
struct RunningTurn {
    service: ChatService,
    session: ChatSession,
    holder: Uuid,
    key: IdempotencyKey,
    question: String,
}

impl RunningTurn {
    /// Calls the providers, stores the turn if the answer completes, releases the lock if
    /// not, and ends `tx` with the outcome.
    async fn run(self, prompt: Prompt, tx: mpsc::UnboundedSender<ChatEvent>) {
        let inner = &self.service.inner;
        let request = ChatRequest {
            model: None,
            system: Some(prompt.system),
            messages: prompt
                .messages
                .into_iter()
                .map(|m| ProviderMessage {
                    role: match m.role {
                        ChatRole::User => Role::User,
                        ChatRole::Assistant => Role::Assistant,
                    },
                    content: m.content,
                })
                .collect(),
            max_tokens: inner.settings.window.answer_tokens,
            temperature: None,
            json_output: false,
            stream: true,
        };
        let live = LiveNotes {
            publisher: inner.live.clone(),
            session: self.session.clone(),
        };
        let sink = TurnSink {
            tx: tx.clone(),
            streamed: AtomicBool::new(false),
            live: live.clone(),
        };
        let mut ctx = CallContext::new(self.session.user_id.clone(), None, TaskType::Chat);
        if let Some(recorder) = inner.recorder.clone() {
            ctx = ctx.on_attempt(move |a| recorder.record(a.clone()));
        }
        let timeout = inner.settings.turn_timeout;
        let called = tokio::select! {
            r = tokio::time::timeout(timeout, inner.router.chat(&inner.chain, &request, &sink, &mut ctx)) => match r {
                Ok(Ok(routed)) => Ok(routed),
                Ok(Err(e)) if sink.holds_fallback() => Err(ChatError::Broken(e.message)),
                Ok(Err(e)) => Err(ChatError::from_provider(&e)),
                Err(_) => Err(ChatError::Timeout(timeout)),
            },
            _ = inner.shutdown.cancelled() => Err(ChatError::ShuttingDown),
        };
        let outcome = match called {
            Ok(routed) => {
                let cost = ctx
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| a.outcome == AttemptOutcome::Ok)
                    .map_or(Micros(0), |a| a.cost);
                let usage = routed.value.usage;
                self.store(
                    routed.value.text,
                    usage,
                    cost,
                    routed.provider,
                    routed.model,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let event = match outcome {
            Ok(turn) => {
                live.note(TaskEventType::ChatDone, json!({ "message": turn.answer }));
                ChatEvent::Answered(Box::new(turn))
            }
            Err(e) => {
                live.note(TaskEventType::ChatDone, json!({ "error": e.to_string() }));
                if let Err(release) = inner.store.release_turn(self.session.id, self.holder).await {
                    // The lock lapses on its own at its deadline.
                    tracing::warn!(error = %release, session = %self.session.id, "could not release a chat turn lock");
                }
                ChatEvent::Failed(e)
            }
        };
        let _ = tx.send(event);
    }

    /// Stores the question and the complete answer as one turn.
    async fn store(
        &self,
        text: String,
        usage: crate::providers::Usage,
        cost: Micros,
        provider: String,
        model: String,
    ) -> Result<Turn, ChatError> {
        let now = clock::now();
        let message = |role, content, tokens: u64| ChatMessage {
            id: Uuid::now_v7(),
            session_id: self.session.id,
            seq: 0,
            role,
            content,
            tokens_used: u32::try_from(tokens).unwrap_or(u32::MAX),
            provider: None,
            model: None,
            cost_micros: Micros(0),
            created_at: now,
        };
        let mut turn = Turn {
            idempotency_key: self.key.clone(),
            question: message(ChatRole::User, self.question.clone(), usage.input_tokens),
            answer: ChatMessage {
                provider: Some(provider),
                model: Some(model),
                cost_micros: cost,
                ..message(ChatRole::Assistant, text, usage.output_tokens)
            },
        };
        let stored = self
            .service
            .inner
            .store
            .finish_turn(self.holder, &turn, now)
            .await?;
        if !stored {
            return Err(ChatError::ClosedMidAnswer);
        }
        turn.question.seq = self.session.message_count + 1;
        turn.answer.seq = self.session.message_count + 2;
        Ok(turn)
    }
}
