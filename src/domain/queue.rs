//! Named queues (seed 000's TaskQueue aggregate): the name a task is routed to and the kinds of
//! queue there are.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A queue's name: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
///
/// Interned, so it is `Copy` and compares by pointer-sized value: the set of names is small and
/// fixed by configuration (plus whatever older task rows name), and queue entries are copied on
/// every push and pop.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(&'static str);

/// Every name seen so far; each is leaked once.
fn interned() -> &'static Mutex<HashSet<&'static str>> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl QueueName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    /// The queue every task type uses unless configured otherwise.
    pub fn default_queue() -> Self {
        Self::intern("default")
    }

    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(DomainError::Invalid(format!(
                "queue name {raw:?} must be 1 to {} characters of a-z, 0-9, _ and -",
                Self::MAX_LEN
            )));
        }
        Ok(Self::intern(raw))
    }

    fn intern(raw: &str) -> Self {
        let mut names = interned().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = names.get(raw) {
            return Self(name);
        }
        let name: &'static str = Box::leak(raw.to_owned().into_boxed_str());
        names.insert(name);
        Self(name)
    }

    /// The name.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl Default for QueueName {
    fn default() -> Self {
        Self::default_queue()
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueName({})", self.0)
    }
}

impl FromStr for QueueName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::parse(s)
    }
}

impl Serialize for QueueName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How a queue orders and paces its tasks (seed 000's QueueType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// First in, first out; priorities are ignored.
    Standard,
    /// Highest priority first, FIFO within a priority.
    Priority,
    /// Like `Priority`, but tasks start no faster than a configured rate (across instances).
    RateLimited,
}

impl QueueKind {
    /// Every kind.
    pub const ALL: [QueueKind; 3] = [Self::Standard, Self::Priority, Self::RateLimited];

    /// The configuration and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Priority => "priority",
            Self::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for QueueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "unknown queue type {s:?}; expected standard, priority or rate_limited"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_interned() {
        let a = QueueName::parse("images").unwrap();
        let b: QueueName = "images".parse().unwrap();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(QueueName::default().as_str(), "default");
        for bad in ["", "Images", "a b", "a:b", &"x".repeat(65)] {
            assert!(QueueName::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"images\"");
        assert_eq!(serde_json::from_str::<QueueName>(&json).unwrap(), a);
    }

    #[test]
    fn kinds_parse() {
        for k in QueueKind::ALL {
            assert_eq!(k.as_str().parse::<QueueKind>().unwrap(), k);
        }
        assert!("fifo".parse::<QueueKind>().is_err());
    }
}
