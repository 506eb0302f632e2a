//! Redis queue for clustered mode: every instance pushes to and pops from the same keys.
//!
//! Keys, under the configured prefix:
//! - `{prefix}:q:ready`: sorted set of task ids; score `(10 - priority) * 2^44 + seq`, so the
//!   lowest score is the highest priority and, within it, the oldest push.
//! - `{prefix}:q:seq`: the push sequence counter.
//! - `{prefix}:q:delayed`: sorted set of `priority:id` by due time (unix ms).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncCommands, AsyncConnectionConfig, Script};

use super::{Promoted, QueueEntry, QueueError, TaskQueue};
use crate::domain::{Priority, TaskId};

/// Adds ids with a fresh sequence number each; `NX` keeps an already-queued id in its place.
const PUSH: &str = r#"
local n = #ARGV / 2
local seq = redis.call('INCRBY', KEYS[2], n) - n
for i = 1, n do
  local prio = tonumber(ARGV[2 * i])
  seq = seq + 1
  redis.call('ZADD', KEYS[1], 'NX', (10 - prio) * 17592186044416 + seq, ARGV[2 * i - 1])
end
return n
"#;

/// Moves up to ARGV[2] due delayed entries to the ready set; returns {moved, next due or -1}.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local prio = tonumber(string.sub(member, 1, sep - 1))
  local id = string.sub(member, sep + 1)
  local seq = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], 'NX', (10 - prio) * 17592186044416 + seq, id)
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
"#;

/// Most entries the promote script moves per call; `promote_due` calls it until none are due.
const PROMOTE_LIMIT: i64 = 1000;

/// Connections for `BZMPOP`, which blocks the connection it runs on: each waiting pop gets a
/// connection of its own. A pop that is abandoned mid-wait drops its connection, and Redis
/// cancels a blocked command when its client disconnects, so no id is popped into the void.
struct BlockingConnections {
    client: redis::Client,
    idle: std::sync::Mutex<Vec<MultiplexedConnection>>,
}

impl BlockingConnections {
    /// Idle connections kept for reuse.
    const MAX_IDLE: usize = 8;

    async fn take(&self) -> Result<MultiplexedConnection, QueueError> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RedisQueue::MAX_WAIT + Duration::from_secs(2)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn give_back(&self, c: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < Self::MAX_IDLE {
            idle.push(c);
        }
    }
}

/// A priority queue in Redis.
#[derive(Clone)]
pub struct RedisQueue {
    /// Shared, auto-reconnecting connection for quick commands.
    conn: ConnectionManager,
    /// Connections for blocking pops.
    blocking: std::sync::Arc<BlockingConnections>,
    ready_key: String,
    seq_key: String,
    delayed_key: String,
    push_script: Script,
    promote_script: Script,
}

impl RedisQueue {
    /// Longest a single `pop` blocks; the blocking connection's response timeout exceeds it.
    pub const MAX_WAIT: Duration = Duration::from_secs(5);

    /// Connects to `url`, using keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)?;
        let quick = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client.clone(), quick).await?;
        let blocking = std::sync::Arc::new(BlockingConnections {
            client,
            idle: std::sync::Mutex::new(Vec::new()),
        });
        Ok(Self {
            conn,
            blocking,
            ready_key: format!("{prefix}:q:ready"),
            seq_key: format!("{prefix}:q:seq"),
            delayed_key: format!("{prefix}:q:delayed"),
            push_script: Script::new(PUSH),
            promote_script: Script::new(PROMOTE),
        })
    }
}

fn delayed_member(priority: Priority, id: TaskId) -> String {
    format!("{}:{id}", priority.value())
}

/// The delayed-set member of `id` under every priority.
fn all_delayed_members(id: TaskId) -> Vec<String> {
    (1..=10)
        .filter_map(|p| Priority::new(p).ok())
        .map(|p| delayed_member(p, id))
        .collect()
}

#[async_trait]
impl TaskQueue for RedisQueue {
    async fn push(&self, entries: &[QueueEntry]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inv = self.push_script.prepare_invoke();
        inv.key(&self.ready_key).key(&self.seq_key);
        for e in entries {
            inv.arg(e.task_id.to_string()).arg(e.priority.value());
        }
        let _: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn push_delayed(
        &self,
        entries: &[QueueEntry],
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let score = due.timestamp_millis() as f64;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for e in entries {
            // One delayed entry per id, whatever priority an earlier push gave it.
            pipe.zrem(&self.delayed_key, all_delayed_members(e.task_id))
                .ignore();
            pipe.zadd(
                &self.delayed_key,
                delayed_member(e.priority, e.task_id),
                score,
            )
            .ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError> {
        let mut total = 0;
        loop {
            // Bounded per call so one script never blocks Redis for long.
            let (moved, next): (i64, i64) = self
                .promote_script
                .key(&self.delayed_key)
                .key(&self.ready_key)
                .key(&self.seq_key)
                .arg(now.timestamp_millis())
                .arg(PROMOTE_LIMIT)
                .invoke_async(&mut self.conn.clone())
                .await?;
            total += usize::try_from(moved).unwrap_or(0);
            if moved < PROMOTE_LIMIT {
                // Millisecond precision: delayed entries are scored in unix ms.
                let next_due = if next < 0 {
                    None
                } else {
                    DateTime::from_timestamp_millis(next)
                };
                return Ok(Promoted {
                    moved: total,
                    next_due,
                });
            }
        }
    }

    async fn pop(&self, max: usize, wait: Duration) -> Result<Vec<TaskId>, QueueError> {
        if max == 0 {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let wait = wait.min(Self::MAX_WAIT);
        let count = isize::try_from(max).unwrap_or(isize::MAX);
        let reply: Option<(String, Vec<(String, f64)>)> = if wait.is_zero() {
            // BZMPOP's 0 means "forever"; use the non-blocking form instead.
            let items: Vec<(String, f64)> =
                self.conn.clone().zpopmin(&self.ready_key, count).await?;
            Some((self.ready_key.clone(), items))
        } else {
            let mut conn = self.blocking.take().await?;
            let reply = conn
                .bzmpop_min(wait.as_secs_f64(), &self.ready_key, count)
                .await?;
            self.blocking.give_back(conn);
            reply
        };
        let Some((_, items)) = reply else {
            return Ok(Vec::new());
        };
        items
            .into_iter()
            .map(|(member, _)| {
                TaskId::parse(&member)
                    .map_err(|_| QueueError::Protocol(format!("bad id in queue: {member:?}")))
            })
            .collect()
    }

    async fn remove(&self, id: TaskId) -> Result<bool, QueueError> {
        let (a, b): (i64, i64) = redis::pipe()
            .zrem(&self.ready_key, id.to_string())
            .zrem(&self.delayed_key, all_delayed_members(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(a + b > 0)
    }

    async fn len(&self) -> Result<u64, QueueError> {
        let (a, b): (u64, u64) = redis::pipe()
            .zcard(&self.ready_key)
            .zcard(&self.delayed_key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(a + b)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
