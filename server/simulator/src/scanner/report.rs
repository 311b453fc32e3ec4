//! What a simulated scanner reports of each challenge it answered.

use serde::Serialize;
use serde_json::Value;

use super::CaptureInfo;

/// The outcome of one answered challenge, as the scanner logs it.
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeReport {
    /// The challenge.
    pub challenge_id: String,
    /// `enroll`, `verify` or `identify`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the challenge asked for: `left`, `right`, `both` or `any`.
    pub palm_type: String,
    /// The person the challenge is about, when it names one.
    pub external_user_id: Option<String>,
    /// The identity whose palm was presented (none when the challenge could not be answered).
    pub identity: Option<u64>,
    /// Whether that was an impostor presentation.
    pub impostor: bool,
    /// The captures submitted.
    pub captures: Vec<CaptureInfo>,
    /// `completed`, `failed`, `cancelled` (the simulator could not answer) or `rejected`
    /// (the service refused the capture).
    pub outcome: String,
    /// HTTP status of the capture submission (or of the cancellation).
    pub http_status: Option<u16>,
    /// The decision, for verifications and identifications.
    pub matched: Option<bool>,
    /// Milliseconds from receiving the challenge to the service's answer to the capture.
    pub latency_ms: f64,
    /// Why the challenge was not completed.
    pub error: Option<String>,
    /// The result the service returned.
    pub result: Option<Value>,
}

impl ChallengeReport {
    /// One line of text for the log.
    pub fn line(&self) -> String {
        let who = match (&self.external_user_id, self.identity) {
            (Some(user), Some(id)) => format!(
                "{user} <- identity {id}{}",
                if self.impostor { " (impostor)" } else { "" }
            ),
            (None, Some(id)) => format!(
                "identity {id}{}",
                if self.impostor { " (impostor)" } else { "" }
            ),
            (Some(user), None) => user.clone(),
            (None, None) => "-".to_owned(),
        };
        let captures: Vec<String> = self
            .captures
            .iter()
            .map(|c| match c.capture_index {
                Some(i) => format!("{} #{i} q={:.2}", c.palm_type, c.quality),
                None => format!("{} enrollment q={:.2}", c.palm_type, c.quality),
            })
            .collect();
        let decision = match self.matched {
            Some(true) => " matched",
            Some(false) => " not matched",
            None => "",
        };
        let error = self
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        format!(
            "{} {} [{}] {who} [{}] -> {}{decision}{error} in {:.1} ms",
            self.kind,
            self.challenge_id,
            self.palm_type,
            captures.join(", "),
            self.outcome,
            self.latency_ms
        )
    }
}
