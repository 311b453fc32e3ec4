//! The demo's webhook receiver: it checks each delivery's signature with an implementation
//! of its own of the Standard Webhooks scheme, as a receiver's library would.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::mpsc;

/// The `X-API-Key` the demo's webhook subscription sets and its receiver checks.
pub(super) const RECEIVER_API_KEY: &str = "demo-receiver-key";

/// Checks a Standard Webhooks signature header (`v1,<base64>` entries separated by spaces)
/// against the HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed by the decoded bytes of a
/// `whsec_` secret.
pub fn verify_signature(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let Ok(key_bytes) = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key_bytes);
    let mut message = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    header.split_whitespace().any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|sig| STANDARD.decode(sig).ok())
            .is_some_and(|sig| aws_lc_rs::hmac::verify(&key, &message, &sig).is_ok())
    })
}

/// One delivery received by the demo's webhook receiver.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub(super) at: Instant,
    pub(super) event_type: String,
    pub(super) header_event: Option<String>,
    pub(super) event_id: String,
    pub(super) data: Value,
    pub(super) signature_valid: bool,
    pub(super) api_key_valid: bool,
}

#[derive(Clone)]
pub(super) struct Receiver {
    pub(super) tx: mpsc::UnboundedSender<Delivery>,
    pub(super) secret: Arc<Mutex<Option<String>>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let secret = receiver
        .secret
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let signature_valid = match (
        secret,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
    ) {
        (Some(secret), Some(id), Some(ts), Some(sig)) => {
            verify_signature(&secret, id, ts, &body, sig)
        }
        _ => false,
    };
    let delivery = Delivery {
        at,
        event_type: value["event_type"].as_str().unwrap_or_default().to_owned(),
        header_event: header(&headers, "x-link-event").map(str::to_owned),
        event_id: value["event_id"].as_str().unwrap_or_default().to_owned(),
        data: value["data"].clone(),
        signature_valid,
        api_key_valid: header(&headers, "x-api-key") == Some(RECEIVER_API_KEY),
    };
    let _ = receiver.tx.send(delivery);
    StatusCode::OK
}
