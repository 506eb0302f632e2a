//! Redis queue for clustered mode: every instance pushes to and pops from the same keys.
//!
//! Keys, under the configured prefix, for each named queue `{name}`:
//! - `{prefix}:q:{name}:ready`: sorted set of task ids; score `(10 - priority) * 2^44 + seq`, so
//!   the lowest score is the highest priority and, within it, the oldest push (a standard
//!   queue scores every entry as priority 10: FIFO).
//! - `{prefix}:q:{name}:delayed`: sorted set of `priority:id` by due time (unix ms).
//! - `{prefix}:rl:queue:{name}`: GCRA state of a rate-limited queue (as `src/ratelimit/`).
//! - `{prefix}:q:seq`: the push sequence counter, shared by all queues.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncCommands, AsyncConnectionConfig, Script};

use super::{
    LevelDepth, PopRequest, Popped, Promoted, QueueEntry, QueueError, QueueSet, QueueSpec,
    TaskQueue,
};
use crate::domain::{Priority, PriorityLevel, QueueKind, QueueName, TaskId};

/// Ready scores of one priority span this many push sequence numbers (2^44; see PUSH).
const SEQ_SPAN: f64 = 17_592_186_044_416.0;

/// KEYS[1] = seq, KEYS[2..] = ready sets; ARGV = triples (ready key index from 2, id, priority).
/// `NX` keeps an already-queued id in its place. Returns how many ids were not queued yet.
const PUSH: &str = r#"
local n = #ARGV / 3
local seq = redis.call('INCRBY', KEYS[1], n) - n
local added = 0
for i = 0, n - 1 do
  local key = KEYS[tonumber(ARGV[3 * i + 1])]
  local prio = tonumber(ARGV[3 * i + 3])
  seq = seq + 1
  added = added + redis.call('ZADD', key, 'NX', (10 - prio) * 17592186044416 + seq, ARGV[3 * i + 2])
end
return added
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

/// Pops from several queues at once, without blocking. KEYS = pairs (ready set, GCRA key);
/// ARGV[1] = total; then per queue: max, GCRA interval µs (0: not rate limited), burst.
/// Shares `total` like `allocate` in `spec.rs` (water-filling in the order given) over what
/// each queue has ready and, for a rate-limited queue, what its GCRA allows now (the same
/// formula as `ratelimit::gcra_take`, on Redis's clock). Returns {hint µs or -1, queue index,
/// id, queue index, id, ...}; the hint is how long until a rate-limited queue with work may
/// start one, when that is what held it back.
const POP_MANY: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local total = tonumber(ARGV[1])
local k = #KEYS / 2
local avail, tats, alloc = {}, {}, {}
local hint = -1
for i = 1, k do
  local max = tonumber(ARGV[3 * i - 1])
  local interval = tonumber(ARGV[3 * i])
  local n = math.min(max, redis.call('ZCARD', KEYS[2 * i - 1]))
  if interval > 0 and n > 0 then
    local burst = tonumber(ARGV[3 * i + 1])
    local tat = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if tat < now then tat = now end
    tats[i] = tat
    local allowed = math.floor((now + burst * interval - tat) / interval)
    if allowed < 0 then allowed = 0 end
    if allowed == 0 then
      local wait = tat + interval - burst * interval - now
      if hint < 0 or wait < hint then hint = wait end
    end
    n = math.min(n, allowed)
  end
  avail[i] = n
  alloc[i] = 0
end
local left = total
while left > 0 do
  local open = {}
  for i = 1, k do
    if alloc[i] < avail[i] then open[#open + 1] = i end
  end
  if #open == 0 then break end
  local share = math.max(1, math.floor(left / #open))
  for _, i in ipairs(open) do
    local give = math.min(share, avail[i] - alloc[i], left)
    alloc[i] = alloc[i] + give
    left = left - give
  end
end
local out = {hint}
for i = 1, k do
  if alloc[i] > 0 then
    local items = redis.call('ZPOPMIN', KEYS[2 * i - 1], alloc[i])
    for j = 1, #items, 2 do
      out[#out + 1] = i
      out[#out + 1] = items[j]
    end
    local interval = tonumber(ARGV[3 * i])
    if interval > 0 then
      local tat = tats[i] + interval * alloc[i]
      redis.call('SET', KEYS[2 * i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    end
  end
end
return out
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

/// The Redis keys of one named queue.
#[derive(Clone)]
struct Lane {
    spec: QueueSpec,
    ready: String,
    delayed: String,
    rate: String,
}

/// Named priority queues in Redis.
#[derive(Clone)]
pub struct RedisQueue {
    /// Shared, auto-reconnecting connection for quick commands.
    conn: ConnectionManager,
    /// Connections for blocking pops.
    blocking: std::sync::Arc<BlockingConnections>,
    set: QueueSet,
    lanes: Vec<Lane>,
    seq_key: String,
    push_script: Script,
    promote_script: Script,
    pop_script: Script,
}

impl RedisQueue {
    /// Longest a single `pop` blocks; the blocking connection's response timeout exceeds it.
    pub const MAX_WAIT: Duration = Duration::from_secs(5);

    /// Connects to `url`, with one priority queue `default`, using keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        Self::connect_with(url, prefix, QueueSet::single(1)).await
    }

    /// Connects to `url`, with the queues of `set`, using keys under `prefix`.
    pub async fn connect_with(url: &str, prefix: &str, set: QueueSet) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)?;
        let quick = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client.clone(), quick).await?;
        let blocking = std::sync::Arc::new(BlockingConnections {
            client,
            idle: std::sync::Mutex::new(Vec::new()),
        });
        let lanes = set
            .specs()
            .iter()
            .map(|spec| Lane {
                spec: spec.clone(),
                ready: format!("{prefix}:q:{}:ready", spec.name),
                delayed: format!("{prefix}:q:{}:delayed", spec.name),
                rate: format!("{prefix}:rl:queue:{}", spec.name),
            })
            .collect();
        Ok(Self {
            conn,
            blocking,
            set,
            lanes,
            seq_key: format!("{prefix}:q:seq"),
            push_script: Script::new(PUSH),
            promote_script: Script::new(PROMOTE),
            pop_script: Script::new(POP_MANY),
        })
    }

    fn lane(&self, queue: QueueName) -> &Lane {
        &self.lanes[self.set.lane_of(queue)]
    }

    /// One blocking (or, with zero `wait`, immediate) pop from ready sets `keys`, taking up to
    /// `count` from the first that has any: Redis's `BZMPOP`, one round trip.
    async fn block_pop(
        &self,
        keys: &[&Lane],
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Popped>, QueueError> {
        let count = isize::try_from(count).unwrap_or(isize::MAX);
        let ready: Vec<&str> = keys.iter().map(|l| l.ready.as_str()).collect();
        let reply: Option<(String, Vec<(String, f64)>)> = if wait.is_zero() {
            // BZMPOP's 0 means "forever"; use the non-blocking form instead.
            self.conn.clone().zmpop_min(&ready, count).await?
        } else {
            let mut conn = self.blocking.take().await?;
            let reply = conn.bzmpop_min(wait.as_secs_f64(), &ready, count).await?;
            self.blocking.give_back(conn);
            reply
        };
        let Some((key, items)) = reply else {
            return Ok(Vec::new());
        };
        let queue = keys
            .iter()
            .find(|l| l.ready == key)
            .map(|l| l.spec.name)
            .ok_or_else(|| QueueError::Protocol(format!("popped from unknown key {key:?}")))?;
        items
            .into_iter()
            .map(|(member, _)| {
                Ok(Popped {
                    queue,
                    task_id: parse_id(&member)?,
                })
            })
            .collect()
    }

    /// The non-blocking multi-queue pop script; returns what it took and the rate hint.
    async fn pop_many(
        &self,
        requests: &[(&Lane, usize)],
        total: usize,
    ) -> Result<(Vec<Popped>, Option<Duration>), QueueError> {
        let mut inv = self.pop_script.prepare_invoke();
        inv.arg(total);
        for (lane, max) in requests {
            inv.key(&lane.ready).key(&lane.rate);
            let (interval, burst) = match lane.spec.rate {
                Some(r) if lane.spec.kind == QueueKind::RateLimited => {
                    ((r.interval().as_micros() as u64).max(1), r.burst)
                }
                _ => (0, 0),
            };
            inv.arg(*max).arg(interval).arg(burst);
        }
        let reply: Vec<redis::Value> = inv.invoke_async(&mut self.conn.clone()).await?;
        let mut it = reply.into_iter();
        let hint = match it.next() {
            Some(redis::Value::Int(h)) if h >= 0 => Some(Duration::from_micros(h as u64)),
            _ => None,
        };
        let mut out = Vec::new();
        while let (Some(idx), Some(id)) = (it.next(), it.next()) {
            let idx: usize = redis::from_redis_value(idx)
                .map_err(|e| QueueError::Protocol(format!("bad pop reply: {e}")))?;
            let id: String = redis::from_redis_value(id)
                .map_err(|e| QueueError::Protocol(format!("bad pop reply: {e}")))?;
            let (lane, _) = requests
                .get(idx.wrapping_sub(1))
                .ok_or_else(|| QueueError::Protocol(format!("bad queue index {idx}")))?;
            out.push(Popped {
                queue: lane.spec.name,
                task_id: parse_id(&id)?,
            });
        }
        Ok((out, hint))
    }
}

fn parse_id(member: &str) -> Result<TaskId, QueueError> {
    TaskId::parse(member).map_err(|_| QueueError::Protocol(format!("bad id in queue: {member:?}")))
}

fn delayed_member(priority: u8, id: TaskId) -> String {
    format!("{priority}:{id}")
}

/// The delayed-set member of `id` under every priority.
fn all_delayed_members(id: TaskId) -> Vec<String> {
    (1..=Priority::MAX.value())
        .map(|p| delayed_member(p, id))
        .collect()
}

#[async_trait]
impl TaskQueue for RedisQueue {
    async fn push(&self, entries: &[QueueEntry]) -> Result<u64, QueueError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut inv = self.push_script.prepare_invoke();
        inv.key(&self.seq_key);
        // Key positions (from 2) of the ready sets used by this push.
        let mut used: Vec<usize> = Vec::new();
        for e in entries {
            let lane = self.set.lane_of(e.queue);
            let pos = match used.iter().position(|&l| l == lane) {
                Some(p) => p,
                None => {
                    inv.key(&self.lanes[lane].ready);
                    used.push(lane);
                    used.len() - 1
                }
            };
            let prio = self.lanes[lane].spec.effective_priority(e.priority);
            inv.arg(pos + 2).arg(e.task_id.to_string()).arg(prio);
        }
        let added: u64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(added)
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
            let lane = self.lane(e.queue);
            // One delayed entry per id, whatever priority an earlier push gave it.
            pipe.zrem(&lane.delayed, all_delayed_members(e.task_id))
                .ignore();
            pipe.zadd(
                &lane.delayed,
                delayed_member(lane.spec.effective_priority(e.priority), e.task_id),
                score,
            )
            .ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Promoted, QueueError> {
        let mut total = 0;
        let mut next_due: Option<DateTime<Utc>> = None;
        for lane in &self.lanes {
            loop {
                // Bounded per call so one script never blocks Redis for long.
                let (moved, next): (i64, i64) = self
                    .promote_script
                    .key(&lane.delayed)
                    .key(&lane.ready)
                    .key(&self.seq_key)
                    .arg(now.timestamp_millis())
                    .arg(PROMOTE_LIMIT)
                    .invoke_async(&mut self.conn.clone())
                    .await?;
                total += usize::try_from(moved).unwrap_or(0);
                if moved < PROMOTE_LIMIT {
                    // Millisecond precision: delayed entries are scored in unix ms.
                    if next >= 0
                        && let Some(due) = DateTime::from_timestamp_millis(next)
                    {
                        next_due = Some(next_due.map_or(due, |n| n.min(due)));
                    }
                    break;
                }
            }
        }
        Ok(Promoted {
            moved: total,
            next_due,
        })
    }

    async fn pop_from(
        &self,
        requests: &[PopRequest],
        total: usize,
        wait: Duration,
    ) -> Result<Vec<Popped>, QueueError> {
        let requests: Vec<(&Lane, usize)> = requests
            .iter()
            .filter(|r| r.max > 0)
            .filter_map(|r| {
                let i = self.set.index_of(r.queue)?;
                Some((&self.lanes[i], r.max))
            })
            .collect();
        if total == 0 || requests.is_empty() {
            tokio::time::sleep(wait.min(Self::MAX_WAIT)).await;
            return Ok(Vec::new());
        }
        let wait = wait.min(Self::MAX_WAIT);
        let limited = |l: &Lane| l.spec.kind == QueueKind::RateLimited && l.spec.rate.is_some();
        // The common case, one queue that is not rate limited: one blocking round trip.
        if let [(lane, max)] = requests[..]
            && !limited(lane)
        {
            return self.block_pop(&[lane], max.min(total), wait).await;
        }
        let (popped, hint) = self.pop_many(&requests, total).await?;
        if !popped.is_empty() || wait.is_zero() {
            return Ok(popped);
        }
        // Nothing ready: wait for the queues that can be popped blindly, and look at the
        // rate-limited ones again when one of them may start a task.
        let wait = hint.map_or(wait, |h| wait.min(h.max(Duration::from_millis(1))));
        let open: Vec<&Lane> = requests
            .iter()
            .filter(|(l, _)| !limited(l))
            .map(|(l, _)| *l)
            .collect();
        if open.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let count = requests
            .iter()
            .filter(|(l, _)| !limited(l))
            .map(|(_, m)| *m)
            .min()
            .unwrap_or(1)
            .min(total);
        self.block_pop(&open, count, wait).await
    }

    async fn remove(&self, id: TaskId) -> Result<bool, QueueError> {
        let mut pipe = redis::pipe();
        for lane in &self.lanes {
            pipe.zrem(&lane.ready, id.to_string())
                .zrem(&lane.delayed, all_delayed_members(id));
        }
        let removed: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(removed.iter().sum::<i64>() > 0)
    }

    async fn len(&self) -> Result<u64, QueueError> {
        let mut pipe = redis::pipe();
        for lane in &self.lanes {
            pipe.zcard(&lane.ready).zcard(&lane.delayed);
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(counts.iter().sum())
    }

    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        let Some(i) = self.set.index_of(queue) else {
            return Ok(0);
        };
        let lane = &self.lanes[i];
        let (a, b): (u64, u64) = redis::pipe()
            .zcard(&lane.ready)
            .zcard(&lane.delayed)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(a + b)
    }

    async fn depth_by_level(&self, queue: QueueName) -> Result<LevelDepth, QueueError> {
        let Some(i) = self.set.index_of(queue) else {
            return Ok(LevelDepth::default());
        };
        let lane = &self.lanes[i];
        // Scores are (10 - priority) * 2^44 + seq (seq >= 1): a level is one score range, so
        // each count is a ZCOUNT, O(log n), whatever the depth.
        let mut pipe = redis::pipe();
        for level in PriorityLevel::ALL {
            let (lo, hi) = level.bounds();
            let min = f64::from(Priority::MAX.value() - hi) * SEQ_SPAN;
            let max = f64::from(Priority::MAX.value() - lo + 1) * SEQ_SPAN;
            pipe.zcount(&lane.ready, min, format!("({max}"));
        }
        pipe.zcard(&lane.delayed);
        let counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut depth = LevelDepth::default();
        depth.ready.copy_from_slice(&counts[..4]);
        depth.delayed = counts[4];
        Ok(depth)
    }

    fn queues(&self) -> &QueueSet {
        &self.set
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
