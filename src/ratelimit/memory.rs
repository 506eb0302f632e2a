//! In-process GCRA for embedded mode.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Decision, Rate, RateLimitError, RateLimiter, gcra};

/// Keys whose state is kept; beyond it, keys idle long enough to be reset are dropped.
const MAX_KEYS: usize = 100_000;

/// Rate limits in this process's memory.
pub struct MemoryRateLimiter {
    /// Zero point of the microsecond clock.
    epoch: Instant,
    /// Theoretical arrival time per key, in microseconds since `epoch`.
    tats: Mutex<HashMap<String, u64>>,
}

impl MemoryRateLimiter {
    /// No keys yet.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, rate: Rate, cost: u32) -> Result<Decision, RateLimitError> {
        let now = self.epoch.elapsed().as_micros() as u64;
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if tats.len() >= MAX_KEYS {
            // A key whose tat has passed is indistinguishable from a fresh key.
            tats.retain(|_, tat| *tat > now);
        }
        let tat = tats.get(key).copied().unwrap_or(0);
        match gcra(now, tat, rate, cost) {
            Ok(new_tat) => {
                tats.insert(key.to_owned(), new_tat);
                Ok(Decision::Allowed)
            }
            Err(wait) => Ok(Decision::Limited {
                retry_after: std::time::Duration::from_micros(wait),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_per_key_and_recovers() {
        let l = MemoryRateLimiter::new();
        let rate = Rate {
            count: 2,
            period: Duration::from_secs(1),
            burst: 2,
        };
        assert_eq!(l.check("a", rate, 1).await.unwrap(), Decision::Allowed);
        assert_eq!(l.check("a", rate, 1).await.unwrap(), Decision::Allowed);
        let Decision::Limited { retry_after } = l.check("a", rate, 1).await.unwrap() else {
            panic!("third call in the same instant must be limited")
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert_eq!(
            l.check("b", rate, 1).await.unwrap(),
            Decision::Allowed,
            "keys are separate"
        );
        tokio::time::advance(retry_after).await;
        assert_eq!(l.check("a", rate, 1).await.unwrap(), Decision::Allowed);
    }
}
