//! Circuit breakers, one per provider (seed 001: open after 5 failures, stay open 60 s, then
//! 1 half-open trial at a time, close after 2 successes).
//!
//! The state machine is [`Breaker`], pure and clocked by the caller. [`MemoryBreakers`] keeps it
//! in-process (embedded mode); [`RedisBreakers`] runs the same machine in a Lua script against
//! Redis's clock, so every instance of a cluster sees one breaker per provider.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::Serialize;

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
}

impl Permit {
    /// Whether the call may go ahead.
    pub fn is_allowed(self) -> bool {
        !matches!(self, Self::Rejected { .. })
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
}

/// One breaker's state machine; time is milliseconds on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    state: BreakerState,
    failures: u32,
    successes: u32,
    opened_at_ms: u64,
    trials: u32,
    trial_at_ms: u64,
}

impl Breaker {
    /// Asks to make a call at `now_ms`.
    pub fn acquire(&mut self, policy: &BreakerPolicy, now_ms: u64) -> Permit {
        let open_ms = policy.open_for.as_millis() as u64;
        match self.state {
            BreakerState::Closed => Permit::Allowed,
            BreakerState::Open => {
                let until = self.opened_at_ms + open_ms;
                if now_ms < until {
                    return Permit::Rejected {
                        retry_in: Duration::from_millis(until - now_ms),
                    };
                }
                self.state = BreakerState::HalfOpen;
                self.successes = 0;
                self.trials = 1;
                self.trial_at_ms = now_ms;
                Permit::Trial
            }
            BreakerState::HalfOpen => {
                // A trial whose caller died never reports; after a whole open period its slot
                // is given to the next caller.
                if self.trials >= policy.half_open_trials && now_ms < self.trial_at_ms + open_ms {
                    return Permit::Rejected {
                        retry_in: Duration::from_millis(self.trial_at_ms + open_ms - now_ms),
                    };
                }
                if self.trials >= policy.half_open_trials {
                    self.trials = 0;
                }
                self.trials += 1;
                self.trial_at_ms = now_ms;
                Permit::Trial
            }
        }
    }

    /// Reports a call's outcome at `now_ms`.
    pub fn record(&mut self, policy: &BreakerPolicy, success: bool, trial: bool, now_ms: u64) {
        match (self.state, success) {
            (BreakerState::Closed, true) => self.failures = 0,
            (BreakerState::Closed, false) => {
                self.failures += 1;
                if self.failures >= policy.failure_threshold {
                    self.open(now_ms);
                }
            }
            (BreakerState::HalfOpen, true) if trial => {
                self.trials = self.trials.saturating_sub(1);
                self.successes += 1;
                if self.successes >= policy.success_threshold {
                    *self = Self::default();
                }
            }
            (BreakerState::HalfOpen, false) if trial => self.open(now_ms),
            // Late answers of calls let through before the breaker opened change nothing.
            _ => {}
        }
    }

    fn open(&mut self, now_ms: u64) {
        *self = Self {
            state: BreakerState::Open,
            opened_at_ms: now_ms,
            ..Self::default()
        };
    }

    /// The state as shown to operators.
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state,
            failures: self.failures,
            successes: self.successes,
        }
    }
}

/// Where the breakers live.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker store unavailable: {0}")]
pub struct BreakerError(#[from] redis::RedisError);

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
}

/// In-process breakers for embedded mode.
#[derive(Debug, Default)]
pub struct MemoryBreakers {
    policy: BreakerPolicy,
    breakers: Mutex<HashMap<String, Breaker>>,
    epoch: Option<std::time::Instant>,
}

impl MemoryBreakers {
    /// Breakers following `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            breakers: Mutex::default(),
            epoch: Some(std::time::Instant::now()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut Breaker, u64) -> T) -> T {
        let now = self.now_ms();
        let mut map = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(provider.to_owned()).or_default(), now)
    }
}

#[async_trait]
impl Breakers for MemoryBreakers {
    async fn acquire(&self, provider: &str) -> Result<Permit, BreakerError> {
        Ok(self.with(provider, |b, now| b.acquire(&self.policy, now)))
    }

    async fn record(
        &self,
        provider: &str,
        permit: Permit,
        success: bool,
    ) -> Result<(), BreakerError> {
        let trial = permit == Permit::Trial;
        self.with(provider, |b, now| {
            b.record(&self.policy, success, trial, now)
        });
        Ok(())
    }

    async fn snapshot(&self, provider: &str) -> Result<BreakerSnapshot, BreakerError> {
        Ok(self.with(provider, |b, _| b.snapshot()))
    }

    async fn reset(&self, provider: &str) -> Result<(), BreakerError> {
        self.with(provider, |b, _| *b = Breaker::default());
        Ok(())
    }
}

/// The state machine of [`Breaker`] in Lua, on a hash per provider, clocked by Redis.
/// Fields: s (0 closed, 1 open, 2 half-open), f, ok, opened, trials, trial_at.
/// ARGV[1] = op (acquire | success | failure | trial_success | trial_failure),
/// ARGV[2..5] = failure threshold, success threshold, open ms, half-open trials.
/// acquire returns {kind, ms, failures}: kind 0 allowed, 1 trial, 2 rejected (ms until retry).
/// Every other op returns the state before it: {s, f, ok}.
const BREAKER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local fail_max, ok_max = tonumber(ARGV[2]), tonumber(ARGV[3])
local open_ms, trial_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 's', 'f', 'ok', 'opened', 'trials', 'trial_at')
local s, f, ok = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
local opened, trials, trial_at = tonumber(h[4] or '0'), tonumber(h[5] or '0'), tonumber(h[6] or '0')
local function open()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', 1, 'opened', now)
end
if op == 'acquire' then
  if s == 0 then return {0, 0, f} end
  if s == 1 then
    if now < opened + open_ms then return {2, opened + open_ms - now} end
    redis.call('HSET', KEYS[1], 's', 2, 'ok', 0, 'trials', 1, 'trial_at', now)
    return {1, 0}
  end
  if trials >= trial_max and now < trial_at + open_ms then return {2, trial_at + open_ms - now} end
  if trials >= trial_max then trials = 0 end
  redis.call('HSET', KEYS[1], 'trials', trials + 1, 'trial_at', now)
  return {1, 0}
elseif op == 'success' then
  if s == 0 and f > 0 then redis.call('HSET', KEYS[1], 'f', 0) end
elseif op == 'failure' then
  if s == 0 then
    if f + 1 >= fail_max then open() else redis.call('HSET', KEYS[1], 'f', f + 1) end
  end
elseif op == 'trial_success' then
  if s == 2 then
    if ok + 1 >= ok_max then redis.call('DEL', KEYS[1])
    else redis.call('HSET', KEYS[1], 'ok', ok + 1, 'trials', math.max(trials - 1, 0)) end
  end
elseif op == 'trial_failure' then
  if s == 2 then open() end
end
return {s, f, ok}
"#;

/// How long a closed breaker's state, as last read from Redis, is trusted without asking again.
pub const BREAKER_SYNC: Duration = Duration::from_millis(250);

/// What this instance last learned of a breaker from Redis.
#[derive(Debug, Clone, Copy)]
struct View {
    closed: bool,
    failures: u32,
    at: std::time::Instant,
}

/// Breakers shared by every instance through Redis, under `{prefix}:breaker:{provider}`.
///
/// Redis decides every transition (one Lua script, Redis's clock), but a healthy provider does
/// not cost two round trips per call: while the last reply (at most [`BREAKER_SYNC`] old) said
/// closed, calls go ahead without asking, and a success is not written when there were no
/// failures to clear. Failures, trials and open breakers always go to Redis. So a breaker that
/// another instance opened is seen here within `BREAKER_SYNC`, and this instance's own failures
/// count at once.
#[derive(Clone)]
pub struct RedisBreakers {
    conn: ConnectionManager,
    prefix: String,
    policy: BreakerPolicy,
    script: Script,
    sync: Duration,
    views: std::sync::Arc<Mutex<HashMap<String, View>>>,
}

impl RedisBreakers {
    /// Breakers following `policy`, stored under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, policy: BreakerPolicy) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}:breaker:"),
            policy,
            script: Script::new(BREAKER),
            sync: BREAKER_SYNC,
            views: std::sync::Arc::default(),
        }
    }

    /// Trusts a closed state read from Redis for `sync` (zero: ask on every call).
    pub fn with_sync(mut self, sync: Duration) -> Self {
        self.sync = sync;
        self
    }

    fn view(&self, provider: &str) -> Option<View> {
        let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.get(provider).copied()
    }

    fn learn(&self, provider: &str, closed: bool, failures: u32) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        let view = View {
            closed,
            failures,
            at: std::time::Instant::now(),
        };
        match views.get_mut(provider) {
            Some(v) => *v = view,
            None => {
                views.insert(provider.to_owned(), view);
            }
        }
    }

    fn forget(&self, provider: &str) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.remove(provider);
    }

    async fn run(&self, provider: &str, op: &str) -> Result<Vec<i64>, BreakerError> {
        Ok(self
            .script
            .key(format!("{}{provider}", self.prefix))
            .arg(op)
            .arg(self.policy.failure_threshold)
            .arg(self.policy.success_threshold)
            .arg(self.policy.open_for.as_millis() as u64)
            .arg(self.policy.half_open_trials)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }
}

#[async_trait]
impl Breakers for RedisBreakers {
    async fn acquire(&self, provider: &str) -> Result<Permit, BreakerError> {
        if self
            .view(provider)
            .is_some_and(|v| v.closed && v.at.elapsed() < self.sync)
        {
            return Ok(Permit::Allowed);
        }
        let r = self.run(provider, "acquire").await?;
        Ok(match (r.first(), r.get(1)) {
            (Some(1), _) => {
                self.forget(provider);
                Permit::Trial
            }
            (Some(2), Some(ms)) => {
                self.forget(provider);
                Permit::Rejected {
                    retry_in: Duration::from_millis((*ms).max(0) as u64),
                }
            }
            _ => {
                let failures = r.get(2).copied().unwrap_or(0).max(0) as u32;
                self.learn(provider, true, failures);
                Permit::Allowed
            }
        })
    }

    async fn record(
        &self,
        provider: &str,
        permit: Permit,
        success: bool,
    ) -> Result<(), BreakerError> {
        let trial = permit == Permit::Trial;
        if !trial
            && success
            && self
                .view(provider)
                .is_some_and(|v| v.closed && v.failures == 0)
        {
            // Nothing to clear: a closed breaker with no failures stays as it is.
            return Ok(());
        }
        let op = match (trial, success) {
            (true, true) => "trial_success",
            (true, false) => "trial_failure",
            (false, true) => "success",
            (false, false) => "failure",
        };
        let before = self.run(provider, op).await?;
        let state = before.first().copied().unwrap_or(0);
        let failures = before.get(1).copied().unwrap_or(0).max(0) as u32;
        match (state, trial, success) {
            // Closed before a plain outcome: it counted (or cleared) the failures.
            (0, false, true) => self.learn(provider, true, 0),
            (0, false, false) if failures + 1 < self.policy.failure_threshold => {
                self.learn(provider, true, failures + 1)
            }
            // It may have opened or closed: ask Redis on the next call.
            _ => self.forget(provider),
        }
        Ok(())
    }

    async fn snapshot(&self, provider: &str) -> Result<BreakerSnapshot, BreakerError> {
        let r = self.run(provider, "peek").await?;
        let mut snap = BreakerSnapshot {
            state: BreakerState::from_code(r.first().copied().unwrap_or(0)),
            failures: r.get(1).copied().unwrap_or(0) as u32,
            successes: r.get(2).copied().unwrap_or(0) as u32,
        };
        if snap.state != BreakerState::Closed {
            snap.failures = 0;
        }
        Ok(snap)
    }

    async fn reset(&self, provider: &str) -> Result<(), BreakerError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(format!("{}{provider}", self.prefix))
            .query_async::<()>(&mut conn)
            .await?;
        self.forget(provider);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failure_threshold: 5,
        success_threshold: 2,
        open_for: Duration::from_secs(60),
        half_open_trials: 1,
    };

    #[test]
    fn opens_after_five_consecutive_failures() {
        let mut b = Breaker::default();
        for _ in 0..4 {
            assert_eq!(b.acquire(&POLICY, 0), Permit::Allowed);
            b.record(&POLICY, false, false, 0);
        }
        b.record(&POLICY, true, false, 0);
        for _ in 0..4 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.snapshot().state, BreakerState::Closed, "success resets");
        b.record(&POLICY, false, false, 1_000);
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert_eq!(
            b.acquire(&POLICY, 31_000),
            Permit::Rejected {
                retry_in: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn one_trial_after_the_open_period_then_two_successes_close() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        assert!(
            !b.acquire(&POLICY, 60_001).is_allowed(),
            "one trial at a time"
        );
        b.record(&POLICY, true, true, 60_100);
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        assert_eq!(b.acquire(&POLICY, 60_200), Permit::Trial);
        b.record(&POLICY, true, true, 60_300);
        assert_eq!(b.snapshot().state, BreakerState::Closed);
        assert_eq!(b.acquire(&POLICY, 60_400), Permit::Allowed);
    }

    #[test]
    fn a_failed_trial_opens_again() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        b.record(&POLICY, false, true, 60_500);
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert!(!b.acquire(&POLICY, 61_000).is_allowed());
        assert_eq!(b.acquire(&POLICY, 120_500), Permit::Trial);
    }

    #[test]
    fn a_trial_that_never_reports_frees_its_slot_after_an_open_period() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        assert!(!b.acquire(&POLICY, 100_000).is_allowed());
        assert_eq!(b.acquire(&POLICY, 120_000), Permit::Trial);
    }

    #[test]
    fn late_answers_of_calls_made_before_opening_change_nothing() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        b.record(&POLICY, true, false, 10);
        b.record(&POLICY, false, false, 10);
        assert_eq!(
            b.acquire(&POLICY, 59_999),
            Permit::Rejected {
                retry_in: Duration::from_millis(1)
            }
        );
    }
}
