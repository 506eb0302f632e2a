//! The response cache (seed 001): identical requests within a TTL are answered without a
//! provider call. Redis in clustered mode (shared by all instances), in-process when embedded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::TaskType;

/// Cached results by key.
#[async_trait]
pub trait ResponseCache: Send + Sync + 'static {
    /// The cached result under `key`, if fresh.
    async fn get(&self, key: &str) -> Option<Value>;
    /// Keeps `value` under `key` for `ttl`.
    async fn put(&self, key: &str, value: &Value, ttl: Duration);
}

/// The cache key of a request: its type, its payload with object keys in a fixed order (serde
/// sorts them) minus the cache switch itself, and the providers that may answer it.
pub fn key(task_type: TaskType, payload: &Value, chain: &[String]) -> String {
    let mut payload = payload.clone();
    if let Some(map) = payload.as_object_mut() {
        map.remove("cache");
    }
    let mut hash = Sha256::new();
    hash.update(task_type.as_str());
    hash.update([0]);
    hash.update(payload.to_string());
    hash.update([0]);
    hash.update(chain.join(","));
    format!("{:x}", hash.finalize())
}

/// Whether a payload allows cached answers (`"cache": false` opts out).
pub fn allowed(payload: &Value) -> bool {
    payload.get("cache").and_then(Value::as_bool) != Some(false)
}

/// Hits and misses since start.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A reading of [`CacheCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
}

impl CacheCounters {
    /// Counts one lookup.
    pub fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn read(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Most entries the in-process cache holds.
const MEMORY_CAPACITY: usize = 10_000;

/// In-process cache for embedded mode.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (Instant, Value)>>,
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Value> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, v)| v.clone())
    }

    async fn put(&self, key: &str, value: &Value, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MEMORY_CAPACITY {
            entries.retain(|_, (until, _)| *until > now);
        }
        if entries.len() < MEMORY_CAPACITY {
            entries.insert(key.to_owned(), (now + ttl, value.clone()));
        }
    }
}

/// Cache in Redis under `{prefix}:cache:`, shared by every instance.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    /// A cache using `conn`, with keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}:cache:"),
        }
    }
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, key: &str) -> Option<Value> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut self.conn.clone())
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "response cache unavailable"))
            .ok()?;
        serde_json::from_str(&raw?).ok()
    }

    async fn put(&self, key: &str, value: &Value, ttl: Duration) {
        let r: Result<(), _> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(value.to_string())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not store a cached response");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_ignore_key_order_and_the_cache_switch() {
        let chain = vec!["groq".to_owned()];
        let a = key(
            TaskType::Summarize,
            &json!({"text": "t", "length": "short"}),
            &chain,
        );
        let b = key(
            TaskType::Summarize,
            &json!({"length": "short", "text": "t", "cache": true}),
            &chain,
        );
        assert_eq!(a, b);
        assert_ne!(a, key(TaskType::Summarize, &json!({"text": "u"}), &chain));
        assert_ne!(
            a,
            key(
                TaskType::ValidateSummary,
                &json!({"text": "t", "length": "short"}),
                &chain
            )
        );
        assert!(!allowed(&json!({"cache": false})));
        assert!(allowed(&json!({})));
    }

    #[tokio::test]
    async fn memory_entries_expire() {
        let c = MemoryCache::default();
        c.put("k", &json!(1), Duration::from_millis(30)).await;
        assert_eq!(c.get("k").await, Some(json!(1)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.get("k").await, None);
    }
}
