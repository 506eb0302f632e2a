//! One field of a payload schema: what values it takes, and the check that names it when a
//! value is wrong.

use serde_json::Value;

use crate::domain::DomainError;

/// Longest model name a payload may ask for.
pub const MAX_MODEL_LEN: usize = 100;

/// The values a field takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A string of `min..=max` characters after trimming (`min` 1 means "not blank").
    Text { min: usize, max: usize },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A language code such as `en`, `ja` or `pt-BR` (BCP 47 shape, 2-35 characters).
    Language,
    /// An absolute `http` or `https` URL of at most 2,048 bytes.
    HttpUrl,
    /// A whole number in `min..=max`.
    Int { min: i64, max: i64 },
    /// A number in `min..=max`.
    Number { min: f64, max: f64 },
    /// `true` or `false`.
    Bool,
    /// A list of `1..=max_items` items, each a non-blank string of at most `max_len`
    /// characters or an object (an item record of the caller's, kept as given).
    Items { max_items: usize, max_len: usize },
    /// A JSON object whose own fields are checked like a payload's (unknown ones refused).
    Object(&'static [Field]),
    /// Any JSON value (echo's payload).
    Any,
}

/// Whether a payload must carry a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Always.
    Required,
    /// Never.
    Optional,
    /// At least one field of the named group must be present (e.g. `text` or `content`).
    OneOf(&'static str),
}

/// A named field of a payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// Its values.
    pub kind: Kind,
    /// Whether it must be present.
    pub need: Need,
    /// What it means, for the README table and `GET /api/v1/task-types`.
    pub doc: &'static str,
}

impl Field {
    /// A required field.
    pub const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            need: Need::Required,
            doc,
        }
    }

    /// An optional field.
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            need: Need::Optional,
            doc,
        }
    }

    /// A field of a group of which at least one must be present.
    pub const fn one_of(
        group: &'static str,
        name: &'static str,
        kind: Kind,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            need: Need::OneOf(group),
            doc,
        }
    }

    /// Checks `value`, found at `path` (e.g. `payload.text`).
    pub fn check(&self, path: &str, value: &Value) -> Result<(), DomainError> {
        self.kind.check(path, value)
    }
}

impl Kind {
    /// Checks `value` against this kind; errors name `path`.
    pub fn check(&self, path: &str, value: &Value) -> Result<(), DomainError> {
        let bad = |what: String| Err(DomainError::Invalid(format!("{path} {what}")));
        match *self {
            Kind::Any => Ok(()),
            Kind::Text { min, max } => {
                let s = string(path, value)?;
                let len = s.trim().chars().count();
                if len < min {
                    return bad(if min == 1 {
                        "must not be empty".into()
                    } else {
                        format!("must be at least {min} characters")
                    });
                }
                if s.chars().count() > max {
                    return bad(format!(
                        "is {} characters; at most {max} are allowed",
                        s.chars().count()
                    ));
                }
                Ok(())
            }
            Kind::Choice(choices) => {
                let s = string(path, value)?;
                if choices.contains(&s) {
                    Ok(())
                } else {
                    bad(format!("must be one of {}, got {s:?}", choices.join(", ")))
                }
            }
            Kind::Language => {
                let s = string(path, value)?;
                let shaped = (2..=35).contains(&s.len())
                    && s.split('-').all(|part| {
                        !part.is_empty()
                            && part.len() <= 8
                            && part.chars().all(|c| c.is_ascii_alphanumeric())
                    });
                if shaped {
                    Ok(())
                } else {
                    bad(format!(
                        "must be a language code such as \"en\" or \"pt-BR\", got {s:?}"
                    ))
                }
            }
            Kind::HttpUrl => {
                let s = string(path, value)?;
                if s.len() > 2048 {
                    return bad("is longer than 2048 bytes".into());
                }
                if is_http_url(s) {
                    Ok(())
                } else {
                    bad(format!("must be an absolute http or https URL, got {s:?}"))
                }
            }
            Kind::Int { min, max } => match value.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                _ if value.is_number() => {
                    bad(format!("must be a whole number from {min} to {max}"))
                }
                _ => bad(format!("must be a whole number, got {}", kind_of(value))),
            },
            Kind::Number { min, max } => match value.as_f64() {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                Some(_) => bad(format!("must be a number from {min} to {max}")),
                None => bad(format!("must be a number, got {}", kind_of(value))),
            },
            Kind::Bool => match value {
                Value::Bool(_) => Ok(()),
                other => bad(format!("must be true or false, got {}", kind_of(other))),
            },
            Kind::Items { max_items, max_len } => {
                let Value::Array(items) = value else {
                    return bad(format!("must be a list, got {}", kind_of(value)));
                };
                if items.is_empty() {
                    return bad("must list at least one item".into());
                }
                if items.len() > max_items {
                    return bad(format!(
                        "has {} items; at most {max_items} are allowed",
                        items.len()
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    match item {
                        Value::Object(_) => {}
                        _ => Kind::Text {
                            min: 1,
                            max: max_len,
                        }
                        .check(&at, item)
                        .map_err(|_| {
                            DomainError::Invalid(format!(
                                "{at} must be a non-empty string of at most {max_len} characters or an object"
                            ))
                        })?,
                    }
                }
                Ok(())
            }
            Kind::Object(fields) => {
                let Value::Object(_) = value else {
                    return bad(format!("must be an object, got {}", kind_of(value)));
                };
                super::check_fields(path, fields, value, true)
            }
        }
    }
}

fn string<'a>(path: &str, value: &'a Value) -> Result<&'a str, DomainError> {
    value.as_str().ok_or_else(|| {
        DomainError::Invalid(format!("{path} must be a string, got {}", kind_of(value)))
    })
}

/// `http://` or `https://`, a host, no spaces: the shape a fetch can use. Whether the host is
/// public is decided when the article is fetched (`EXTRACT_ALLOW_PRIVATE`).
fn is_http_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// How a JSON value is named in an error message.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(kind: Kind, v: Value) -> String {
        kind.check("payload.f", &v).unwrap_err().to_string()
    }

    #[test]
    fn text_bounds_and_types() {
        let k = Kind::Text { min: 1, max: 5 };
        assert!(k.check("p", &json!("abc")).is_ok());
        assert_eq!(err(k, json!("  ")), "payload.f must not be empty");
        assert!(err(k, json!("abcdef")).contains("at most 5"));
        assert_eq!(err(k, json!(3)), "payload.f must be a string, got a number");
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/a?b",
            "http://10.0.0.1:8080/",
            "HTTPS://[::1]/x",
        ] {
            assert!(Kind::HttpUrl.check("p", &json!(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x",
            "https://",
            "example.com",
            "https:// spaced.com",
            "javascript:alert(1)",
        ] {
            assert!(Kind::HttpUrl.check("p", &json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_choices_languages_items() {
        assert!(err(Kind::Int { min: 1, max: 4 }, json!(5)).contains("from 1 to 4"));
        assert!(err(Kind::Int { min: 1, max: 4 }, json!(1.5)).contains("from 1 to 4"));
        assert!(err(Kind::Int { min: 1, max: 4 }, json!("2")).contains("got a string"));
        assert!(err(Kind::Choice(&["a", "b"]), json!("c")).contains("one of a, b"));
        assert!(Kind::Language.check("p", &json!("pt-BR")).is_ok());
        assert!(Kind::Language.check("p", &json!("english please")).is_err());
        let items = Kind::Items {
            max_items: 2,
            max_len: 10,
        };
        assert!(items.check("p", &json!(["a", {"id": 1}])).is_ok());
        assert!(err(items, json!([])).contains("at least one"));
        assert!(err(items, json!(["a", "b", "c"])).contains("at most 2"));
        assert!(err(items, json!(["a", 7])).contains("payload.f[1]"));
    }
}
