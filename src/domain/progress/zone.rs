//! A user's time zone: where their days begin and end.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

/// An IANA time zone (`Asia/Tokyo`, `Europe/Berlin`); UTC unless the user set one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserTimeZone(Tz);

impl UserTimeZone {
    /// UTC, every user's zone until they set one.
    pub const UTC: Self = Self(Tz::UTC);

    /// Parses an IANA name, such as `Asia/Tokyo` or `UTC`.
    pub fn parse(name: &str) -> Result<Self, String> {
        name.parse::<Tz>()
            .map(Self)
            .map_err(|_| format!("time_zone {name:?} is not an IANA time zone (e.g. Asia/Tokyo)"))
    }

    /// The calendar day `at` falls on in this zone.
    pub fn day_of(self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.0).date_naive()
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Display for UserTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_zone() {
        // 2026-03-01 20:00 UTC is already 2026-03-02 in Tokyo (UTC+9).
        let at = DateTime::parse_from_rfc3339("2026-03-01T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tokyo = UserTimeZone::parse("Asia/Tokyo").unwrap();
        assert_eq!(tokyo.day_of(at).to_string(), "2026-03-02");
        assert_eq!(UserTimeZone::UTC.day_of(at).to_string(), "2026-03-01");
        assert_eq!(UserTimeZone::default(), UserTimeZone::UTC);
        assert_eq!(tokyo.name(), "Asia/Tokyo");
        assert!(UserTimeZone::parse("Mars/Olympus").is_err());
    }
}
