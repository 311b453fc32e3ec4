//! When a failed delivery is tried again.
//!
//! The default schedule follows the Standard Webhooks reference implementation: retries 5 s,
//! 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after each failure (about 27.6 hours in all), each
//! delay stretched by up to 20 % of random jitter so that receivers recovering from an outage
//! are not hit by every sender at once.

use std::time::Duration;

use rand::Rng as _;
use reqwest::header::HeaderMap;

/// Delays between attempts: `delays[i]` follows failed attempt `i + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let secs = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        RetrySchedule {
            delays: secs.into_iter().map(Duration::from_secs).collect(),
        }
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = String;

    /// Parses a comma-separated list of durations such as `5s,5m,30m,2h,5h,10h,10h` (units
    /// `ms`, `s`, `m`, `h`, `d`; a bare number is seconds). An empty list means no retries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RetrySchedule { delays })
    }
}

impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .delays
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses `250ms`, `5s`, `5m`, `2h`, `1d` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{raw}`"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "invalid duration unit in `{raw}` (use ms, s, m, h or d)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{raw}` is too large"))
}

impl RetrySchedule {
    /// A schedule of these delays.
    pub fn new(delays: Vec<Duration>) -> RetrySchedule {
        RetrySchedule { delays }
    }

    /// The delays.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The delay after failed attempt number `attempt` (1-based) of a cycle, with jitter, or
    /// `None` when the schedule is exhausted.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        let jitter = rand::rng().random_range(0.0..0.2);
        Some(base.mul_f64(1.0 + jitter))
    }
}

/// Longest wait a receiver can ask for with `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The wait a `429` or `503` response asks for in `Retry-After` (seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if let Ok(secs) = raw.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(raw)
            .ok()?
            .with_timezone(&chrono::Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn default_covers_more_than_a_day_and_retries_first_within_30s() {
        let s = RetrySchedule::default();
        let total: Duration = s.delays().iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600));
        let first = s.delay_after(1).unwrap();
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(30));
        assert!(s.delay_after(8).is_none());
        assert!(s.delay_after(0).is_none());
    }

    #[test]
    fn parses_and_prints() {
        let s: RetrySchedule = "1s, 250ms,2m,1h,1d,3".parse().unwrap();
        let ms: Vec<u128> = s.delays().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![1000, 250, 120_000, 3_600_000, 86_400_000, 3000]);
        assert_eq!(s.to_string().parse::<RetrySchedule>().unwrap(), s);
        assert!("5x".parse::<RetrySchedule>().is_err());
        assert!("-1s".parse::<RetrySchedule>().is_err());
        assert!("99999999999999999999d".parse::<RetrySchedule>().is_err());
        assert_eq!("".parse::<RetrySchedule>().unwrap().delays().len(), 0);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let s: RetrySchedule = "10s".parse().unwrap();
        for _ in 0..100 {
            let d = s.delay_after(1).unwrap();
            assert!(d >= Duration::from_secs(10) && d < Duration::from_secs(12));
        }
    }

    #[test]
    fn reads_retry_after() {
        let now = chrono::Utc::now();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after", HeaderValue::from_static("9999999"));
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        let later = (now + chrono::Duration::seconds(120)).to_rfc2822();
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        let got = retry_after(&h, now).unwrap();
        assert!(got <= Duration::from_secs(120) && got >= Duration::from_secs(118));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
