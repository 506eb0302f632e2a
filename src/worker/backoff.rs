//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)` (1 s, 2 s, 4 s with the
/// seed's 1 s base), plus up to 10% random jitter so failures that happened together do not
/// retry together. Capped at one hour.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.0..=0.1);
    capped + capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_each_attempt_with_bounded_jitter() {
        let base = Duration::from_secs(1);
        for (attempt, secs) in [(1, 1.0), (2, 2.0), (3, 4.0)] {
            let d = retry_delay(base, attempt).as_secs_f64();
            assert!(d >= secs && d <= secs * 1.1, "attempt {attempt}: {d}");
        }
        assert!(retry_delay(base, 40) <= Duration::from_secs(3960));
    }
}
