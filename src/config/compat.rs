//! Seed 003's environment names, accepted beside ours where they mean the same thing. When
//! both are set, ours wins (the README's Configuration says so); the seed's name is read only
//! when ours is absent.

use super::Reader;
use crate::ratelimit::Rate;

/// `(ours, seed 003's)`: the same setting under two names.
pub const ALIASES: &[(&str, &str)] = &[
    ("WORKER_POOL_SIZE", "JOB_QUEUE_WORKER_COUNT"),
    ("CLAIM_BATCH_SIZE", "JOB_QUEUE_BATCH_SIZE"),
];

impl Reader<'_> {
    /// The name to read a setting from: ours when set, else seed 003's alias when that is set,
    /// else ours (for the default and for messages).
    pub(super) fn aliased(&self, ours: &'static str) -> &'static str {
        match ALIASES.iter().find(|(o, _)| *o == ours) {
            Some((_, seed)) if self.raw(ours).is_none() && self.raw(seed).is_some() => seed,
            _ => ours,
        }
    }

    /// `USER_SUBMIT_RATE`, or seed 003's `RATE_LIMIT_REQUESTS_PER_MINUTE` with
    /// `RATE_LIMIT_BURST_SIZE` (default: the per-minute count) when ours is unset.
    pub(super) fn user_submit_rate(&mut self) -> Option<Rate> {
        if let Some(raw) = self.raw("USER_SUBMIT_RATE") {
            return match raw.parse() {
                Ok(rate) => Some(rate),
                Err(e) => {
                    self.problem("USER_SUBMIT_RATE", e);
                    None
                }
            };
        }
        self.raw("RATE_LIMIT_REQUESTS_PER_MINUTE")?;
        let per_minute = self.range("RATE_LIMIT_REQUESTS_PER_MINUTE", 0u32, 1, 100_000_000);
        let burst = self.range("RATE_LIMIT_BURST_SIZE", per_minute, 1, 100_000_000);
        (per_minute > 0).then(|| Rate {
            count: per_minute,
            period: std::time::Duration::from_secs(60),
            burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use crate::config::Config;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars).unwrap()
    }

    #[test]
    fn seed_names_apply_when_ours_are_unset() {
        let c = config(&[
            ("JOB_QUEUE_WORKER_COUNT", "5"),
            ("JOB_QUEUE_BATCH_SIZE", "10"),
            ("AI_MAX_CONCURRENT_REQUESTS", "3"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "100"),
            ("RATE_LIMIT_BURST_SIZE", "10"),
        ]);
        assert_eq!((c.worker_pool_size, c.claim_batch_size), (5, 10));
        assert_eq!(c.ai.max_concurrent_requests, Some(3));
        let rate = c.user_submit_rate.unwrap();
        assert_eq!(
            (rate.count, rate.period, rate.burst),
            (100, Duration::from_secs(60), 10)
        );
    }

    #[test]
    fn our_names_win_when_both_are_set() {
        let c = config(&[
            ("WORKER_POOL_SIZE", "8"),
            ("JOB_QUEUE_WORKER_COUNT", "5"),
            ("USER_SUBMIT_RATE", "10/s"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "100"),
        ]);
        assert_eq!(c.worker_pool_size, 8);
        assert_eq!(c.user_submit_rate.unwrap().period, Duration::from_secs(1));
    }

    #[test]
    fn a_bad_seed_value_is_reported_under_its_own_name() {
        let vars: HashMap<String, String> = [("JOB_QUEUE_WORKER_COUNT", "many")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = Config::from_vars(&vars).unwrap_err();
        assert_eq!(err.0[0].var, "JOB_QUEUE_WORKER_COUNT");
    }
}
