//! One breaker's state machine, pure: the caller passes the time.

use std::time::Duration;

use super::*;

/// One breaker's state machine; time is milliseconds on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    state: BreakerState,
    failures: u32,
    successes: u32,
    opened_at_ms: u64,
    trials: u32,
    trial_at_ms: u64,
}

impl Breaker {
    /// Asks to make a call at `now_ms`.
    pub fn acquire(&mut self, policy: &BreakerPolicy, now_ms: u64) -> Permit {
        let open_ms = policy.open_for.as_millis() as u64;
        match self.state {
            BreakerState::Closed => Permit::Allowed,
            BreakerState::Open => {
                let until = self.opened_at_ms + open_ms;
                if now_ms < until {
                    return Permit::Rejected {
                        retry_in: Duration::from_millis(until - now_ms),
                    };
                }
                self.state = BreakerState::HalfOpen;
                self.successes = 0;
                self.trials = 1;
                self.trial_at_ms = now_ms;
                Permit::Trial
            }
            BreakerState::HalfOpen => {
                // A trial whose caller died never reports; after a whole open period its slot
                // is given to the next caller.
                if self.trials >= policy.half_open_trials && now_ms < self.trial_at_ms + open_ms {
                    return Permit::Rejected {
                        retry_in: Duration::from_millis(self.trial_at_ms + open_ms - now_ms),
                    };
                }
                if self.trials >= policy.half_open_trials {
                    self.trials = 0;
                }
                self.trials += 1;
                self.trial_at_ms = now_ms;
                Permit::Trial
            }
        }
    }

    /// Reports a call's outcome at `now_ms`.
    pub fn record(&mut self, policy: &BreakerPolicy, success: bool, trial: bool, now_ms: u64) {
        match (self.state, success) {
            (BreakerState::Closed, true) => self.failures = 0,
            (BreakerState::Closed, false) => {
                self.failures += 1;
                if self.failures >= policy.failure_threshold {
                    self.open(now_ms);
                }
            }
            (BreakerState::HalfOpen, true) if trial => {
                self.trials = self.trials.saturating_sub(1);
                self.successes += 1;
                if self.successes >= policy.success_threshold {
                    *self = Self::default();
                }
            }
            (BreakerState::HalfOpen, false) if trial => self.open(now_ms),
            // Late answers of calls let through before the breaker opened change nothing.
            _ => {}
        }
    }

    fn open(&mut self, now_ms: u64) {
        *self = Self {
            state: BreakerState::Open,
            opened_at_ms: now_ms,
            ..Self::default()
        };
    }

    /// The state as shown to operators.
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            disabled: false,
            state: self.state,
            failures: self.failures,
            successes: self.successes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failure_threshold: 5,
        success_threshold: 2,
        open_for: Duration::from_secs(60),
        half_open_trials: 1,
    };

    #[test]
    fn opens_after_five_consecutive_failures() {
        let mut b = Breaker::default();
        for _ in 0..4 {
            assert_eq!(b.acquire(&POLICY, 0), Permit::Allowed);
            b.record(&POLICY, false, false, 0);
        }
        b.record(&POLICY, true, false, 0);
        for _ in 0..4 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.snapshot().state, BreakerState::Closed, "success resets");
        b.record(&POLICY, false, false, 1_000);
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert_eq!(
            b.acquire(&POLICY, 31_000),
            Permit::Rejected {
                retry_in: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn one_trial_after_the_open_period_then_two_successes_close() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        assert!(
            !b.acquire(&POLICY, 60_001).is_allowed(),
            "one trial at a time"
        );
        b.record(&POLICY, true, true, 60_100);
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        assert_eq!(b.acquire(&POLICY, 60_200), Permit::Trial);
        b.record(&POLICY, true, true, 60_300);
        assert_eq!(b.snapshot().state, BreakerState::Closed);
        assert_eq!(b.acquire(&POLICY, 60_400), Permit::Allowed);
    }

    #[test]
    fn a_failed_trial_opens_again() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        b.record(&POLICY, false, true, 60_500);
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert!(!b.acquire(&POLICY, 61_000).is_allowed());
        assert_eq!(b.acquire(&POLICY, 120_500), Permit::Trial);
    }

    #[test]
    fn a_trial_that_never_reports_frees_its_slot_after_an_open_period() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        assert_eq!(b.acquire(&POLICY, 60_000), Permit::Trial);
        assert!(!b.acquire(&POLICY, 100_000).is_allowed());
        assert_eq!(b.acquire(&POLICY, 120_000), Permit::Trial);
    }

    #[test]
    fn late_answers_of_calls_made_before_opening_change_nothing() {
        let mut b = Breaker::default();
        for _ in 0..5 {
            b.record(&POLICY, false, false, 0);
        }
        b.record(&POLICY, true, false, 10);
        b.record(&POLICY, false, false, 10);
        assert_eq!(
            b.acquire(&POLICY, 59_999),
            Permit::Rejected {
                retry_in: Duration::from_millis(1)
            }
        );
    }
}
