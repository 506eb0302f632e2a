//! Wiring of chat sessions: the service over the task runner's router (plus the development
//! provider when no real chat provider is configured) and the expiry job.

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::domain::TaskType;
use crate::domain::chat::ContextWindow;
use crate::execution::TaskRunner;
use crate::providers::{DEV_CHAT_PROVIDER, DevChatAdapter, Price, ProviderSpec};
use crate::ratelimit::RateLimiter;
use crate::service::chat::ChatParts;
use crate::service::{ChatExpiry, ChatService, ChatSettings};
use crate::store::EventPublisher;
use crate::store::chat::ChatStore;

/// The shared state chat runs on.
pub struct ChatBackends {
    /// Sessions and messages.
    pub store: Arc<dyn ChatStore>,
    /// The per-user message rate.
    pub limiter: Arc<dyn RateLimiter>,
    /// The bus, for live deltas.
    pub live: Arc<dyn EventPublisher>,
}

/// Builds the chat service and starts its expiry job on `tracker`; answers being written are
/// published on `live` (the bus).
pub fn chat_service(
    config: &Config,
    backends: ChatBackends,
    runner: &TaskRunner,
    owner: String,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> ChatService {
    let ChatBackends {
        store,
        limiter,
        live,
    } = backends;
    let mut router = runner.router().clone();
    let mut chain = runner.chain(TaskType::Chat, &Value::Null);
    if chain.is_empty() && config.enable_echo {
        tracing::info!(
            "no chat provider configured: chat sessions answer with the development provider `echo`"
        );
        router = router.with_provider(ProviderSpec {
            adapter: Arc::new(DevChatAdapter::default()),
            priority: u32::MAX,
            request_rate: None,
            token_rate: None,
            price: Price::default(),
            model: DEV_CHAT_PROVIDER.into(),
        });
        chain = vec![DEV_CHAT_PROVIDER.to_owned()];
    }
    let chat = &config.chat;
    // Every provider of the chain may take its whole timeout before the next is tried.
    let tries = u32::try_from(chain.len().max(1)).unwrap_or(u32::MAX);
    let turn_timeout = config.ai.request_timeout * tries + config.ai.rate_wait;
    let expiry = ChatExpiry::new(
        store.clone(),
        chat.idle_timeout,
        chat.expiry_interval,
        owner,
    );
    tracker.spawn(expiry.run(shutdown.child_token()));
    ChatService::new(ChatParts {
        store,
        router,
        chain,
        limiter,
        recorder: runner.recorder().cloned(),
        live: Some(live),
        settings: ChatSettings {
            max_messages: chat.max_messages,
            idle_timeout: chat.idle_timeout,
            user_message_rate: chat.user_message_rate,
            window: ContextWindow {
                total_tokens: chat.context_tokens,
                answer_tokens: chat.max_answer_tokens,
            },
            turn_timeout,
        },
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    })
}
