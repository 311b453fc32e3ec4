//! The simulated scanner behind `palmlink scanner` and `palmlink demo`.
//!
//! It pairs with a one-time pairing code (`POST /v1/device/pair`), long-polls its challenges
//! (`GET /v1/device/challenges?wait_ms=...`) and answers each with synthetic captures from a
//! seeded population of the `palmlink-fixtures` crate (vendor `mock`). It talks to the
//! service over HTTP only, like a physical scanner.
//!
//! # Whose palm is presented
//!
//! For each challenge the simulator picks an identity of the population (`0..population`):
//!
//! 1. `metadata.sim_identity` (an integer): that identity;
//! 2. otherwise `metadata.sim_user` (a string): the identity of that external user id, as
//!    below;
//! 3. otherwise the challenge's `external_user_id`: its entry in the `--identities` file (a
//!    JSON object `{"alice": 17, ...}`), or a stable hash of the id, so that enrolling and
//!    then verifying one user presents the same palm;
//! 4. otherwise (an identification with no hint): a passer-by chosen by a hash of the
//!    challenge id.
//!
//! On a verification or identification, `metadata.sim_impostor: true` (or the `--impostor`
//! option, which `sim_impostor: false` overrides) presents instead the palm of another,
//! unrelated identity: the identity plus half the population. `metadata.sim_palm` (`left` or
//! `right`) chooses the palm when the challenge accepts either (default `right`); `both`
//! challenges get one capture of each palm.
//!
//! Enrollments submit the careful enrollment capture of the palm. Verifications and
//! identifications submit the palm's next probe capture, retaken (the next capture of the
//! same palm) while its reported quality is below `--min-quality`, as a scanner asks the
//! person to present the hand again.

mod population;
mod report;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

pub use population::{
    load_identities, CaptureInfo, Presentation, SimOptions, Simulator, DEFAULT_POPULATION,
    DEFAULT_SEED, VENDOR,
};
pub use report::ChallengeReport;

/// Options of `palmlink scanner`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScannerArgs {
    /// Base URL of the PalmLink service, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "PALMLINK_SERVER")]
    pub server: String,
    /// One-time pairing code of the device (from `POST /v1/devices`).
    #[arg(
        long,
        required_unless_present = "device_secret",
        conflicts_with = "device_secret"
    )]
    pub pairing_code: Option<String>,
    /// Credential of an already paired device (printed when it paired), instead of a code.
    #[arg(long, env = "PALMLINK_DEVICE_SECRET")]
    pub device_secret: Option<String>,
    /// Hardware id this scanner pairs with.
    #[arg(long)]
    pub hardware_id: String,
    /// JSON file mapping external user ids to population identities: `{"alice": 17}`.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// Present another person's palm on every verification and identification.
    #[arg(long)]
    pub impostor: bool,
    /// Seed of the synthetic population.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Number of identities in the synthetic population.
    #[arg(long, default_value_t = DEFAULT_POPULATION)]
    pub population: u64,
    /// Retake a probe capture while its reported quality is below this (0 to 1).
    #[arg(long, default_value_t = 0.8)]
    pub min_quality: f32,
    /// Long-poll wait in milliseconds (0 to 30000).
    #[arg(long, default_value_t = 25_000)]
    pub wait_ms: u64,
    /// Stop after answering this many challenges (default: run until killed).
    #[arg(long)]
    pub max_challenges: Option<u64>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The credential and record of a freshly paired device.
#[derive(Debug, Clone)]
pub struct Paired {
    /// The device.
    pub device_id: String,
    /// The scanner credential (shown once by the service).
    pub device_secret: String,
    /// The whole `data` of the pairing response.
    pub data: Value,
}

/// An HTTP client suited to the scanner: no redirects, bounded connect time.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!(
            "PalmLink-Scanner-Simulator/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()?)
}

fn api_message(body: &Value) -> String {
    body["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_owned)
}

/// Pairs a device: `POST /v1/device/pair`.
pub async fn pair(
    http: &reqwest::Client,
    server: &str,
    pairing_code: &str,
    hardware_id: &str,
) -> anyhow::Result<Paired> {
    let url = format!("{}/v1/device/pair", server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .timeout(Duration::from_secs(30))
        .json(&json!({"pairing_code": pairing_code, "hardware_id": hardware_id}))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "pairing failed ({status}): {}",
        api_message(&body)
    );
    let data = body["data"].clone();
    let device_secret = data["device_secret"]
        .as_str()
        .context("the pairing response has no device_secret")?
        .to_owned();
    let device_id = data["device_id"].as_str().unwrap_or_default().to_owned();
    Ok(Paired {
        device_id,
        device_secret,
        data,
    })
}

/// A paired simulated scanner.
pub struct Scanner {
    http: reqwest::Client,
    server: String,
    secret: String,
    wait_ms: u64,
    sim: Simulator,
    skipped: HashSet<String>,
}

impl Scanner {
    /// A scanner of `server` holding a device credential.
    pub fn new(
        http: reqwest::Client,
        server: &str,
        device_secret: &str,
        wait_ms: u64,
        sim: Simulator,
    ) -> Scanner {
        Scanner {
            http,
            server: server.trim_end_matches('/').to_owned(),
            secret: device_secret.to_owned(),
            wait_ms: wait_ms.min(30_000),
            sim,
            skipped: HashSet::new(),
        }
    }

    /// One long poll: the pending challenges (possibly none). Errors carry whether retrying
    /// can help (`false` for a refused credential).
    pub async fn poll(&self) -> Result<Vec<Value>, (anyhow::Error, bool)> {
        let url = format!(
            "{}/v1/device/challenges?wait_ms={}",
            self.server, self.wait_ms
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.secret)
            .timeout(Duration::from_millis(self.wait_ms + 15_000))
            .send()
            .await
            .map_err(|e| (anyhow::Error::new(e).context(format!("GET {url}")), true))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err((
                anyhow::anyhow!(
                    "the service refused the device credential: {}",
                    api_message(&body)
                ),
                false,
            ));
        }
        if !status.is_success() {
            return Err((
                anyhow::anyhow!("polling failed ({status}): {}", api_message(&body)),
                true,
            ));
        }
        match body["data"].as_array() {
            Some(list) => Ok(list.clone()),
            None => Err((anyhow::anyhow!("unexpected poll response: {body}"), true)),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.server);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.secret)
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Answers one polled challenge: captures and submits, or cancels a challenge the
    /// simulator cannot answer. Never fails: problems are in the report.
    pub async fn answer(&mut self, challenge: &Value) -> ChallengeReport {
        let started = Instant::now();
        let id = challenge["challenge_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut report = ChallengeReport {
            challenge_id: id.clone(),
            kind: challenge["type"].as_str().unwrap_or_default().to_owned(),
            palm_type: challenge["palm_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            external_user_id: challenge["external_user_id"].as_str().map(str::to_owned),
            identity: None,
            impostor: false,
            captures: Vec::new(),
            outcome: "rejected".to_owned(),
            http_status: None,
            matched: None,
            latency_ms: 0.0,
            error: None,
            result: None,
        };
        match self.sim.present(challenge) {
            Err(reason) => {
                report.outcome = "cancelled".to_owned();
                report.error = Some(reason);
                match self
                    .post(
                        &format!("/v1/device/challenges/{id}/cancel"),
                        &json!({"reason": "user_cancelled"}),
                    )
                    .await
                {
                    Ok((status, _)) => report.http_status = Some(status),
                    Err(e) => {
                        report.error = Some(format!(
                            "{}; cancelling failed: {e:#}",
                            report.error.take().unwrap_or_default()
                        ))
                    }
                }
                self.skipped.insert(id);
            }
            Ok(p) => {
                report.identity = Some(p.identity);
                report.impostor = p.impostor;
                report.captures = p.info;
                let body = json!({"vendor": VENDOR, "captures": p.captures});
                match self
                    .post(&format!("/v1/device/challenges/{id}/capture"), &body)
                    .await
                {
                    Ok((status, body)) => {
                        report.http_status = Some(status);
                        if (200..300).contains(&status) {
                            let data = &body["data"];
                            report.outcome =
                                data["status"].as_str().unwrap_or("completed").to_owned();
                            report.matched = data["result"]["matched"].as_bool();
                            report.result = Some(data["result"].clone());
                        } else {
                            report.error = Some(api_message(&body));
                            self.skipped.insert(id.clone());
                            if status == 422 {
                                let _ = self
                                    .post(
                                        &format!("/v1/device/challenges/{id}/cancel"),
                                        &json!({"reason": "quality"}),
                                    )
                                    .await;
                            }
                        }
                    }
                    Err(e) => report.error = Some(format!("{e:#}")),
                }
            }
        }
        report.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        report
    }

    /// Polls and answers until `max_challenges` are answered (forever when `None`), handing
    /// each report to `on_report`. Returns the number answered; fails only when the service
    /// refuses the credential. Connection problems are retried with backoff.
    pub async fn run(
        &mut self,
        max_challenges: Option<u64>,
        mut on_report: impl FnMut(&ChallengeReport),
    ) -> anyhow::Result<u64> {
        let mut answered = 0u64;
        let mut backoff = Duration::from_millis(250);
        while max_challenges.is_none_or(|max| answered < max) {
            let list = match self.poll().await {
                Ok(list) => {
                    backoff = Duration::from_millis(250);
                    list
                }
                Err((e, false)) => return Err(e),
                Err((e, true)) => {
                    tracing::warn!(error = %format!("{e:#}"), "poll failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let fresh: Vec<&Value> = list
                .iter()
                .filter(|c| {
                    !self
                        .skipped
                        .contains(c["challenge_id"].as_str().unwrap_or_default())
                })
                .collect();
            if fresh.is_empty() && !list.is_empty() {
                // Only challenges this scanner already gave up on: do not spin.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            for challenge in fresh {
                if max_challenges.is_some_and(|max| answered >= max) {
                    break;
                }
                let report = self.answer(challenge).await;
                answered += 1;
                on_report(&report);
            }
        }
        Ok(answered)
    }
}

/// `palmlink scanner`: pairs (or reuses a credential), then answers challenges.
pub async fn run_cli(args: ScannerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.wait_ms <= 30_000, "--wait-ms must be from 0 to 30000");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.min_quality),
        "--min-quality must be from 0 to 1"
    );
    let identities = match &args.identities {
        Some(path) => load_identities(path)?,
        None => HashMap::new(),
    };
    let sim = Simulator::new(SimOptions {
        seed: args.seed,
        population: args.population,
        identities,
        impostor: args.impostor,
        min_quality: args.min_quality,
        ..SimOptions::default()
    })?;
    let http = http_client()?;
    let secret = match (&args.pairing_code, &args.device_secret) {
        (Some(code), _) => {
            let paired = pair(&http, &args.server, code, &args.hardware_id).await?;
            if args.json {
                println!("{}", json!({"event": "paired", "device": paired.data}));
            } else {
                println!(
                    "paired device {} as {}; device secret (shown once, reuse with --device-secret): {}",
                    paired.device_id, args.hardware_id, paired.device_secret
                );
            }
            paired.device_secret
        }
        (None, Some(secret)) => secret.clone(),
        (None, None) => anyhow::bail!("either --pairing-code or --device-secret is required"),
    };
    let mut scanner = Scanner::new(http, &args.server, &secret, args.wait_ms, sim);
    if !args.json {
        println!("waiting for challenges on {}", args.server);
    }
    let json_mode = args.json;
    let answered = scanner
        .run(args.max_challenges, |report| {
            if json_mode {
                println!("{}", json!({"event": "challenge", "challenge": report}));
            } else {
                println!("{}", report.line());
            }
        })
        .await?;
    if json_mode {
        println!("{}", json!({"event": "stopped", "answered": answered}));
    } else {
        println!("answered {answered} challenges");
    }
    Ok(())
}
