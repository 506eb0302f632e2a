//! Errors as one line of text for logs, reports and task errors.

/// The error and its causes on one line ("error sending request: ...: Connection refused"),
/// skipping a cause whose text the line already holds (many errors repeat their source's).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_causes_once() {
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(error_chain(&e), "outer: refused");
        let e = std::io::Error::other(Outer(std::io::Error::other("x")));
        assert_eq!(error_chain(&e), "outer: x");
    }
}
