//! The shape shared by the event store's names (stream ids, event types): 1 to 200
//! characters, none of them whitespace or control characters, since they travel in URLs,
//! logs and `VARCHAR(200)` columns.

/// Gives a `struct $name(String)` its parsing, `TryFrom<String>` (for serde), `Into<String>`,
/// `Display` and `as_str`, refusing bad input with an error naming `$what`.
macro_rules! checked_name {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("Longest accepted ", $what, " (the `VARCHAR(200)` column).")]
            pub const MAX_LEN: usize = 200;

            #[doc = concat!("Validates a ", $what, ": 1 to 200 characters, none of them ")]
            #[doc = "whitespace or control characters."]
            pub fn parse(raw: &str) -> Result<Self, EventError> {
                Self::check(raw)?;
                Ok(Self(raw.to_owned()))
            }

            /// The rule of [`Self::parse`].
            fn check(raw: &str) -> Result<(), EventError> {
                if raw.is_empty()
                    || raw.chars().count() > Self::MAX_LEN
                    || raw.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(EventError::Invalid(format!(
                        "{} must be 1-{} characters without spaces or control characters",
                        $what,
                        Self::MAX_LEN
                    )));
                }
                Ok(())
            }

            /// The name as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = EventError;
            fn try_from(raw: String) -> Result<Self, EventError> {
                Self::check(&raw)?;
                Ok(Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(super) use checked_name;
