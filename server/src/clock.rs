//! Wall-clock helpers: timestamps are kept as microseconds since the Unix epoch and shown as
//! RFC 3339 UTC with microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-06-08T14:08:43.151246Z`.
pub(crate) fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One second in microseconds.
pub(crate) const SECOND: i64 = 1_000_000;
