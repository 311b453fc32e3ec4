//! Time: a clock the services read, and how instants are shown. Instants are microseconds
//! since the Unix epoch, shown as RFC 3339 UTC with microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// One second in microseconds.
pub const SECOND: i64 = 1_000_000;

/// Where the services read the time.
pub trait Clock: Send + Sync {
    /// Microseconds since the Unix epoch, now.
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        Utc::now().timestamp_micros()
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-06-08T14:08:43.151246Z`.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Microseconds of an RFC 3339 timestamp, if it is one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Microseconds in a duration, saturating.
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_show_with_microseconds_and_read_back() {
        let at = 1_780_927_723_151_246;
        let text = rfc3339(at);
        assert_eq!(text, "2026-06-08T14:08:43.151246Z");
        assert_eq!(parse_rfc3339(&text), Some(at));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
