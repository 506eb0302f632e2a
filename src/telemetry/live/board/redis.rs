//! The sample board of clustered mode: one Redis hash, `{prefix}:dashboard:samples`, with a
//! field per instance holding its latest sample as JSON.

use std::collections::HashMap;

use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::{BoardError, InstanceSample, SAMPLE_MAX_AGE_MS, SampleBoard};

/// Samples in a Redis hash shared by every instance.
#[derive(Clone)]
pub struct RedisBoard {
    conn: ConnectionManager,
    key: String,
}

impl RedisBoard {
    /// The board under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            key: format!("{prefix}:dashboard:samples"),
        }
    }
}

#[async_trait]
impl SampleBoard for RedisBoard {
    async fn publish(&self, sample: &InstanceSample) -> Result<(), BoardError> {
        let json = serde_json::to_string(sample).map_err(|e| BoardError(e.to_string()))?;
        let mut conn = self.conn.clone();
        // The whole hash goes once no instance writes for a while (a cluster taken down).
        ::redis::pipe()
            .hset(&self.key, &sample.instance, json)
            .ignore()
            .pexpire(&self.key, SAMPLE_MAX_AGE_MS)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn read(&self, fresh_since_ms: i64) -> Result<Vec<InstanceSample>, BoardError> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> = ::redis::cmd("HGETALL")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?;
        let mut fresh = Vec::with_capacity(all.len());
        let mut gone = Vec::new();
        for (field, json) in all {
            match serde_json::from_str::<InstanceSample>(&json) {
                Ok(s) if s.at_ms >= fresh_since_ms => fresh.push(s),
                Ok(s) if s.at_ms >= fresh_since_ms - SAMPLE_MAX_AGE_MS => {}
                // Long silent, or written by an incompatible version: drop it.
                _ => gone.push(field),
            }
        }
        if !gone.is_empty() {
            ::redis::cmd("HDEL")
                .arg(&self.key)
                .arg(&gone)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(fresh)
    }
}
