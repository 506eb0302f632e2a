//! The kinds of work a task can ask for (seeds 000 and 003, plus `echo`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{DomainError, Priority};

/// A task's type; it decides the provider capability and the default priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Returns its payload; `delay_ms` and `fail_times` simulate slow and failing calls.
    Echo,
    /// Summarise an article (seed 003).
    Summarize,
    /// Extract an article's main text (seed 003).
    ExtractContent,
    /// Check a summary's quality (seed 003).
    ValidateSummary,
    /// Generate information about a vocabulary item (seed 000).
    ItemInfoGeneration,
    /// Generate or find an image for an item (seed 000).
    ImageGeneration,
    /// Customise a test from an instruction (seed 000).
    TestCustomization,
    /// A chat session's answer (seed 000's deep-dive chat). Not a type of task: it names the
    /// provider attempts and usage rows of chat turns, which run outside the queue, so it is
    /// not in [`TaskType::ALL`] and a task of this type is refused at submit.
    Chat,
    /// A generic prompt, optionally answered as JSON matching a schema (pipeline stages).
    Prompt,
}

impl TaskType {
    /// Every type, for parsing and listing.
    pub const ALL: [TaskType; 8] = [
        Self::Echo,
        Self::Summarize,
        Self::ExtractContent,
        Self::ValidateSummary,
        Self::ItemInfoGeneration,
        Self::ImageGeneration,
        Self::TestCustomization,
        Self::Prompt,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Summarize => "summarize",
            Self::ExtractContent => "extract_content",
            Self::ValidateSummary => "validate_summary",
            Self::ItemInfoGeneration => "item_info_generation",
            Self::ImageGeneration => "image_generation",
            Self::TestCustomization => "test_customization",
            Self::Chat => "chat",
            Self::Prompt => "prompt",
        }
    }

    /// Seed 003's per-type default: summarize is HIGH (7) because a user waits for it;
    /// validation is background work (LOW, 3); everything else NORMAL (5).
    pub fn default_priority(self) -> Priority {
        match self {
            Self::Summarize => Priority::HIGH,
            Self::ValidateSummary => Priority::new(3).unwrap_or(Priority::NORMAL),
            _ => Priority::NORMAL,
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskType {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .chain([Self::Chat])
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|t| t.as_str()).collect();
                DomainError::Invalid(format!(
                    "unknown task type {s:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_defaults() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), t);
        }
        let err = "translate".parse::<TaskType>().unwrap_err().to_string();
        assert!(
            err.contains("unknown task type") && err.contains("echo"),
            "{err}"
        );
        assert_eq!(TaskType::Summarize.default_priority().value(), 7);
        assert_eq!(TaskType::Echo.default_priority().value(), 5);
    }
}
