//! What the demo prints (text or one JSON object per line) and counts.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::receiver::Delivery;
use crate::scanner::ChallengeReport;

/// What the demo prints and counts.
pub(super) struct Out {
    pub(super) json: bool,
    pub(super) checks: usize,
    pub(super) failed: Vec<String>,
    pub(super) webhooks: usize,
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Out {
    pub(super) fn emit(&self, text: &str, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    pub(super) fn info(&self, text: &str) {
        self.emit(
            &format!("       {text}"),
            json!({"kind": "info", "message": text}),
        );
    }

    /// A checked step: counted, and a failure when `ok` is false.
    pub(super) fn step(
        &mut self,
        name: &str,
        ok: bool,
        latency: Option<Duration>,
        detail: &str,
        data: Value,
    ) {
        self.checks += 1;
        if !ok {
            self.failed.push(format!("{name}: {detail}"));
        }
        let latency_text = latency
            .map(|d| format!(" ({:.1} ms)", ms(d)))
            .unwrap_or_default();
        let detail_text = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        self.emit(
            &format!("{} {name}{detail_text}{latency_text}", if ok { "  ok  " } else { " FAIL " }),
            json!({"kind": "step", "step": name, "ok": ok, "latency_ms": latency.map(ms), "detail": detail, "data": data}),
        );
    }

    pub(super) fn webhook(&mut self, d: &Delivery, since: Option<Instant>) {
        self.webhooks += 1;
        let latency = since.map(|t| d.at.saturating_duration_since(t));
        let latency_text = latency
            .map(|l| format!(" {:.1} ms after the request", ms(l)))
            .unwrap_or_default();
        self.emit(
            &format!(
                "       webhook {} {} (signature {}){latency_text}",
                d.event_type,
                d.event_id,
                if d.signature_valid { "valid" } else { "INVALID" }
            ),
            json!({"kind": "webhook", "event_type": d.event_type, "x_link_event": d.header_event,
                   "event_id": d.event_id, "signature_valid": d.signature_valid, "api_key_valid": d.api_key_valid,
                   "challenge_id": d.data["challenge_id"], "latency_ms": latency.map(ms), "data": d.data}),
        );
    }

    pub(super) fn scanner(&self, r: &ChallengeReport) {
        self.emit(
            &format!("       scanner: {}", r.line()),
            json!({"kind": "scanner", "report": r}),
        );
    }
}
