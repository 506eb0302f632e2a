//! Breakers shared by every instance through Redis: the same state machine in Lua, on
//! Redis's clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::*;

/// The state machine of [`Breaker`] in Lua, on a hash per provider, clocked by Redis.
/// Fields: s (0 closed, 1 open, 2 half-open), f, ok, opened, trials, trial_at.
/// ARGV[1] = op (acquire | success | failure | trial_success | trial_failure),
/// ARGV[2..5] = failure threshold, success threshold, open ms, half-open trials.
/// acquire returns {kind, ms, failures}: kind 0 allowed, 1 trial, 2 rejected (ms until retry),
/// 3 disabled (KEYS[2], the operator's switch, exists). Every other op returns the state
/// before it: {s, f, ok, disabled}.
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
local off = redis.call('EXISTS', KEYS[2])
if op == 'acquire' then
  if off == 1 then return {3, 0} end
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
return {s, f, ok, off}
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

/// Breakers shared by every instance through Redis, under `{prefix}:breaker:{provider}`, and
/// the operators' switches under `{prefix}:provider_disabled:{provider}`.
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
    /// Where the operators' switches are kept.
    disabled_prefix: String,
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
            disabled_prefix: format!("{prefix}:provider_disabled:"),
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
            .key(format!("{}{provider}", self.disabled_prefix))
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
            (Some(3), _) => {
                self.forget(provider);
                Permit::Disabled
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
            disabled: r.get(3).copied().unwrap_or(0) == 1,
        };
        if snap.state != BreakerState::Closed {
            snap.failures = 0;
        }
        Ok(snap)
    }

    async fn reset(&self, provider: &str) -> Result<(), BreakerError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("DEL")
            .arg(format!("{}{provider}", self.prefix))
            .query_async::<()>(&mut conn)
            .await?;
        self.forget(provider);
        Ok(())
    }

    async fn set_disabled(&self, provider: &str, disabled: bool) -> Result<(), BreakerError> {
        let mut conn = self.conn.clone();
        let key = format!("{}{provider}", self.disabled_prefix);
        if disabled {
            ::redis::cmd("SET")
                .arg(key)
                .arg(1)
                .query_async::<()>(&mut conn)
                .await?;
        } else {
            ::redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut conn)
                .await?;
        }
        // This instance at once; the others within `BREAKER_SYNC`, when their trusted view of
        // a closed breaker runs out and they ask Redis again.
        self.forget(provider);
        Ok(())
    }
}
