//! The trust policy end to end: captures below the tenant's minimum quality or liveness,
//! the duplicate-identity check of enrollments, and `challenge.failed` for every end of a
//! challenge without a decision, delivered to a real receiver; the retention period and the
//! purge of finished work past it.

mod duplicates;
mod ends;
mod policy;
mod retention;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::{Harness, Tenant};
use crate::webhooks::subscriptions::create;

/// Sets the tenant's trust values, keeping its thresholds and policy; returns the settings
/// now in force.
pub async fn set_trust(h: &Harness, t: &Tenant, trust: Value) -> Value {
    let now = h.get("/v1/settings/matching", &t.token).await;
    assert_eq!(now.status, 200, "{}", now.body);
    let mut body = now.body["data"].clone();
    for (k, v) in trust.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let r = h
        .call(
            Method::PUT,
            "/v1/settings/matching",
            Some(&t.token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].clone()
}

/// Subscribes `rx` to `events`; returns the signing secret.
pub async fn subscribe(h: &Harness, t: &Tenant, rx: &Receiver, events: &[&str]) -> String {
    let d = create(
        h,
        &t.token,
        json!({"name": "trust", "events": events, "endpoint": rx.url}),
    )
    .await;
    d["signing_secret"].as_str().expect("secret").to_owned()
}

/// The bodies of the events of `event_type` the receiver has seen, waiting until there are
/// `n` (at most 15 s), then a moment more to catch any extra.
pub async fn events_of(rx: &Receiver, event_type: &str, n: usize) -> Vec<Value> {
    let of_type = |seen: &[crate::support::receiver::Received]| -> Vec<Value> {
        seen.iter()
            .map(|r| r.json())
            .filter(|b| b["event_type"] == event_type)
            .collect()
    };
    rx.wait_until(15, |s| of_type(s).len() >= n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    of_type(&rx.seen())
}

/// A capture entry with the given quality and liveness (`None`: left out).
pub fn scored(
    palm_type: &str,
    blocks: &[Vec<f32>],
    quality: Option<f64>,
    liveness: Option<f64>,
) -> Value {
    let mut c = json!({"palm_type": palm_type, "template": {"format": "f32", "blocks": blocks}});
    if let Some(q) = quality {
        c["quality"] = json!(q);
    }
    if let Some(l) = liveness {
        c["liveness"] = json!(l);
    }
    c
}
