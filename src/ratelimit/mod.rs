//! Rate limits shared by every instance: the generic cell rate algorithm (GCRA), in Redis for
//! clustered mode and in memory for embedded mode. One check is one round trip and stores one
//! timestamp per key.

mod memory;
mod redis;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryRateLimiter;
pub use redis::{RedisRateLimiter, managed_connection};

/// A rate: `count` per `period`, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period on average.
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// Events allowed back to back after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// The steady-state gap between two events.
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// Parses `N/s`, `N/min`, `N/hour` (also `N/second`, `N/m`, `N/h`, `N/30s`); burst = N.
impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate such as 100/s, 60/min or 50/hour");
        let (count, per) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if count == 0 || period.is_zero() {
            return Err(bad());
        }
        Ok(Self {
            count,
            period,
            burst: count,
        })
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; the cost was counted.
    Allowed,
    /// Over the limit; nothing was counted. Try again after this long.
    Limited {
        /// How long until the same request would be allowed.
        retry_after: Duration,
    },
}

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct RateLimitError(#[from] ::redis::RedisError);

/// Counts events per key against a [`Rate`].
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts `cost` events for `key` if that stays within `rate`.
    async fn check(&self, key: &str, rate: Rate, cost: u32) -> Result<Decision, RateLimitError>;
}

/// GCRA on plain numbers (microseconds), shared by both implementations' tests and the memory
/// limiter: given the stored theoretical arrival time `tat`, returns the new `tat` or how long
/// to wait.
pub fn gcra(now_us: u64, tat_us: u64, rate: Rate, cost: u32) -> Result<u64, u64> {
    let interval = rate.interval().as_micros() as u64;
    let base = tat_us.max(now_us);
    let new_tat = base + interval * u64::from(cost);
    let allow_at = new_tat.saturating_sub(interval * u64::from(rate.burst.max(cost)));
    if now_us < allow_at {
        Err(allow_at - now_us)
    } else {
        Ok(new_tat)
    }
}

/// GCRA for "take up to `want` now": how many events `rate` allows at `now_us` given the stored
/// `tat_us` (at most `want`), the new `tat` after counting them, and, when none is allowed, how
/// long until one is (µs). The Redis queue's pop script computes the same in Lua.
pub fn gcra_take(now_us: u64, tat_us: u64, rate: Rate, want: u64) -> (u64, u64, u64) {
    let interval = (rate.interval().as_micros() as u64).max(1);
    let tat = tat_us.max(now_us);
    let burst_span = interval * u64::from(rate.burst);
    // Allowed n iff now >= tat + n * interval - burst * interval.
    let allowed = (now_us + burst_span).saturating_sub(tat) / interval;
    let n = allowed.min(want);
    let wait = if allowed == 0 {
        (tat + interval).saturating_sub(burst_span + now_us)
    } else {
        0
    };
    (n, tat + n * interval, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let r: Rate = "60/min".parse().unwrap();
        assert_eq!(
            (r.count, r.period, r.burst),
            (60, Duration::from_secs(60), 60)
        );
        assert_eq!(
            "5/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(200)
        );
        assert_eq!(
            "50/hour".parse::<Rate>().unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            "10/30s".parse::<Rate>().unwrap().period,
            Duration::from_secs(30)
        );
        for bad in ["", "10", "x/s", "0/s", "10/fortnight"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gcra_allows_a_burst_then_the_steady_rate() {
        let rate = Rate {
            count: 10,
            period: Duration::from_secs(1),
            burst: 3,
        };
        let mut tat = 0;
        let now = 1_000_000;
        for _ in 0..3 {
            tat = gcra(now, tat, rate, 1).expect("burst");
        }
        let wait = gcra(now, tat, rate, 1).unwrap_err();
        assert_eq!(wait, 100_000, "one interval until the next");
        assert!(gcra(now + wait, tat, rate, 1).is_ok());
    }

    #[test]
    fn gcra_take_grants_what_the_rate_allows() {
        let rate = Rate {
            count: 10,
            period: Duration::from_secs(1),
            burst: 3,
        };
        let now = 1_000_000;
        let (n, tat, wait) = gcra_take(now, 0, rate, 5);
        assert_eq!((n, wait), (3, 0), "a burst of 3");
        let (n, tat2, wait) = gcra_take(now, tat, rate, 5);
        assert_eq!((n, tat2, wait), (0, tat, 100_000), "then one interval");
        let (n, _, _) = gcra_take(now + 250_000, tat, rate, 5);
        assert_eq!(n, 2, "two intervals later, two more");
        // Agrees with the one-at-a-time check.
        assert!(gcra(now + wait, tat, rate, 1).is_ok());
        assert!(gcra(now + wait - 1, tat, rate, 1).is_err());
    }
}
