//! Provider attempts and what they cost (seed 001's usage_stats), and money as integers.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, TaskId, TaskType, UserId};

/// How one try of one provider for one task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider answered.
    Ok,
    /// Failed in a way worth retrying (timeout, 5xx, broken stream).
    Retryable,
    /// The provider said 429.
    RateLimited,
    /// Failed in a way retrying cannot fix (bad request, auth, content policy).
    NonRetryable,
    /// Not called: its circuit breaker was open.
    SkippedBreaker,
    /// Not called: our own rate limit for it was exhausted.
    SkippedRateLimit,
    /// Not called: an operator disabled it.
    SkippedDisabled,
    /// Called, then dropped before it answered: the task timed out or was cancelled, its
    /// instance stopped, or its submit's commit failed. Its cost is what was reserved for it.
    Abandoned,
}

impl AttemptOutcome {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retryable => "retryable",
            Self::RateLimited => "rate_limited",
            Self::NonRetryable => "non_retryable",
            Self::SkippedBreaker => "skipped_breaker",
            Self::SkippedRateLimit => "skipped_rate_limit",
            Self::SkippedDisabled => "skipped_disabled",
            Self::Abandoned => "abandoned",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        [
            Self::Ok,
            Self::Retryable,
            Self::RateLimited,
            Self::NonRetryable,
            Self::SkippedBreaker,
            Self::SkippedRateLimit,
            Self::SkippedDisabled,
            Self::Abandoned,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| DomainError::Invalid(format!("unknown attempt outcome {s:?}")))
    }

    /// Whether the provider was actually called (and may have cost money).
    pub fn called(self) -> bool {
        !matches!(
            self,
            Self::SkippedBreaker | Self::SkippedRateLimit | Self::SkippedDisabled
        )
    }
}

/// One try of one provider, kept on the task and summed into usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderAttempt {
    /// Row id.
    pub id: uuid::Uuid,
    /// The task it served, when it served one.
    pub task_id: Option<TaskId>,
    /// Who pays.
    pub user_id: UserId,
    /// e.g. `openai`.
    pub provider: String,
    /// The model asked for or that answered.
    pub model: String,
    /// The task's type.
    pub task_type: TaskType,
    /// Prompt tokens the provider reported.
    pub input_tokens: u64,
    /// Generated tokens the provider reported.
    pub output_tokens: u64,
    /// What it cost.
    pub cost: Micros,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Wall time of the call.
    pub latency_ms: u64,
    /// When it started.
    pub at: DateTime<Utc>,
}

/// Money in millionths of a US dollar: exact sums, no floating point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Micros(pub i64);

impl Micros {
    /// Parses a dollar amount such as `12.5` or `0.000150`.
    pub fn parse_usd(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::Invalid(format!("{s:?} is not an amount in USD such as 12.50"));
        let s = s.trim().trim_start_matches('$');
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac))
            .map(Self)
            .ok_or_else(bad)
    }

    /// As dollars, for display.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// The calendar month (UTC) an instant falls in, as `YYYY-MM`: the budget period.
pub fn month_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// Checks a `YYYY-MM` month given by a client.
pub fn parse_month(s: &str) -> Result<String, DomainError> {
    let ok = s.len() == 7
        && s.as_bytes()[4] == b'-'
        && s[..4].bytes().all(|b| b.is_ascii_digit())
        && matches!(s[5..].parse::<u32>(), Ok(1..=12));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(DomainError::Invalid(format!(
            "month must be YYYY-MM, got {s:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dollars_exactly() {
        assert_eq!(Micros::parse_usd("12.5").unwrap(), Micros(12_500_000));
        assert_eq!(Micros::parse_usd("0.00015").unwrap(), Micros(150));
        assert_eq!(Micros::parse_usd("$3").unwrap(), Micros(3_000_000));
        assert_eq!(Micros::parse_usd(".5").unwrap(), Micros(500_000));
        for bad in ["", ".", "-1", "1.0000001", "abc", "1e3"] {
            assert!(Micros::parse_usd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn months() {
        let at = "2026-11-23T05:00:00Z".parse().unwrap();
        assert_eq!(month_of(at), "2026-11");
        assert!(parse_month("2026-11").is_ok());
        for bad in ["2026-13", "2026-1", "26-11-01", "2026/11"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in [AttemptOutcome::Ok, AttemptOutcome::SkippedRateLimit] {
            assert_eq!(AttemptOutcome::parse(o.as_str()).unwrap(), o);
        }
        assert!(!AttemptOutcome::SkippedBreaker.called());
    }
}
