//! The simulated scanner (`palmlink scanner`) and the one-command demo (`palmlink demo`).
//!
//! The simulator speaks plain HTTP (loopback and development set-ups): it pairs with a code,
//! long-polls its challenges and answers each with synthetic captures of one simulated
//! person, so an enrollment followed by a verification from the same simulator matches.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::config::Config;

/// Settings of a simulated scanner.
#[derive(Clone, Debug)]
pub struct ScannerOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Pairing code to pair with (unless `device_secret` is given).
    pub pairing_code: Option<String>,
    /// Credential of an already paired scanner.
    pub device_secret: Option<String>,
    /// Hardware id to pair as.
    pub hardware_id: String,
    /// Which simulated person presents their palms.
    pub subject: u64,
    /// Amplitude of the capture noise (0 gives identical captures).
    pub noise: f32,
    /// Stop after this many challenges.
    pub max_challenges: Option<usize>,
}

/// A small JSON-over-HTTP client.
#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let response = self
            .client
            .request(req.body(Full::new(payload))?)
            .await
            .context("request failed")?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn expect(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, bearer, body).await?;
        anyhow::ensure!(status == want, "{path}: HTTP {status}: {value}");
        Ok(value)
    }
}

/// A deterministic generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (x as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// One capture of a simulated person's palm: their fixed palm plus noise.
fn synthetic_capture(subject: u64, palm: &str, noise: f32, nonce: u64) -> Vec<Vec<f32>> {
    let side = if palm == "left" { 1 } else { 2 };
    let mut base = Rng::new(subject.wrapping_mul(31).wrapping_add(side));
    let mut jitter = Rng::new(nonce ^ 0xA5A5_5A5A);
    (0..10)
        .map(|_| {
            (0..64)
                .map(|_| base.next() + noise * jitter.next())
                .collect()
        })
        .collect()
}

/// Runs a simulated scanner; `log` receives one JSON object per step.
pub async fn run_scanner(opts: ScannerOptions, mut log: impl FnMut(Value)) -> anyhow::Result<()> {
    let http = Http::new(&opts.server);
    let secret = match (&opts.device_secret, &opts.pairing_code) {
        (Some(secret), _) => secret.clone(),
        (None, Some(code)) => {
            let body = json!({"pairing_code": code, "hardware_id": opts.hardware_id});
            let paired = http
                .expect(Method::POST, "/v1/device/pair", None, Some(&body), 200)
                .await?;
            log(
                json!({"step": "paired", "device_id": paired["data"]["device_id"], "hardware_id": opts.hardware_id}),
            );
            paired["data"]["device_secret"]
                .as_str()
                .context("no device_secret in the pairing response")?
                .to_owned()
        }
        (None, None) => anyhow::bail!("give a pairing code or a device secret"),
    };
    let mut handled = 0usize;
    let mut nonce = 0u64;
    loop {
        let polled = http
            .expect(
                Method::GET,
                "/v1/device/challenges?wait_ms=25000",
                Some(&secret),
                None,
                200,
            )
            .await?;
        for c in polled["data"].as_array().cloned().unwrap_or_default() {
            let id = c["challenge_id"].as_str().unwrap_or_default().to_owned();
            let palms: Vec<&str> = match c["palm_type"].as_str() {
                Some("both") => vec!["left", "right"],
                Some("left") => vec!["left"],
                _ => vec!["right"],
            };
            let captures: Vec<Value> = palms
                .iter()
                .map(|p| {
                    nonce += 1;
                    json!({"palm_type": p, "template": {"format": "f32", "blocks": synthetic_capture(opts.subject, p, opts.noise, nonce)},
                           "quality": 0.95, "liveness": 0.99})
                })
                .collect();
            let started = Instant::now();
            let body = json!({"vendor": "mock", "captures": captures});
            let (status, reply) = http
                .call(
                    Method::POST,
                    &format!("/v1/device/challenges/{id}/capture"),
                    Some(&secret),
                    Some(&body),
                )
                .await?;
            log(json!({
                "step": "captured",
                "challenge_id": id,
                "type": c["type"],
                "http_status": status,
                "status": reply["data"]["status"],
                "latency_ms": started.elapsed().as_millis() as u64,
            }));
            handled += 1;
            if opts.max_challenges.is_some_and(|max| handled >= max) {
                return Ok(());
            }
        }
    }
}

async fn wait_for_result(http: &Http, token: &str, id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = http
            .expect(
                Method::GET,
                &format!("/v1/challenges/{id}"),
                Some(token),
                None,
                200,
            )
            .await?;
        if c["data"]["status"] != "pending" {
            return Ok(c["data"].clone());
        }
        anyhow::ensure!(Instant::now() < deadline, "challenge {id} still pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The whole loop on loopback: server, tenant, client, token, device, simulated scanner,
/// enrollment, verification and identification, each step printed with its latency.
pub async fn run_demo(mut config: Config) -> anyhow::Result<()> {
    let print = |v: Value| println!("{v}");
    config.listen = "127.0.0.1:0".parse()?;
    let t0 = Instant::now();
    let server = crate::start(config.clone()).await?;
    let base = format!("http://{}", server.addr());
    print(
        json!({"step": "server started", "url": base, "data_dir": config.data_dir, "latency_ms": t0.elapsed().as_millis() as u64}),
    );

    let store = crate::open_store(&config).await?;
    let tenant = crate::admin::create_tenant(store.as_ref(), "demo").await?;
    let tenant_id = tenant["tenant_id"].as_str().context("tenant id")?.parse()?;
    let client = crate::admin::create_client(store.as_ref(), tenant_id, "demo app", None).await?;
    print(
        json!({"step": "tenant and client created", "tenant_id": tenant["tenant_id"], "client_id": client["client_id"]}),
    );

    let http = Http::new(&base);
    let step = Instant::now();
    let body = json!({"grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"]});
    let token = http
        .expect(Method::POST, "/v1/auth/token", None, Some(&body), 200)
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    print(json!({"step": "token issued", "latency_ms": step.elapsed().as_millis() as u64}));

    let step = Instant::now();
    let device = http
        .expect(
            Method::POST,
            "/v1/devices",
            Some(&token),
            Some(&json!({"device_name": "Demo scanner", "location": "Desk"})),
            201,
        )
        .await?;
    let code = device["data"]["pairing_code"]
        .as_str()
        .context("pairing_code")?
        .to_owned();
    let device_id = device["data"]["device_id"]
        .as_str()
        .context("device_id")?
        .to_owned();
    print(
        json!({"step": "device registered", "pairing_code": code, "latency_ms": step.elapsed().as_millis() as u64}),
    );

    let options = ScannerOptions {
        server: base.clone(),
        pairing_code: Some(code),
        device_secret: None,
        hardware_id: "demo-scanner-01".to_owned(),
        subject: 42,
        noise: 0.3,
        max_challenges: Some(3),
    };
    let scanner = tokio::spawn(run_scanner(options, |v| {
        println!("{}", json!({"scanner": v}))
    }));
    let step = Instant::now();
    loop {
        let d = http
            .expect(
                Method::GET,
                &format!("/v1/devices/{device_id}"),
                Some(&token),
                None,
                200,
            )
            .await?;
        if d["data"]["status"] == "paired" {
            break;
        }
        anyhow::ensure!(
            step.elapsed() < Duration::from_secs(30),
            "the scanner did not pair"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    print(json!({"step": "device paired", "latency_ms": step.elapsed().as_millis() as u64}));

    let requests = [
        (
            "enrollment",
            "/v1/enroll",
            json!({"external_user_id": "demo-user", "hardware_id": "demo-scanner-01", "palm_type": "right"}),
        ),
        (
            "verification",
            "/v1/verify",
            json!({"external_user_id": "demo-user", "hardware_id": "demo-scanner-01"}),
        ),
        (
            "identification",
            "/v1/identify",
            json!({"hardware_id": "demo-scanner-01", "top_k": 3}),
        ),
    ];
    for (name, path, body) in requests {
        let step = Instant::now();
        let created = http
            .expect(Method::POST, path, Some(&token), Some(&body), 201)
            .await?;
        let id = created["data"]["challenge_id"]
            .as_str()
            .context("challenge_id")?
            .to_owned();
        let done = wait_for_result(&http, &token, &id).await?;
        let result = &done["result"];
        print(json!({
            "step": format!("{name} {}", done["status"].as_str().unwrap_or("?")),
            "matched": result.get("matched"),
            "scores": result.get("scores"),
            "top_candidate": result.get("candidates").and_then(|c| c.get(0)).map(|c| c["external_user_id"].clone()),
            "latency_ms": step.elapsed().as_millis() as u64,
        }));
    }
    scanner.await.context("scanner task")??;
    let events = store.undispatched_events(100).await?;
    print(json!({
        "step": "events recorded for webhook delivery",
        "events": events.iter().map(|e| json!({"event_id": e.event_id, "event_type": e.event_type})).collect::<Vec<_>>(),
    }));
    server.stop().await?;
    print(json!({"step": "done", "total_ms": t0.elapsed().as_millis() as u64}));
    Ok(())
}
