//! `palmlink demo`: the whole loop on loopback in one command.
//!
//! In a fresh temporary data directory it starts the service on a free loopback port (with
//! plain-http loopback webhooks allowed), creates a tenant and an OAuth client, gets a token,
//! starts a webhook receiver on another loopback port and subscribes it, registers a device
//! and pairs a simulated scanner ([`crate::scanner`]), enrolls three users (one with both
//! palms), runs a genuine and an impostor verification, a verification with the second palm,
//! and two identifications (an enrolled user and a stranger). It prints each step, each
//! webhook received and its latency, and a summary; it fails unless every decision is the
//! expected one and every webhook carries a valid signature.
//!
//! With `--json` every line is one JSON object with a `kind`: `start`, `step`, `webhook`,
//! `scanner`, `info` or `summary`.
//!
//! When the service build has no webhook delivery (`POST /v1/webhooks` answers 404), the
//! demo follows each challenge with `GET /v1/challenges/{id}` instead and says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::routing::post;
use axum::Router;
use palmlink_api::Config;
use palmlink_domain::{OperatorActor, Operators, SystemClock};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::scanner::{self, ChallengeReport, Scanner, SimOptions, Simulator};

mod decisions;
mod output;
mod receiver;

pub use receiver::verify_signature;

use decisions::decisions;
use output::{ms, Out};
use receiver::{receive, Delivery, Receiver, RECEIVER_API_KEY};

/// Options of `palmlink demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each result before the step fails.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// A running demo: the API client side and the streams it watches.
struct Demo {
    http: reqwest::Client,
    base: String,
    token: String,
    out: Out,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    unclaimed: Vec<Delivery>,
    reports: mpsc::UnboundedReceiver<ChallengeReport>,
    failed_challenges: Vec<ChallengeReport>,
    webhooks: bool,
    timeout: Duration,
    /// Challenges created so far.
    created: usize,
    /// Scanner reports received so far.
    reported: usize,
    /// Milliseconds from each challenge request to its result.
    latencies: Vec<f64>,
}

impl Demo {
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("request to {path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Takes in whatever the receiver and the scanner produced, printing it.
    fn drain(&mut self, since: Option<Instant>) {
        while let Ok(report) = self.reports.try_recv() {
            self.note_report(report);
        }
        while let Ok(d) = self.deliveries.try_recv() {
            self.out.webhook(&d, since);
            self.unclaimed.push(d);
        }
    }

    fn note_report(&mut self, report: ChallengeReport) {
        self.reported += 1;
        self.out.scanner(&report);
        if report.outcome != "completed" {
            self.failed_challenges.push(report);
        }
    }

    /// Waits until the scanner has reported on every challenge created (its report can
    /// arrive after the webhook).
    async fn await_scanner(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.reported < self.created {
            tokio::select! {
                report = self.reports.recv() => match report {
                    Some(report) => self.note_report(report),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// Waits for a delivery of `event_type` whose data has `key` = `value`.
    async fn await_webhook(
        &mut self,
        event_type: &str,
        key: &str,
        value: &str,
        since: Instant,
    ) -> anyhow::Result<Delivery> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(pos) = self
                .unclaimed
                .iter()
                .position(|d| d.event_type == event_type && d.data[key].as_str() == Some(value))
            {
                return Ok(self.unclaimed.remove(pos));
            }
            if let Some(r) = self
                .failed_challenges
                .iter()
                .find(|r| r.challenge_id == value)
            {
                anyhow::bail!(
                    "the scanner could not complete it: {}",
                    r.error.as_deref().unwrap_or(&r.outcome)
                );
            }
            tokio::select! {
                report = self.reports.recv() => {
                    if let Some(report) = report {
                        self.note_report(report);
                    }
                }
                delivery = self.deliveries.recv() => {
                    if let Some(d) = delivery {
                        self.out.webhook(&d, Some(since));
                        self.unclaimed.push(d);
                    }
                }
                () = tokio::time::sleep_until(deadline) => anyhow::bail!("no {event_type} webhook within {:?}", self.timeout),
            }
        }
    }

    /// Creates a challenge and waits for its result (webhook, or polling without webhooks):
    /// (challenge id, result data, latency from the request to the result).
    async fn challenge(
        &mut self,
        path: &str,
        body: Value,
        event_type: &str,
    ) -> anyhow::Result<(String, Value, Duration)> {
        let started = Instant::now();
        let (status, created) = self.api(reqwest::Method::POST, path, Some(&body)).await?;
        anyhow::ensure!(status == 201, "POST {path} answered {status}: {created}");
        let id = created["data"]["challenge_id"]
            .as_str()
            .context("no challenge_id in the response")?
            .to_owned();
        self.created += 1;
        if self.webhooks {
            let d = self
                .await_webhook(event_type, "challenge_id", &id, started)
                .await?;
            let latency = d.at.saturating_duration_since(started);
            anyhow::ensure!(
                d.signature_valid,
                "the {event_type} webhook has no valid signature"
            );
            anyhow::ensure!(
                d.api_key_valid,
                "the {event_type} webhook lacks the subscription's X-API-Key"
            );
            anyhow::ensure!(
                d.header_event.as_deref() == Some(event_type),
                "X-Link-Event is {:?}, not {event_type}",
                d.header_event
            );
            self.latencies.push(ms(latency));
            return Ok((id, d.data, latency));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let (status, body) = self
                .api(reqwest::Method::GET, &format!("/v1/challenges/{id}"), None)
                .await?;
            let latency = started.elapsed();
            self.drain(Some(started));
            anyhow::ensure!(
                status == 200,
                "GET /v1/challenges/{id} answered {status}: {body}"
            );
            match body["data"]["status"].as_str() {
                Some("pending") => {}
                Some("completed") => {
                    self.latencies.push(ms(latency));
                    return Ok((id, body["data"]["result"].clone(), latency));
                }
                other => anyhow::bail!("the challenge ended {other:?}: {}", body["data"]),
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no result within {:?}",
                self.timeout
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `palmlink demo`.
pub async fn run_cli(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("palmlink-demo-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let mut config = Config::new(dir.path());
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.allow_http_webhooks = true;
    config.rate_limit_per_second = 1000;
    config.rate_limit_burst = 1000;
    let out = Out {
        json: args.json,
        checks: 0,
        failed: Vec::new(),
        webhooks: 0,
    };
    out.emit(
        &format!(
            "PalmLink demo: everything on loopback, data in {} (removed at the end)",
            dir.path().display()
        ),
        json!({"kind": "start", "data_dir": dir.path().display().to_string()}),
    );

    // Operator side: tenant and OAuth client, written to storage directly.
    let started = Instant::now();
    let store = palmlink_api::open_store(&config).await?;
    let operators = Operators::new(store, Arc::new(SystemClock));
    let tenant = operators
        .create_tenant(OperatorActor::CommandLine, "PalmLink demo")
        .await?;
    let client = operators
        .create_client(
            OperatorActor::CommandLine,
            tenant.id,
            "demo integration",
            None,
        )
        .await?;
    drop(operators);
    let (operator_latency, client_id, client_secret) = (
        started.elapsed(),
        client.client.id.to_string(),
        client.secret,
    );

    let started = Instant::now();
    let server = palmlink_api::start(config).await?;
    let base = format!("http://{}", server.addr());
    let server_latency = started.elapsed();

    let (tx, deliveries) = mpsc::unbounded_channel();
    let (report_tx, reports) = mpsc::unbounded_channel();
    let mut demo = Demo {
        http: scanner::http_client()?,
        base: base.clone(),
        token: String::new(),
        out,
        deliveries,
        unclaimed: Vec::new(),
        reports,
        failed_challenges: Vec::new(),
        webhooks: false,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        created: 0,
        reported: 0,
        latencies: Vec::new(),
    };
    demo.out.step(
        "service started",
        true,
        Some(server_latency),
        &base,
        json!({"url": base}),
    );
    demo.out.step(
        "tenant and OAuth client created",
        true,
        Some(operator_latency),
        &format!("tenant {}, client {client_id}", tenant.id),
        json!({"tenant_id": tenant.id, "client_id": client_id}),
    );

    let result = flow(&mut demo, &client_id, &client_secret, report_tx, tx).await;
    if let Err(e) = &result {
        demo.out
            .step("demo aborted", false, None, &format!("{e:#}"), Value::Null);
    }
    demo.drain(None);
    let _ = server.stop().await;

    let ok = demo.out.failed.is_empty();
    let mode = if demo.webhooks {
        "delivered"
    } else {
        "pending"
    };
    let mut latencies = demo.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let (min, median, max) = match latencies.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (latencies[0], latencies[n / 2], latencies[n - 1]),
    };
    let summary = format!(
        "{} of {} checks passed; {} results, request to {} in {min:.1} / {median:.1} / {max:.1} ms (min / median / max); {} webhooks received{}",
        demo.out.checks - demo.out.failed.len(),
        demo.out.checks,
        latencies.len(),
        if demo.webhooks { "webhook" } else { "result" },
        demo.out.webhooks,
        if demo.webhooks {
            ""
        } else {
            " (webhook delivery is not available in this build: results were polled)"
        }
    );
    demo.out.emit(
        &format!("\n{} {summary}", if ok { "PASS" } else { "FAIL" }),
        json!({"kind": "summary", "ok": ok, "checks": demo.out.checks, "failed": demo.out.failed,
               "webhooks": mode, "webhooks_received": demo.out.webhooks,
               "result_latency_ms": {"count": latencies.len(), "min": latencies.first(), "median": latencies.get(latencies.len() / 2), "max": latencies.last()}}),
    );
    drop(dir);
    anyhow::ensure!(ok, "the demo failed: {}", demo.out.failed.join("; "));
    Ok(())
}

/// Everything after the service is up; an error aborts the rest of the demo.
async fn flow(
    demo: &mut Demo,
    client_id: &str,
    client_secret: &str,
    report_tx: mpsc::UnboundedSender<ChallengeReport>,
    delivery_tx: mpsc::UnboundedSender<Delivery>,
) -> anyhow::Result<()> {
    // Token.
    let started = Instant::now();
    let (status, body) = demo
        .api(
            reqwest::Method::POST,
            "/v1/auth/token",
            Some(&json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})),
        )
        .await?;
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    demo.out.step(
        "access token",
        status == 200 && !token.is_empty(),
        Some(started.elapsed()),
        &format!(
            "POST /v1/auth/token -> {status}, scope \"{}\"",
            body["scope"].as_str().unwrap_or_default()
        ),
        json!({"status": status, "scope": body["scope"]}),
    );
    anyhow::ensure!(!token.is_empty(), "no access token");
    demo.token = token;

    // Webhook receiver and subscription.
    let secret = Arc::new(Mutex::new(None));
    let receiver = Receiver {
        tx: delivery_tx,
        secret: secret.clone(),
    };
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let receiver_url = format!("http://{}/webhooks", listener.local_addr()?);
    let app = Router::new()
        .route("/webhooks", post(receive))
        .with_state(receiver);
    let receiver_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let started = Instant::now();
    let (status, body) = demo
        .api(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(&json!({
                "name": "demo receiver",
                "events": ["device.paired", "enrollment.complete", "verification.complete", "identification.complete"],
                "endpoint": receiver_url,
                "api_key": RECEIVER_API_KEY,
            })),
        )
        .await?;
    match status {
        201 => {
            let signing = body["data"]["signing_secret"].as_str().unwrap_or_default().to_owned();
            *secret.lock().unwrap_or_else(|e| e.into_inner()) = Some(signing.clone());
            demo.webhooks = true;
            demo.out.step(
                "webhook subscribed",
                signing.starts_with("whsec_"),
                Some(started.elapsed()),
                &format!("receiver {receiver_url}"),
                json!({"endpoint": receiver_url, "webhook_id": body["data"]["webhook_id"]}),
            );
        }
        404 | 405 => demo.out.info(&format!(
            "webhooks pending: this build has no webhook delivery (POST /v1/webhooks -> {status}); following results with GET /v1/challenges/{{id}}"
        )),
        other => {
            demo.out.step("webhook subscribed", false, Some(started.elapsed()), &format!("POST /v1/webhooks -> {other}: {body}"), body);
        }
    }

    // Device registration and pairing.
    let started = Instant::now();
    let (status, body) = demo
        .api(
            reqwest::Method::POST,
            "/v1/devices",
            Some(&json!({"device_name": "Demo scanner", "location": "Loopback lobby"})),
        )
        .await?;
    let code = body["data"]["pairing_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let device_id = body["data"]["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    demo.out.step(
        "device registered",
        status == 201 && !code.is_empty(),
        Some(started.elapsed()),
        &format!("device {device_id}, pairing code {code}"),
        json!({"device_id": device_id, "pairing_code": code}),
    );
    anyhow::ensure!(!code.is_empty(), "no pairing code");
    let hardware_id = "demo-scanner-1";
    let started = Instant::now();
    let paired = scanner::pair(&demo.http, &demo.base, &code, hardware_id).await?;
    demo.out.step(
        "scanner paired",
        paired.data["status"] == "paired",
        Some(started.elapsed()),
        &format!("hardware_id {hardware_id}"),
        paired.data.clone(),
    );
    if demo.webhooks {
        let result = demo
            .await_webhook("device.paired", "device_id", &device_id, started)
            .await;
        let (ok, latency, detail) = match &result {
            Ok(d) => (
                d.signature_valid && d.api_key_valid,
                Some(d.at.saturating_duration_since(started)),
                String::new(),
            ),
            Err(e) => (false, None, format!("{e:#}")),
        };
        demo.out
            .step("device.paired webhook", ok, latency, &detail, Value::Null);
    }
    let sim = Simulator::new(SimOptions::default())?;
    let mut scanner = Scanner::new(
        demo.http.clone(),
        &demo.base,
        &paired.device_secret,
        25_000,
        sim,
    );
    let scanner_task = tokio::spawn(async move {
        scanner
            .run(None, |report| {
                let _ = report_tx.send(report.clone());
            })
            .await
    });

    let result = decisions(demo, hardware_id).await;
    demo.await_scanner().await;
    let (created, reported, failed) = (demo.created, demo.reported, demo.failed_challenges.len());
    demo.out.step(
        "scanner answered every challenge",
        reported == created && failed == 0,
        None,
        &format!("{reported} of {created} answered, {failed} not completed"),
        json!({"created": created, "reported": reported, "not_completed": failed}),
    );
    scanner_task.abort();
    receiver_task.abort();
    result
}
