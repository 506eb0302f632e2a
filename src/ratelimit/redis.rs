//! GCRA in Redis for clustered mode: every instance counts against the same keys, with Redis's
//! own clock, so instances with skewed clocks still agree.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Decision, Rate, RateLimitError, RateLimiter};

/// KEYS[1] = key; ARGV = interval µs, burst, cost. Returns 0 when allowed, else µs to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * math.max(burst, cost)
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

/// Rate limits in Redis under `{prefix}:rl:`.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisRateLimiter {
    /// Limiter using `conn` and keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}:rl:"),
            script: Script::new(GCRA),
        }
    }

    /// Connects to `url`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        Ok(Self::new(managed_connection(url).await?, prefix))
    }
}

/// A managed Redis connection (reconnects by itself) with bounded connect and response times,
/// shared by the rate limiter, breakers and cache of one instance.
pub async fn managed_connection(url: &str) -> ::redis::RedisResult<ConnectionManager> {
    let client = ::redis::Client::open(url)?;
    let config = ::redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config).await
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, rate: Rate, cost: u32) -> Result<Decision, RateLimitError> {
        let wait_us: i64 = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(rate.interval().as_micros() as u64)
            .arg(rate.burst)
            .arg(cost)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if wait_us <= 0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_micros(wait_us as u64),
            }
        })
    }
}
