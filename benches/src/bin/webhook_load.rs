//! Webhook delivery load: deliveries per second to a local receiver, and the latency from a
//! scanner's capture request to the webhook arriving at the integrator.
//!
//! ```text
//! cargo run --release -p palmlink-benches --bin webhook_load -- [EVENTS] [SUBSCRIPTIONS] [CAPTURES]
//! ```
//!
//! Throughput: `EVENTS` device pairings fan out to `SUBSCRIPTIONS` webhooks while the
//! receiver holds every request; the receiver is then released and the time to drain all
//! deliveries is measured. Latency: `CAPTURES` enrollment captures, each timed from the start
//! of the capture request to the arrival of its `enrollment.complete` webhook.
//!
//! With `PALMLINK_LOAD_DATABASE_URL=postgres://...`, `PALMLINK_LOAD_NODES` nodes (default 2)
//! run on that database (a fresh schema) and their webhook workers drain the deliveries
//! together; the API calls go to the first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use palmlink_benches::service::{arg, node_count, percentile, BenchService};
use serde_json::{json, Value};
use tokio::sync::watch;

/// The allocator of the `palmlink` binary (`server/src/main.rs`), so the service is measured
/// as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the receiver has seen.
struct Receiver {
    /// Requests are held until this turns true.
    open: watch::Receiver<bool>,
    /// Arrival time of each request, keyed by `webhook-id` and delivery.
    arrivals: Mutex<Vec<(String, Value, Instant)>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut open = r.open.clone();
    let _ = open.wait_for(|o| *o).await;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, body, Instant::now()));
    StatusCode::OK
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, bearer: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await;
        let r = r.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    /// Registers and pairs a scanner; returns its secret.
    async fn pair(&self, hardware_id: &str) -> String {
        let d = self
            .post(
                "/v1/devices",
                &self.token,
                json!({"device_name": "bench", "location": "lab"}),
            )
            .await;
        let code = d["data"]["pairing_code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let p = self
            .post(
                "/v1/device/pair",
                "",
                json!({"pairing_code": code, "hardware_id": hardware_id}),
            )
            .await;
        p["data"]["device_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A random palm template (xorshift; every block has a non-zero norm).
fn template(seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..10)
        .map(|_| {
            (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events = arg(1, 200);
    let subscriptions = arg(2, 10);
    let captures = arg(3, 200);

    let http = reqwest::Client::new();
    let database_url = std::env::var("PALMLINK_LOAD_DATABASE_URL").ok();
    let service = BenchService::start(&http, |config| {
        config.allow_http_webhooks = true;
        config.webhooks.timeout = Duration::from_secs(120);
        config.database_url = database_url.clone();
    })
    .await?;
    // More nodes on the same database: their webhook workers share the deliveries.
    let node_count = node_count(database_url.as_deref());
    let mut extra = Vec::new();
    for _ in 1..node_count {
        extra.push(BenchService::start_node(&service, |_| {}).await?);
    }
    let (gate, open) = watch::channel(false);
    let rx = Arc::new(Receiver {
        open,
        arrivals: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/hook/{n}", post(receive))
        .with_state(Arc::clone(&rx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_base = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let api = Api {
        http,
        base: service.base.clone(),
        token: service.token.clone(),
    };

    // Throughput.
    for n in 0..subscriptions {
        api.post(
            "/v1/webhooks",
            &api.token,
            json!({"name": format!("sub {n}"), "events": ["device.paired"], "endpoint": format!("{hook_base}/{n}")}),
        )
        .await;
    }
    let written = Instant::now();
    for i in 0..events {
        api.pair(&format!("hw-load-{i}")).await;
    }
    let write_time = written.elapsed();
    let expected = events * subscriptions;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let released = Instant::now();
    gate.send_replace(true);
    let drained = loop {
        let n = rx.arrivals.lock().unwrap_or_else(|e| e.into_inner()).len();
        if n >= expected {
            break released.elapsed();
        }
        anyhow::ensure!(
            released.elapsed() < Duration::from_secs(300),
            "only {n} of {expected} deliveries arrived"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let rate = expected as f64 / drained.as_secs_f64();

    // Capture-to-webhook latency, one subscription to enrollment.complete.
    api.post(
        "/v1/webhooks",
        &api.token,
        json!({"name": "latency", "events": ["enrollment.complete"], "endpoint": format!("{hook_base}/latency")}),
    )
    .await;
    let scanner = api.pair("hw-latency").await;
    let mut latencies = Vec::with_capacity(captures);
    let mut responses = Vec::with_capacity(captures);
    for i in 0..captures {
        let c = api
            .post(
                "/v1/enroll",
                &api.token,
                json!({"external_user_id": format!("user-{i}"), "hardware_id": "hw-latency", "palm_type": "right"}),
            )
            .await;
        let challenge = c["data"]["challenge_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let body = json!({"vendor": "mock", "captures": [{"palm_type": "right",
            "template": {"format": "f32", "blocks": template(i as u64 + 1)}, "quality": 0.9, "liveness": 0.99}]});
        let t0 = Instant::now();
        api.post(
            &format!("/v1/device/challenges/{challenge}/capture"),
            &scanner,
            body,
        )
        .await;
        responses.push(t0.elapsed().as_secs_f64() * 1000.0);
        let arrived = loop {
            let found = rx
                .arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .rev()
                .find(|(_, b, _)| b["data"]["challenge_id"] == challenge.as_str())
                .map(|(_, _, at)| *at);
            if let Some(at) = found {
                break at;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "no webhook for challenge {challenge}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        latencies.push((arrived - t0).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    responses.sort_by(f64::total_cmp);
    let r50 = percentile(&responses, 0.50);
    let r99 = percentile(&responses, 0.99);

    println!(
        "webhook delivery throughput ({})",
        match &database_url {
            Some(_) => format!("{node_count} nodes on one PostgreSQL database"),
            None => "one node on SQLite".to_owned(),
        }
    );
    println!(
        "  events written:        {events} pairings in {:.2} s",
        write_time.as_secs_f64()
    );
    println!("  subscriptions:         {subscriptions}");
    println!(
        "  deliveries:            {expected} drained in {:.3} s",
        drained.as_secs_f64()
    );
    println!("  deliveries/s:          {rate:.0}");
    let write_rate = events as f64 / write_time.as_secs_f64();
    println!(
        "  deliveries/s per event/s written: {:.1}",
        rate / write_rate
    );
    println!("capture-to-webhook latency ({captures} enrollment captures)");
    println!("  p50:                   {p50:.2} ms");
    println!("  p99:                   {p99:.2} ms");
    println!("  p99/p50:               {:.2}", p99 / p50);
    println!("  capture response p50:  {r50:.2} ms (p99 {r99:.2} ms)");
    println!("  webhook p50 / capture response p50: {:.2}", p50 / r50);
    for node in extra {
        node.stop().await?;
    }
    service.stop().await
}
