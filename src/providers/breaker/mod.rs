//! Circuit breakers, one per provider (seed 001: open after 5 failures, stay open 60 s, then
//! 1 half-open trial at a time, close after 2 successes).
//!
//! The state machine is [`Breaker`], pure and clocked by the caller. [`MemoryBreakers`] keeps it
//! in-process (embedded mode); [`RedisBreakers`] runs the same machine in a Lua script against
//! Redis's clock, so every instance of a cluster sees one breaker per provider. Beside each
//! breaker, an operator's switch takes a provider out of service ([`Breakers::set_disabled`]).

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

mod machine;
mod memory;
mod redis;

pub use self::redis::RedisBreakers;
pub use machine::Breaker;
pub use memory::MemoryBreakers;

/// When a breaker opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// Successful trials that close a half-open breaker.
    pub success_threshold: u32,
    /// How long an open breaker rejects calls before it lets a trial through.
    pub open_for: Duration,
    /// Trials allowed at once while half-open.
    pub half_open_trials: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            success_threshold: 2,
            open_for: Duration::from_secs(60),
            half_open_trials: 1,
        }
    }
}

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    #[default]
    Closed,
    /// Calls are skipped.
    Open,
    /// A limited number of trial calls decide.
    HalfOpen,
}

impl BreakerState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// May a call go ahead?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes, normally.
    Allowed,
    /// Yes, as a half-open trial; report its outcome with `trial = true`.
    Trial,
    /// No; the breaker is open for about this long still.
    Rejected {
        /// Until the next trial may go.
        retry_in: Duration,
    },
    /// No; an operator took the provider out of service until they put it back.
    Disabled,
}

impl Permit {
    /// Whether the call may go ahead.
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed | Self::Trial)
    }
}

/// A breaker's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Successful trials while half-open.
    pub successes: u32,
    /// Taken out of service by an operator (every instance skips it).
    pub disabled: bool,
}

/// Where the breakers live.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker store unavailable: {0}")]
pub struct BreakerError(#[from] ::redis::RedisError);

/// The breakers of all providers.
#[async_trait]
pub trait Breakers: Send + Sync + 'static {
    /// Asks to call `provider`.
    async fn acquire(&self, provider: &str) -> Result<Permit, BreakerError>;
    /// Reports the outcome of a call made under `permit`.
    async fn record(
        &self,
        provider: &str,
        permit: Permit,
        success: bool,
    ) -> Result<(), BreakerError>;
    /// The breaker's state.
    async fn snapshot(&self, provider: &str) -> Result<BreakerSnapshot, BreakerError>;
    /// Closes the breaker (operator action).
    async fn reset(&self, provider: &str) -> Result<(), BreakerError>;
    /// Takes the provider out of service (`true`) or puts it back (operator action); a
    /// disabled provider's calls are refused with [`Permit::Disabled`] whatever its breaker.
    async fn set_disabled(&self, provider: &str, disabled: bool) -> Result<(), BreakerError>;
}
