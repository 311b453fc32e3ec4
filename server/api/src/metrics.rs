//! Counters exposed on `GET /metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: [AtomicU64; 5],
    challenges_created: AtomicU64,
    challenges_completed: AtomicU64,
    rate_limited: AtomicU64,
}

impl Metrics {
    /// Counts a challenge created.
    pub(crate) fn count_challenge_created(&self) {
        self.challenges_created.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a challenge completed by a capture.
    pub(crate) fn count_challenge_completed(&self) {
        self.challenges_completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused by a rate limiter.
    pub(crate) fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response by status class.
    pub(crate) fn record_status(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus exposition, with the gallery size passed in.
    pub(crate) fn render(&self, gallery_templates: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP palmlink_http_responses_total HTTP responses by status class.\n");
        out.push_str("# TYPE palmlink_http_responses_total counter\n");
        for (i, c) in self.requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "palmlink_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "palmlink_challenges_created_total",
                "Challenges created.",
                &self.challenges_created,
            ),
            (
                "palmlink_challenges_completed_total",
                "Challenges completed by a capture.",
                &self.challenges_completed,
            ),
            (
                "palmlink_rate_limited_total",
                "Requests refused by the rate limiter.",
                &self.rate_limited,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP palmlink_gallery_templates Live templates in the loaded galleries.\n\
             # TYPE palmlink_gallery_templates gauge\npalmlink_gallery_templates {gallery_templates}"
        );
        out
    }
}
