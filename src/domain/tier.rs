//! A user's plan (the token's `tier` claim) and what it changes: the priority their tasks get
//! when they do not ask for one (seed 003's `calculateJobPriority(jobType, userTier)`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A user's plan; a token without a `tier` claim is `free`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The default plan: the type's own priority.
    #[default]
    Free,
    /// One step above the type's priority.
    Pro,
    /// Two steps above it.
    Enterprise,
}

impl Tier {
    /// Every tier, for parsing and the docs.
    pub const ALL: [Tier; 3] = [Self::Free, Self::Pro, Self::Enterprise];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }

    /// What this tier adds to a task type's default priority (the sum is kept within 1-10
    /// and under the deployment's ceiling).
    pub fn priority_boost(self) -> u8 {
        match self {
            Self::Free => 0,
            Self::Pro => 1,
            Self::Enterprise => 2,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "unknown tier {s:?}; expected free, pro or enterprise"
                ))
            })
    }
}
