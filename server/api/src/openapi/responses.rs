//! The response bodies as the OpenAPI document describes them. The handlers shape their
//! JSON in `views.rs`; these mirror it field for field, so a generated client parses every
//! response into a typed model (the in-process tests check the two agree).

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::results::*;

/// The error body of every failure.
#[derive(ToSchema)]
pub(crate) struct Error {
    /// Always `false`.
    success: bool,
    /// Human-readable description.
    message: String,
    /// Machine code, e.g. `not_found`, `unauthorized`, `rate_limited`.
    code: String,
    /// One entry per invalid field (on 422).
    errors: Option<Vec<FieldError>>,
    /// RFC 6749 error code (token endpoint only).
    error: Option<String>,
    /// RFC 6749 error description (token endpoint only).
    error_description: Option<String>,
}

/// The error body of a 422: the fields that failed validation.
#[derive(ToSchema)]
pub(crate) struct ValidationError {
    /// Always `false`.
    success: bool,
    /// Human-readable description.
    message: String,
    /// Machine code, e.g. `validation_failed`.
    code: String,
    /// One entry per invalid field.
    errors: Vec<FieldError>,
}

/// One invalid field of a request.
#[derive(ToSchema)]
pub(crate) struct FieldError {
    /// Path of the field, e.g. `device_name` or `captures[0].template.blocks[3]`.
    field: String,
    /// What is wrong with it.
    message: String,
}

/// An issued access token (fields at top level, as in the seed reference).
#[derive(ToSchema)]
pub(crate) struct TokenResponse {
    /// Always `true`.
    success: bool,
    /// The signed JWT.
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Lifetime in seconds.
    expires_in: u64,
    /// Space-separated granted scopes.
    scope: String,
}

/// The JSON Web Key Set that verifies access tokens.
#[derive(ToSchema)]
pub(crate) struct Jwks {
    /// Public keys (RFC 7517).
    #[schema(value_type = Vec<Object>)]
    keys: Vec<Value>,
}

/// Liveness.
#[derive(ToSchema)]
pub(crate) struct Health {
    /// Always `true`.
    success: bool,
    /// `ok`.
    status: String,
}

/// Readiness.
#[derive(ToSchema)]
pub(crate) struct Ready {
    /// Always `true`.
    success: bool,
    /// `ready`.
    status: String,
    /// Live templates in the node's galleries.
    templates: u64,
}

/// Where a device is in its life.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeviceStatus {
    /// Registered, waiting for its pairing code.
    PendingPair,
    /// Paired with a scanner.
    Paired,
    /// Revoked.
    Revoked,
}

/// A device record.
#[derive(ToSchema)]
pub(crate) struct Device {
    /// Device id.
    device_id: Uuid,
    /// Label.
    device_name: String,
    /// Physical location.
    location: String,
    /// Life-cycle state.
    status: DeviceStatus,
    /// The scanner's hardware id, once paired.
    hardware_id: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, once paired.
    paired_at: Option<String>,
    /// RFC 3339: paired_at + 90 days.
    cert_valid_until: Option<String>,
    /// RFC 3339: the scanner's last call.
    last_seen_at: Option<String>,
}

/// A registered device with its one-time pairing code.
#[derive(ToSchema)]
pub(crate) struct RegisteredDevice {
    /// Device id.
    device_id: Uuid,
    /// Label.
    device_name: String,
    /// Physical location.
    location: String,
    /// `pending_pair`.
    status: DeviceStatus,
    /// Null until paired.
    hardware_id: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// Null until paired.
    paired_at: Option<String>,
    /// Null until paired.
    cert_valid_until: Option<String>,
    /// Null until the scanner calls.
    last_seen_at: Option<String>,
    /// One-time code to enter on the scanner.
    pairing_code: String,
    /// Seconds the code stays valid.
    expires_in: u64,
}

/// A fresh pairing code.
#[derive(ToSchema)]
pub(crate) struct PairingCode {
    /// Device id.
    device_id: Uuid,
    /// One-time code to enter on the scanner.
    pairing_code: String,
    /// Seconds the code stays valid.
    expires_in: u64,
    /// `pending_pair`.
    status: DeviceStatus,
}

/// A paired scanner with its credential (shown once).
#[derive(ToSchema)]
pub(crate) struct PairedDevice {
    /// Device id.
    device_id: Uuid,
    /// The scanner's hardware id.
    hardware_id: String,
    /// Label.
    device_name: String,
    /// Physical location.
    location: String,
    /// `paired`.
    status: DeviceStatus,
    /// RFC 3339.
    paired_at: String,
    /// RFC 3339: paired_at + 90 days.
    cert_valid_until: String,
    /// The scanner's bearer credential on `/v1/device/*`.
    device_secret: String,
}

/// What a challenge asks for.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChallengeType {
    /// Store the captured palm(s).
    Enroll,
    /// 1:1 against one user.
    Verify,
    /// 1:N over the tenant's gallery.
    Identify,
}

/// Where a challenge is in its life.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChallengeStatus {
    /// Waiting for its capture.
    Pending,
    /// Captured and decided.
    Completed,
    /// Ended without a decision (`failure_reason`).
    Failed,
    /// Cancelled by the scanner.
    Cancelled,
    /// Not captured in time.
    Expired,
}

/// A challenge as the integrator sees it; `result` once completed.
#[derive(ToSchema)]
pub(crate) struct Challenge {
    /// Challenge id.
    challenge_id: Uuid,
    /// What it asks for.
    #[serde(rename = "type")]
    kind: ChallengeType,
    /// The capturing scanner's hardware id.
    hardware_id: String,
    /// The capturing scanner's device id.
    device_id: Uuid,
    /// The palm(s) it asks for.
    palm_type: ChallengePalm,
    /// Life-cycle state.
    status: ChallengeStatus,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    expires_at: String,
    /// The integrator's metadata, echoed.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The person (enroll and verify).
    external_user_id: Option<String>,
    /// Candidates asked for (identify).
    top_k: Option<u32>,
    /// RFC 3339, once ended.
    finished_at: Option<String>,
    /// Why it failed.
    failure_reason: Option<String>,
    /// The decision, once completed: the `data` of its webhook event.
    result: Option<ChallengeResult>,
    /// Each capture's palm, quality and liveness, once captured.
    captures: Option<Vec<CaptureReport>>,
}

/// A challenge as a scanner sees it when polling.
#[derive(ToSchema)]
pub(crate) struct ScannerChallenge {
    /// Challenge id.
    challenge_id: Uuid,
    /// What it asks for.
    #[serde(rename = "type")]
    kind: ChallengeType,
    /// The palm(s) to capture.
    palm_type: ChallengePalm,
    /// RFC 3339.
    expires_at: String,
    /// The integrator's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The person (enroll and verify).
    external_user_id: Option<String>,
    /// Candidates asked for (identify).
    top_k: Option<u32>,
}

/// An enrolled palm.
#[derive(ToSchema)]
pub(crate) struct EnrolledPalm {
    /// The template's id.
    feature_id: Uuid,
    /// Which palm.
    palm_type: PalmType,
    /// RFC 3339.
    enrolled_at: String,
    /// Extractor vendor.
    vendor: String,
    /// Each capture's palm, quality and liveness.
    captures: Option<Vec<CaptureReport>>,
    /// Other users' templates that match this enrollment (the duplicate check).
    duplicates: Option<Vec<Duplicate>>,
}

/// A user with their enrolled palms.
#[derive(ToSchema)]
pub(crate) struct User {
    /// Internal user id.
    user_id: Uuid,
    /// The tenant's user id.
    external_user_id: String,
    /// RFC 3339.
    created_at: String,
    /// Enrolled palms.
    palms: Vec<EnrolledPalm>,
}

/// Matching settings in force.
#[derive(ToSchema)]
pub(crate) struct Settings {
    /// One threshold per block.
    thresholds: Vec<f64>,
    /// `all_thresholds`, `mean` or `k_of_n`.
    match_policy: String,
    /// Blocks that must pass under `k_of_n`.
    k: Option<u32>,
    /// Lowest capture quality accepted.
    min_quality: Option<f64>,
    /// Lowest liveness score accepted.
    min_liveness: Option<f64>,
    /// `off`, `flag` or `reject`.
    duplicate_check: Option<String>,
    /// Days finished work is kept; `null`: for ever.
    retention_days: Option<u32>,
}

/// A webhook subscription (never its secrets).
#[derive(ToSchema)]
pub(crate) struct Webhook {
    /// Webhook id.
    webhook_id: Uuid,
    /// Display name.
    name: String,
    /// Subscribed event keys.
    events: Vec<String>,
    /// The URL called.
    endpoint: String,
    /// Whether an `X-API-Key` is sent.
    api_key_set: bool,
    /// Whether deliveries are made.
    active: bool,
    /// Why the service disabled it.
    disabled_reason: Option<String>,
    /// RFC 3339: first failure of the current run.
    failing_since: Option<String>,
    /// RFC 3339: when the previous signing secret stops signing.
    previous_secret_expires_at: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

/// A webhook with its signing secret (shown once).
#[derive(ToSchema)]
pub(crate) struct WebhookWithSecret {
    /// Webhook id.
    webhook_id: Uuid,
    /// Display name.
    name: String,
    /// Subscribed event keys.
    events: Vec<String>,
    /// The URL called.
    endpoint: String,
    /// Whether an `X-API-Key` is sent.
    api_key_set: bool,
    /// Whether deliveries are made.
    active: bool,
    /// Why the service disabled it.
    disabled_reason: Option<String>,
    /// RFC 3339: first failure of the current run.
    failing_since: Option<String>,
    /// RFC 3339: when the previous signing secret stops signing.
    previous_secret_expires_at: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// `whsec_...`: the Standard Webhooks signing secret.
    signing_secret: String,
}

/// One delivery attempt.
#[derive(ToSchema)]
pub(crate) struct Attempt {
    /// 1 for the first.
    attempt: u32,
    /// RFC 3339.
    attempted_at: String,
    /// The endpoint's status, if it answered.
    status_code: Option<u16>,
    /// Round trip.
    latency_ms: Option<u64>,
    /// Why it failed.
    error: Option<String>,
}

/// Delivery state.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryStatus {
    /// Waiting for an attempt.
    Pending,
    /// Acknowledged with a 2xx.
    Succeeded,
    /// Given up.
    Failed,
}

/// A delivery with its attempt log.
#[derive(ToSchema)]
pub(crate) struct Delivery {
    /// `del_<uuid>`.
    delivery_id: String,
    /// `evt_...`.
    event_id: String,
    /// Event key.
    event_type: String,
    /// State.
    status: DeliveryStatus,
    /// Attempts made.
    attempts: u32,
    /// RFC 3339, while pending.
    next_attempt_at: Option<String>,
    /// The last answer's status.
    last_status_code: Option<u16>,
    /// The last failure.
    last_error: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, once acknowledged.
    delivered_at: Option<String>,
    /// Every attempt.
    attempt_log: Vec<Attempt>,
}

/// Failed deliveries queued again.
#[derive(ToSchema)]
pub(crate) struct Recovered {
    /// Webhook id.
    webhook_id: Uuid,
    /// RFC 3339: the lower bound asked for.
    since: String,
    /// Deliveries queued.
    requeued: u64,
}

/// Who or what acted, or was acted on.
#[derive(ToSchema)]
pub(crate) struct AuditParty {
    /// `client`, `device`, `operator`, or the resource's kind.
    #[serde(rename = "type")]
    kind: String,
    /// Its id.
    id: Option<String>,
}

/// One entry of the audit log.
#[derive(ToSchema)]
pub(crate) struct AuditEntry {
    /// Position in the tenant's chain, from 1.
    sequence: u64,
    /// RFC 3339.
    at: String,
    /// Who acted.
    actor: AuditParty,
    /// What was done, e.g. `client.rotated`.
    action: String,
    /// What it was done to.
    resource: AuditParty,
    /// How it ended.
    outcome: String,
    /// Decision details (scores, thresholds, policy; never a template).
    #[schema(value_type = Value)]
    details: Option<Value>,
    /// The previous entry's hash (64 zeros for the first).
    prev_hash: String,
    /// Hex SHA-256 of `prev_hash` and this entry's canonical JSON without `hash`.
    hash: String,
}

/// Declares `{success, data, message?}` envelopes around a data schema.
macro_rules! envelopes {
    ($($(#[$doc:meta])* $name:ident => $data:ty;)*) => {$(
        $(#[$doc])*
        #[derive(ToSchema)]
        pub(crate) struct $name {
            /// Always `true`.
            success: bool,
            /// The resource.
            data: $data,
            /// What to do next, on some creations.
            message: Option<String>,
        }
    )*};
}

/// Declares `{success, data: [...], total, offset, limit}` pages of a data schema.
macro_rules! pages {
    ($($(#[$doc:meta])* $name:ident => $data:ty;)*) => {$(
        $(#[$doc])*
        #[derive(ToSchema)]
        pub(crate) struct $name {
            /// Always `true`.
            success: bool,
            /// This page.
            data: Vec<$data>,
            /// Rows in the whole list.
            total: u64,
            /// Rows skipped.
            offset: u64,
            /// Page size.
            limit: u64,
        }
    )*};
}

envelopes! {
    /// A device.
    DeviceResponse => Device;
    /// A registered device.
    RegisteredDeviceResponse => RegisteredDevice;
    /// A fresh pairing code.
    PairingCodeResponse => PairingCode;
    /// A paired scanner.
    PairedDeviceResponse => PairedDevice;
    /// A challenge.
    ChallengeResponse => Challenge;
    /// The pending challenges of a scanner.
    ScannerChallengesResponse => Vec<ScannerChallenge>;
    /// A user.
    UserResponse => User;
    /// Matching settings.
    SettingsResponse => Settings;
    /// A webhook.
    WebhookResponse => Webhook;
    /// A webhook with its signing secret.
    WebhookWithSecretResponse => WebhookWithSecret;
    /// A delivery.
    DeliveryResponse => Delivery;
    /// Failed deliveries queued again.
    RecoveredResponse => Recovered;
}

pages! {
    /// A page of devices.
    DevicePage => Device;
    /// A page of challenges.
    ChallengePage => Challenge;
    /// A page of users.
    UserPage => User;
    /// A page of webhooks.
    WebhookPage => Webhook;
    /// A page of deliveries.
    DeliveryPage => Delivery;
    /// A page of audit entries.
    AuditPage => AuditEntry;
}
