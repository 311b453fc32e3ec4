//! Captures as the scanner sends them, checked against what their challenge asks for and
//! decoded into engine templates.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use palmlink_engine::{Layout, Template, TemplateError};
use palmlink_store::{Challenge, ChallengePalm, FailureReason, PalmType, TrustPolicy};
use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult, FieldError};

/// A scanner's captures for a challenge (`POST /v1/device/challenges/{id}/capture`).
#[derive(Debug, Deserialize)]
pub struct CaptureSubmission {
    /// Extractor vendor, e.g. `mock` (default `unknown`).
    #[serde(default)]
    pub vendor: Option<String>,
    /// One capture per palm the challenge asks for.
    pub captures: Vec<CaptureItem>,
}

/// One palm capture.
#[derive(Debug, Deserialize)]
pub struct CaptureItem {
    /// Which palm.
    pub palm_type: PalmType,
    /// The template.
    pub template: TemplateBody,
    /// Capture quality, 0..1.
    #[serde(default)]
    pub quality: Option<f64>,
    /// Liveness score, 0..1.
    #[serde(default)]
    pub liveness: Option<f64>,
}

/// A template as blocks of numbers (`format: "f32"`, `blocks`) or as base64 of little-endian
/// f32 (`format: "f32le_base64"`, `data`). A flat object rather than a tagged enum, so the
/// numbers are parsed once, straight into place.
#[derive(Debug, Deserialize)]
pub struct TemplateBody {
    /// `f32` or `f32le_base64`.
    pub format: String,
    /// With `f32`: `blocks` arrays of `dim` numbers.
    #[serde(default)]
    pub blocks: Option<Vec<Vec<f32>>>,
    /// With `f32le_base64`: base64 of `blocks * dim` little-endian f32.
    #[serde(default)]
    pub data: Option<String>,
}

/// What a capture showed besides its template, as kept with its challenge.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureReport {
    /// Which palm.
    pub palm_type: PalmType,
    /// Capture quality, 0..1, if the scanner said.
    pub quality: Option<f64>,
    /// Liveness score, 0..1, if the scanner said.
    pub liveness: Option<f64>,
}

/// The quality and liveness of each capture.
pub(crate) fn reports(body: &CaptureSubmission) -> Vec<CaptureReport> {
    body.captures
        .iter()
        .map(|c| CaptureReport {
            palm_type: c.palm_type,
            quality: c.quality,
            liveness: c.liveness,
        })
        .collect()
}

/// Why the trust policy refuses these captures, if it does: `liveness` when any capture's
/// liveness is below the minimum, else `quality` when any capture's quality is. A value the
/// scanner left out counts as below any minimum above 0 (unknown liveness is not proof of
/// life).
pub(crate) fn refused(policy: &TrustPolicy, reports: &[CaptureReport]) -> Option<FailureReason> {
    let below = |v: Option<f64>, min: f64| min > 0.0 && v.is_none_or(|v| v < min);
    if reports
        .iter()
        .any(|r| below(r.liveness, policy.min_liveness))
    {
        Some(FailureReason::Liveness)
    } else if reports.iter().any(|r| below(r.quality, policy.min_quality)) {
        Some(FailureReason::Quality)
    } else {
        None
    }
}

/// A capture that passed its checks.
pub(crate) struct Probe {
    pub palm: PalmType,
    pub template: Template,
}

fn template_error(prefix: &str, err: &TemplateError, base64: bool) -> FieldError {
    let blocks = if base64 {
        format!("{prefix}.data")
    } else {
        format!("{prefix}.blocks")
    };
    match err {
        TemplateError::WrongBlockCount { expected, actual } => {
            FieldError::new(blocks, format!("expected {expected} blocks, got {actual}"))
        }
        TemplateError::WrongBlockDim {
            block,
            expected,
            actual,
        } => FieldError::new(
            format!("{blocks}[{block}]"),
            format!("expected {expected} values, got {actual}"),
        ),
        TemplateError::WrongLength { expected, actual } => FieldError::new(
            blocks,
            format!("expected {expected} values or bytes, got {actual}"),
        ),
        TemplateError::NonFinite { block, index } => FieldError::new(
            format!("{blocks}[{block}]"),
            format!("value {index} is not a finite float32"),
        ),
        TemplateError::ZeroNormBlock { block } => {
            FieldError::new(format!("{blocks}[{block}]"), "block has zero norm")
        }
        other => FieldError::new(blocks, other.to_string()),
    }
}

/// Decodes a template body into an engine template; the error names the field under
/// `prefix`.
pub(crate) fn decode_template(prefix: &str, body: &TemplateBody) -> Result<Template, FieldError> {
    let layout = Layout::DEFAULT;
    match (body.format.as_str(), &body.blocks, &body.data) {
        ("f32", Some(blocks), _) => {
            Template::from_blocks(layout, blocks).map_err(|e| template_error(prefix, &e, false))
        }
        ("f32le_base64", _, Some(data)) => {
            let bytes = STANDARD
                .decode(data.trim())
                .map_err(|_| FieldError::new(format!("{prefix}.data"), "is not valid base64"))?;
            Template::from_le_bytes(layout, &bytes).map_err(|e| template_error(prefix, &e, true))
        }
        ("f32", None, _) => Err(FieldError::new(format!("{prefix}.blocks"), "is required")),
        ("f32le_base64", _, None) => Err(FieldError::new(format!("{prefix}.data"), "is required")),
        _ => Err(FieldError::new(
            format!("{prefix}.format"),
            "must be f32 or f32le_base64",
        )),
    }
}

/// Checks the captures against what the challenge asks for and decodes them: 422 naming
/// every field that is wrong.
pub(crate) fn probes(challenge: &Challenge, body: &CaptureSubmission) -> DomainResult<Vec<Probe>> {
    let mut errors = Vec::new();
    if let Some(v) = &body.vendor {
        if v.is_empty() || v.len() > 64 {
            errors.push(FieldError::new("vendor", "must be 1-64 characters"));
        }
    }
    let palms: Vec<PalmType> = body.captures.iter().map(|c| c.palm_type).collect();
    let (fits, expected) = match challenge.palm_type {
        ChallengePalm::Both => (
            palms.len() == 2 && palms.contains(&PalmType::Left) && palms.contains(&PalmType::Right),
            "one left and one right capture".to_owned(),
        ),
        ChallengePalm::Any => (
            palms.len() == 1,
            "exactly one capture of the left or right palm".to_owned(),
        ),
        ChallengePalm::Left => (
            palms == [PalmType::Left],
            "exactly one capture of the left palm".to_owned(),
        ),
        ChallengePalm::Right => (
            palms == [PalmType::Right],
            "exactly one capture of the right palm".to_owned(),
        ),
    };
    if !fits {
        errors.push(FieldError::new(
            "captures",
            format!("this challenge needs {expected}"),
        ));
    }
    let mut out = Vec::with_capacity(body.captures.len());
    for (i, c) in body.captures.iter().enumerate() {
        let prefix = format!("captures[{i}]");
        for (name, v) in [("quality", c.quality), ("liveness", c.liveness)] {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                errors.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "must be from 0 to 1",
                ));
            }
        }
        match decode_template(&format!("{prefix}.template"), &c.template) {
            Ok(template) => out.push(Probe {
                palm: c.palm_type,
                template,
            }),
            Err(e) => errors.push(e),
        }
    }
    DomainError::check(errors)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use palmlink_store::DuplicateCheck;

    use super::*;

    fn report(quality: Option<f64>, liveness: Option<f64>) -> CaptureReport {
        CaptureReport {
            palm_type: PalmType::Left,
            quality,
            liveness,
        }
    }

    fn policy(min_quality: f64, min_liveness: f64) -> TrustPolicy {
        TrustPolicy {
            min_quality,
            min_liveness,
            duplicate_check: DuplicateCheck::Flag,
            retention_days: None,
        }
    }

    #[test]
    fn minimums_refuse_what_is_below_or_unknown() {
        let p = policy(0.5, 0.9);
        assert_eq!(refused(&p, &[report(Some(0.5), Some(0.9))]), None);
        assert_eq!(
            refused(&p, &[report(Some(0.5), Some(0.89))]),
            Some(FailureReason::Liveness)
        );
        assert_eq!(
            refused(&p, &[report(Some(0.49), Some(0.95))]),
            Some(FailureReason::Quality)
        );
        assert_eq!(
            refused(&p, &[report(Some(0.9), None)]),
            Some(FailureReason::Liveness)
        );
        assert_eq!(
            refused(&p, &[report(None, Some(0.95))]),
            Some(FailureReason::Quality)
        );
        // Liveness is named first when both fall short; one bad capture of two is enough.
        assert_eq!(
            refused(&p, &[report(Some(0.1), Some(0.1))]),
            Some(FailureReason::Liveness)
        );
        assert_eq!(
            refused(
                &p,
                &[report(Some(0.9), Some(0.95)), report(Some(0.2), Some(0.95))]
            ),
            Some(FailureReason::Quality)
        );
    }

    #[test]
    fn zero_minimums_accept_anything_even_nothing() {
        assert_eq!(refused(&policy(0.0, 0.0), &[report(None, None)]), None);
        assert_eq!(
            refused(&policy(0.0, 0.0), &[report(Some(0.0), Some(0.0))]),
            None
        );
    }
}
