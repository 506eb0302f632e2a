//! Task priority, 1 (lowest) to 10 (critical), with seed 003's levels.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A priority from 1 to 10; higher runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(u8);

/// Seed 003's named bands of priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl PriorityLevel {
    /// Every level, lowest first.
    pub const ALL: [PriorityLevel; 4] = [Self::Low, Self::Normal, Self::High, Self::Critical];

    /// The lowest and highest priority of the level.
    pub fn bounds(self) -> (u8, u8) {
        match self {
            Self::Low => (1, 3),
            Self::Normal => (4, 6),
            Self::High => (7, 9),
            Self::Critical => (10, 10),
        }
    }

    /// The name used in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The level of priority `value` (1..=10; above 10 is critical).
    pub fn of(value: u8) -> Self {
        match value {
            0..=3 => Self::Low,
            4..=6 => Self::Normal,
            7..=9 => Self::High,
            _ => Self::Critical,
        }
    }

    /// The level's position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
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
        PriorityLevel::of(self.0)
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
    fn level_bounds_cover_every_priority_once() {
        for p in 1..=10 {
            let level = Priority::new(p).unwrap().level();
            let (lo, hi) = level.bounds();
            assert!((lo..=hi).contains(&(p as u8)), "{p} in {level:?}");
            assert_eq!(PriorityLevel::ALL[level.index()], level);
        }
    }

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
