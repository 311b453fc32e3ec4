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
    #[schema(pattern = "^client_credentials$")]
    grant_type: String,
    /// The client's id (a UUID), unless sent with HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// The client's secret, unless sent with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// Space-separated subset of the client's scopes (default: all of them).
    #[schema(
        pattern = r"^(devices|enroll|verify|identify|users|webhooks)( (devices|enroll|verify|identify|users|webhooks))*$",
        nullable = false
    )]
    scope: Option<String>,
}

/// A scanner to register.
#[derive(ToSchema)]
pub(crate) struct RegisterDevice {
    /// Label, 1-255 characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    device_name: String,
    /// Physical location, 1-255 characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    location: String,
}

/// A scanner's pairing request.
#[derive(ToSchema)]
pub(crate) struct PairDevice {
    /// The code shown at registration.
    #[schema(min_length = 1, max_length = 64, pattern = "^ *[!-~][ -~]*$")]
    pairing_code: String,
    /// The scanner's own identifier: 1-128 of `[A-Za-z0-9_.:-]`.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    hardware_id: String,
}

/// One palm.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Palm {
    /// Left palm.
    Left,
    /// Right palm.
    Right,
}

/// A one-palm enrollment to create.
#[derive(ToSchema)]
pub(crate) struct Enrollment {
    /// The tenant's identifier of the person, 1-255 characters (`user_id`, the getting-started
    /// guide's name, is accepted in its place).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*\S[^\x00]*$")]
    hardware_id: String,
    /// The palm to enroll.
    palm_type: Palm,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A two-palm enrollment to create (`palm_type` is `both`).
#[derive(ToSchema)]
pub(crate) struct EnrollmentBoth {
    /// The tenant's identifier of the person, 1-255 characters (`user_id`, the getting-started
    /// guide's name, is accepted in its place).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*\S[^\x00]*$")]
    hardware_id: String,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A verification to create.
#[derive(ToSchema)]
pub(crate) struct Verification {
    /// The tenant's identifier of the person, 1-255 characters (`user_id`, the getting-started
    /// guide's name, is accepted in its place).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*\S[^\x00]*$")]
    hardware_id: String,
    /// The palm presented; defaults to what the user enrolled.
    palm_type: Option<Palm>,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// An identification to create.
#[derive(ToSchema)]
pub(crate) struct IdentifyChallenge {
    /// Hardware id of the paired scanner that captures.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*\S[^\x00]*$")]
    hardware_id: String,
    /// Restrict the search to one palm.
    palm_type: Option<Palm>,
    /// Candidates to return, 1-50 (default 5).
    #[schema(minimum = 1, maximum = 50)]
    top_k: Option<i64>,
    /// Opaque object echoed on the challenge and its result.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A scanner's cancellation.
#[derive(ToSchema)]
pub(crate) struct CancelChallenge {
    /// Why the scanner gave up.
    reason: CancelReason,
}

/// Why a scanner cancels a challenge.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CancelReason {
    /// The person walked away or declined.
    UserCancelled,
    /// No capture of sufficient quality.
    Quality,
    /// The scanner gave up waiting.
    Timeout,
    /// A presentation attack was suspected.
    Spoof,
}

/// How a template is written.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TemplateFormat {
    /// `blocks` arrays of numbers.
    F32,
    /// `data`: base64 of little-endian f32.
    F32leBase64,
}

/// A template: blocks of numbers, or base64 of little-endian f32.
#[derive(ToSchema)]
pub(crate) struct TemplateBody {
    /// How the values are written.
    format: TemplateFormat,
    /// With `f32`: `blocks` arrays of `dim` numbers.
    blocks: Option<Vec<Vec<f32>>>,
    /// With `f32le_base64`: base64 of `blocks * dim` little-endian f32.
    data: Option<String>,
}

/// One palm capture.
#[derive(ToSchema)]
pub(crate) struct CaptureItem {
    /// The captured palm.
    palm_type: Palm,
    /// The template.
    template: TemplateBody,
    /// Capture quality, 0..1.
    #[schema(minimum = 0, maximum = 1)]
    quality: Option<f64>,
    /// Liveness score, 0..1.
    #[schema(minimum = 0, maximum = 1)]
    liveness: Option<f64>,
}

/// A scanner's captures for a challenge.
#[derive(ToSchema)]
pub(crate) struct CaptureSubmission {
    /// Extractor vendor, e.g. `mock` (default `unknown`).
    vendor: Option<String>,
    /// One capture per palm the challenge asks for.
    #[schema(min_items = 1, max_items = 2)]
    captures: Vec<CaptureItem>,
}

/// Matching settings.
#[derive(ToSchema)]
pub(crate) struct MatchingSettings {
    /// One threshold per block, each in -1..1.
    #[schema(min_items = 10, max_items = 10)]
    thresholds: Vec<f64>,
    /// `all_thresholds`, `mean` or `k_of_n` (which needs `k`).
    match_policy: MatchPolicy,
    /// Blocks that must pass under `k_of_n`, 1-10.
    #[schema(minimum = 1, maximum = 10)]
    k: Option<i64>,
    /// Lowest capture quality accepted, 0..1 (default 0; absent in a PUT: unchanged).
    #[schema(minimum = 0, maximum = 1)]
    min_quality: Option<f64>,
    /// Lowest liveness score accepted, 0..1 (default 0; absent in a PUT: unchanged).
    #[schema(minimum = 0, maximum = 1)]
    min_liveness: Option<f64>,
    /// `off`, `flag` (default) or `reject` (absent in a PUT: unchanged).
    duplicate_check: Option<DuplicateCheck>,
    /// Days finished challenges, events and delivery logs are kept, 1-36500; `null` (the
    /// default) keeps them for ever (absent in a PUT: unchanged).
    #[schema(minimum = 1, maximum = 36500)]
    retention_days: Option<i64>,
}

/// What an enrollment does with other users' matching templates.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DuplicateCheck {
    /// No search.
    Off,
    /// Report them in the result.
    Flag,
    /// Fail the enrollment.
    Reject,
}

/// How per-block scores become a decision.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MatchPolicy {
    /// Every block reaches its threshold.
    AllThresholds,
    /// The mean score reaches the mean threshold.
    Mean,
    /// At least `k` blocks reach their thresholds.
    KOfN,
}

/// An event key, or an alias of one.
#[derive(ToSchema)]
pub(crate) enum EventKey {
    /// A scanner paired.
    #[serde(rename = "device.paired")]
    DevicePaired,
    /// An enrollment completed.
    #[serde(rename = "enrollment.complete")]
    EnrollmentComplete,
    /// A verification completed.
    #[serde(rename = "verification.complete")]
    VerificationComplete,
    /// An identification completed.
    #[serde(rename = "identification.complete")]
    IdentificationComplete,
    /// Alias of `enrollment.complete`.
    #[serde(rename = "user.enrolled")]
    UserEnrolled,
    /// Alias of `verification.complete`.
    #[serde(rename = "user.verified")]
    UserVerified,
}

/// A webhook subscription to create.
#[derive(ToSchema)]
pub(crate) struct NewWebhook {
    /// Display name, unique in the tenant, 1-255 characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    name: String,
    /// Event keys or aliases.
    #[schema(min_items = 1)]
    events: Vec<EventKey>,
    /// The https URL to call: a public address (plain http and private addresses only where
    /// the operator allows them).
    #[schema(format = "uri", min_length = 1, max_length = 2048)]
    endpoint: String,
    /// Sent as `X-API-Key` when set: printable ASCII, at most 1024 bytes.
    #[schema(max_length = 1024, pattern = "^[ -~]*$")]
    api_key: Option<String>,
}

/// Changes to a webhook subscription; absent fields stay.
#[derive(ToSchema)]
pub(crate) struct WebhookChanges {
    /// New name.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*\S[^\x00]*$")]
    name: Option<String>,
    /// New event keys or aliases.
    #[schema(min_items = 1)]
    events: Option<Vec<EventKey>>,
    /// New endpoint.
    #[schema(format = "uri", min_length = 1, max_length = 2048)]
    endpoint: Option<String>,
    /// New API key; `null` clears it.
    #[schema(max_length = 1024, pattern = "^[ -~]*$")]
    api_key: Option<String>,
    /// `true` re-enables a disabled subscription.
    active: Option<bool>,
}

/// A new signing secret.
#[derive(ToSchema)]
pub(crate) struct SecretRotation {
    /// How long the previous secret keeps signing: 0 to 604800 seconds (default 86400).
    #[schema(minimum = 0, maximum = 604800)]
    grace_period_seconds: Option<i64>,
}

/// Failed deliveries to queue again.
#[derive(ToSchema)]
pub(crate) struct Recovery {
    /// RFC 3339: deliveries created at or after this time.
    #[schema(format = DateTime)]
    since: String,
}
