//! The request bodies as the OpenAPI document describes them. The handlers parse the
//! domain's input types; these mirror their JSON form for the document (the domain knows
//! nothing of OpenAPI).

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// The client-credentials grant (RFC 6749 §4.4). With HTTP Basic client authentication the
/// body carries only `grant_type` and `scope`.
#[derive(ToSchema)]
pub(crate) struct TokenRequest {
    /// `client_credentials`.
    grant_type: String,
    /// The client's id (a UUID), unless sent with HTTP Basic.
    client_id: Option<String>,
    /// The client's secret, unless sent with HTTP Basic.
    client_secret: Option<String>,
    /// Space-separated subset of the client's scopes (default: all of them).
    scope: Option<String>,
}

/// A scanner to register.
#[derive(ToSchema)]
pub(crate) struct RegisterDevice {
    /// Label, 1-255 characters.
    device_name: String,
    /// Physical location, 1-255 characters.
    location: String,
}

/// A scanner's pairing request.
#[derive(ToSchema)]
pub(crate) struct PairDevice {
    /// The code shown at registration.
    pairing_code: String,
    /// The scanner's own identifier: 1-128 of `[A-Za-z0-9_.:-]`.
    hardware_id: String,
}

/// An enrollment or verification to create.
#[derive(ToSchema)]
pub(crate) struct SubjectChallenge {
    /// The tenant's identifier of the person (alias `user_id`).
    external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    hardware_id: String,
    /// `left` or `right`: required for a one-palm enrollment; for a verification, defaults
    /// to what the user enrolled.
    palm_type: Option<String>,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// An identification to create.
#[derive(ToSchema)]
pub(crate) struct IdentifyChallenge {
    /// Hardware id of the paired scanner that captures.
    hardware_id: String,
    /// Restrict the search to one palm: `left` or `right`.
    palm_type: Option<String>,
    /// Candidates to return, 1-50 (default 5).
    top_k: Option<i64>,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A scanner's cancellation.
#[derive(ToSchema)]
pub(crate) struct CancelChallenge {
    /// `user_cancelled`, `quality`, `timeout` or `spoof`.
    reason: String,
}

/// A template: blocks of numbers, or base64 of little-endian f32.
#[derive(ToSchema)]
pub(crate) struct TemplateBody {
    /// `f32` or `f32le_base64`.
    format: String,
    /// With `f32`: `blocks` arrays of `dim` numbers.
    blocks: Option<Vec<Vec<f32>>>,
    /// With `f32le_base64`: base64 of `blocks * dim` little-endian f32.
    data: Option<String>,
}

/// One palm capture.
#[derive(ToSchema)]
pub(crate) struct CaptureItem {
    /// `left` or `right`.
    palm_type: String,
    /// The template.
    template: TemplateBody,
    /// Capture quality, 0..1.
    quality: Option<f64>,
    /// Liveness score, 0..1.
    liveness: Option<f64>,
}

/// A scanner's captures for a challenge.
#[derive(ToSchema)]
pub(crate) struct CaptureSubmission {
    /// Extractor vendor, e.g. `mock` (default `unknown`).
    vendor: Option<String>,
    /// One capture per palm the challenge asks for.
    captures: Vec<CaptureItem>,
}

/// Matching settings.
#[derive(ToSchema)]
pub(crate) struct MatchingSettings {
    /// One threshold per block, each in -1..1.
    thresholds: Vec<f64>,
    /// `all_thresholds`, `mean` or `k_of_n`.
    match_policy: String,
    /// Blocks that must pass under `k_of_n`.
    k: Option<i64>,
}

/// A webhook subscription to create.
#[derive(ToSchema)]
pub(crate) struct NewWebhook {
    /// Display name, unique in the tenant.
    name: String,
    /// Event keys or aliases.
    events: Vec<String>,
    /// The https URL to call.
    endpoint: String,
    /// Sent as `X-API-Key` when set.
    api_key: Option<String>,
}

/// Changes to a webhook subscription; absent fields stay.
#[derive(ToSchema)]
pub(crate) struct WebhookChanges {
    /// New name.
    name: Option<String>,
    /// New event keys or aliases.
    events: Option<Vec<String>>,
    /// New endpoint.
    endpoint: Option<String>,
    /// New API key; `null` clears it.
    api_key: Option<String>,
    /// `true` re-enables a disabled subscription.
    active: Option<bool>,
}

/// A new signing secret.
#[derive(ToSchema)]
pub(crate) struct SecretRotation {
    /// How long the previous secret keeps signing: 0 to 604800 seconds (default 86400).
    grace_period_seconds: Option<i64>,
}

/// Failed deliveries to queue again.
#[derive(ToSchema)]
pub(crate) struct Recovery {
    /// RFC 3339: deliveries created at or after this time.
    since: String,
}
