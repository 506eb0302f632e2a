//! The service's notion of "now".

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at microsecond precision: what PostgreSQL stores, so a time written and
/// read back compares equal (page tokens rely on it) in both databases.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
