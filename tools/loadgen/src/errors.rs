//! Failed calls, counted by kind with one example each: a run reports its failures, it never
//! panics on them.

use std::collections::BTreeMap;

use ai_integration_service::error_text::error_chain;
use serde::Serialize;

/// Why a call failed, as a short stable kind plus one detail message.
#[derive(Debug, Clone)]
pub struct CallError {
    /// What the report groups by (`grpc Unavailable`, `http 429`, `http timeout`, ...).
    pub kind: String,
    /// One message of that kind, shown as the example.
    pub detail: String,
}

impl CallError {
    /// An error of `kind` with `detail`.
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// A gRPC status, kind by its code.
    pub fn grpc(s: &tonic::Status) -> Self {
        Self::new(format!("grpc {:?}", s.code()), s.message())
    }

    /// A reqwest failure, kind by where it failed.
    pub fn reqwest(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "http timeout"
        } else if e.is_connect() {
            "http connect"
        } else if e.is_decode() {
            "http decode"
        } else {
            "http transport"
        };
        // The chain of sources says what actually went wrong (reset, refused, ...).
        Self::new(kind, error_chain(e))
    }
}

/// How often one kind of error happened, with one example.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    /// Failed calls.
    pub calls: u64,
    /// The first message seen.
    pub example: String,
}

/// Counts `calls` failed calls of `e`'s kind in `errors`.
pub fn count_error(errors: &mut BTreeMap<String, ErrorCount>, e: &CallError, calls: u64) {
    errors
        .entry(e.kind.clone())
        .and_modify(|c| c.calls += calls)
        .or_insert_with(|| ErrorCount {
            calls,
            example: e.detail.clone(),
        });
}

/// All errors of a run, keyed `"<phase>: <kind>"`.
#[derive(Default)]
pub struct ErrorTally {
    /// What the report lists.
    pub kinds: BTreeMap<String, ErrorCount>,
}

impl ErrorTally {
    /// Adds one phase's errors under its name.
    pub fn absorb(&mut self, phase: &str, errors: &BTreeMap<String, ErrorCount>) {
        for (kind, count) in errors {
            self.kinds.insert(format!("{phase}: {kind}"), count.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_keeping_the_first_example() {
        let mut errors = BTreeMap::new();
        count_error(&mut errors, &CallError::new("http 429", "first"), 1);
        count_error(&mut errors, &CallError::new("http 429", "second"), 2);
        count_error(&mut errors, &CallError::new("http 500", "boom"), 1);
        assert_eq!(errors["http 429"].calls, 3);
        assert_eq!(errors["http 429"].example, "first");
        let mut tally = ErrorTally::default();
        tally.absorb("submit", &errors);
        let keys: Vec<_> = tally.kinds.keys().map(String::as_str).collect();
        assert_eq!(keys, ["submit: http 429", "submit: http 500"]);
    }
}
