//! Task priority, 1 (lowest) to 10 (critical), with seed 003's levels.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A priority from 1 to 10; higher runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(u8);

/// Seed 003's named bands of priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityLevel {
    /// 1-3: background work.
    Low,
    /// 4-6: ordinary asynchronous work.
    Normal,
    /// 7-9: a user is waiting.
    High,
    /// 10: system-critical.
    Critical,
}

impl Priority {
    /// Lowest priority.
    pub const MIN: Priority = Priority(1);
    /// Highest priority.
    pub const MAX: Priority = Priority(10);
    /// The default for most task types (seed 003: NORMAL 5).
    pub const NORMAL: Priority = Priority(5);
    /// The default for tasks a user waits on (seed 003: summarize = 7).
    pub const HIGH: Priority = Priority(7);

    /// Validates a client-supplied priority.
    pub fn new(value: i64) -> Result<Self, DomainError> {
        if (1..=10).contains(&value) {
            Ok(Self(value as u8))
        } else {
            Err(DomainError::Invalid(format!(
                "priority must be 1-10, got {value}"
            )))
        }
    }

    /// The number, 1..=10.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The named band this priority falls in.
    pub fn level(self) -> PriorityLevel {
        match self.0 {
            1..=3 => PriorityLevel::Low,
            4..=6 => PriorityLevel::Normal,
            7..=9 => PriorityLevel::High,
            _ => PriorityLevel::Critical,
        }
    }
}

impl TryFrom<i64> for Priority {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_levels() {
        assert!(Priority::new(0).is_err());
        assert!(Priority::new(11).is_err());
        assert_eq!(Priority::new(1).unwrap().level(), PriorityLevel::Low);
        assert_eq!(Priority::new(6).unwrap().level(), PriorityLevel::Normal);
        assert_eq!(Priority::new(9).unwrap().level(), PriorityLevel::High);
        assert_eq!(Priority::new(10).unwrap().level(), PriorityLevel::Critical);
    }
}
