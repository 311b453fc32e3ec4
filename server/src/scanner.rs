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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use palmlink_fixtures::{palm_name, PalmSide, Population};
use serde::Serialize;
use serde_json::{json, Value};

/// Seed of the synthetic population unless told otherwise.
pub const DEFAULT_SEED: u64 = 1;
/// Size of the synthetic population unless told otherwise.
pub const DEFAULT_POPULATION: u64 = 10_000;
/// Vendor name of the simulated extractor.
pub const VENDOR: &str = "mock";
/// Most captures taken of one palm for one challenge while the quality is too low.
const MAX_TAKES: u64 = 16;

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

/// How the simulator chooses and captures palms.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Population seed.
    pub seed: u64,
    /// Population size.
    pub population: u64,
    /// External user id to identity.
    pub identities: HashMap<String, u64>,
    /// Present an unrelated palm on verifications and identifications.
    pub impostor: bool,
    /// Minimum reported quality of a probe capture.
    pub min_quality: f32,
    /// Liveness score reported with every capture.
    pub liveness: f32,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            seed: DEFAULT_SEED,
            population: DEFAULT_POPULATION,
            identities: HashMap::new(),
            impostor: false,
            min_quality: 0.8,
            liveness: 0.99,
        }
    }
}

/// Reads an `--identities` file: a JSON object from external user id to identity.
pub fn load_identities(path: &Path) -> anyhow::Result<HashMap<String, u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON object of external user id to identity number",
            path.display()
        )
    })
}

/// One palm capture submitted for a challenge.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureInfo {
    /// `left` or `right`.
    pub palm_type: String,
    /// Probe capture number (absent for the enrollment capture).
    pub capture_index: Option<u64>,
    /// Reported quality.
    pub quality: f32,
    /// Captures taken to reach the minimum quality (1 when the first was good enough).
    pub takes: u64,
}

/// What the simulator decided to present for one challenge.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// The identity whose palm is presented.
    pub identity: u64,
    /// Whether it is an impostor presentation.
    pub impostor: bool,
    /// The `captures` entries of the request body.
    pub captures: Vec<Value>,
    /// What each capture was.
    pub info: Vec<CaptureInfo>,
}

/// The synthetic population and the capture counters of each palm.
pub struct Simulator {
    options: SimOptions,
    population: Population,
    next_capture: HashMap<(u64, PalmSide), u64>,
}

/// FNV-1a, a stable hash (the standard library's is randomised per process).
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Simulator {
    /// A simulator over the population the options describe.
    pub fn new(options: SimOptions) -> anyhow::Result<Simulator> {
        anyhow::ensure!(
            options.population >= 2,
            "the population needs at least 2 identities"
        );
        anyhow::ensure!(options.population <= 1 << 40, "the population is too large");
        let population = Population::with_seed(options.seed, options.population);
        Ok(Simulator {
            options,
            population,
            next_capture: HashMap::new(),
        })
    }

    /// The identity of an external user id: the mapping, else a stable hash.
    pub fn identity_of_user(&self, external_user_id: &str) -> u64 {
        match self.options.identities.get(external_user_id) {
            Some(&identity) => identity,
            None => stable_hash(external_user_id) % self.options.population,
        }
    }

    /// An identity unrelated to `identity` (another family): half the population away.
    pub fn impostor_of(&self, identity: u64) -> u64 {
        let n = self.options.population;
        (identity % n + n / 2) % n
    }

    /// Chooses the identity and palms for a polled challenge and takes the captures.
    pub fn present(&mut self, challenge: &Value) -> Result<Presentation, String> {
        let kind = challenge["type"].as_str().unwrap_or_default();
        let metadata = &challenge["metadata"];
        let subject = if let Some(v) = metadata.get("sim_identity") {
            v.as_u64().ok_or_else(|| {
                format!("metadata.sim_identity must be an identity number, not {v}")
            })?
        } else if let Some(v) = metadata.get("sim_user") {
            self.identity_of_user(
                v.as_str()
                    .ok_or_else(|| format!("metadata.sim_user must be a string, not {v}"))?,
            )
        } else if let Some(user) = challenge["external_user_id"].as_str() {
            self.identity_of_user(user)
        } else {
            stable_hash(challenge["challenge_id"].as_str().unwrap_or_default())
                % self.options.population
        };
        if subject >= self.options.population {
            return Err(format!(
                "identity {subject} is outside the synthetic population (0..{})",
                self.options.population
            ));
        }
        let impostor = kind != "enroll"
            && metadata
                .get("sim_impostor")
                .and_then(Value::as_bool)
                .unwrap_or(self.options.impostor);
        let identity = if impostor {
            self.impostor_of(subject)
        } else {
            subject
        };
        let palms = match challenge["palm_type"].as_str().unwrap_or_default() {
            "left" => vec![PalmSide::Left],
            "right" => vec![PalmSide::Right],
            "both" => vec![PalmSide::Left, PalmSide::Right],
            "any" => match metadata.get("sim_palm").and_then(Value::as_str) {
                Some("left") => vec![PalmSide::Left],
                None | Some("right") => vec![PalmSide::Right],
                Some(other) => {
                    return Err(format!(
                        "metadata.sim_palm must be left or right, not {other:?}"
                    ))
                }
            },
            other => return Err(format!("unknown palm_type {other:?}")),
        };
        let mut captures = Vec::new();
        let mut info = Vec::new();
        for palm in palms {
            let (capture, index, takes) = if kind == "enroll" {
                (self.population.enrollment(identity, palm), None, 1)
            } else {
                self.probe(identity, palm)
            };
            captures.push(capture.to_capture_json(palm, self.options.liveness));
            info.push(CaptureInfo {
                palm_type: palm_name(palm).to_owned(),
                capture_index: index,
                quality: capture.quality,
                takes,
            });
        }
        Ok(Presentation {
            identity,
            impostor,
            captures,
            info,
        })
    }

    /// The palm's next probe capture of at least the minimum quality (or the best of
    /// [`MAX_TAKES`]): (capture, its index, captures taken).
    fn probe(
        &mut self,
        identity: u64,
        palm: PalmSide,
    ) -> (palmlink_fixtures::Capture, Option<u64>, u64) {
        let counter = self.next_capture.entry((identity, palm)).or_insert(0);
        let mut best: Option<(palmlink_fixtures::Capture, u64)> = None;
        let mut takes = 0;
        while takes < MAX_TAKES {
            let index = *counter;
            *counter += 1;
            takes += 1;
            let capture = self.population.capture(identity, palm, index);
            let good = capture.quality >= self.options.min_quality;
            if best
                .as_ref()
                .is_none_or(|(b, _)| capture.quality > b.quality)
            {
                best = Some((capture, index));
            }
            if good {
                break;
            }
        }
        match best {
            Some((capture, index)) => (capture, Some(index), takes),
            None => (self.population.capture(identity, palm, 0), Some(0), takes),
        }
    }
}

/// The outcome of one answered challenge, as the scanner logs it.
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeReport {
    /// The challenge.
    pub challenge_id: String,
    /// `enroll`, `verify` or `identify`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the challenge asked for: `left`, `right`, `both` or `any`.
    pub palm_type: String,
    /// The person the challenge is about, when it names one.
    pub external_user_id: Option<String>,
    /// The identity whose palm was presented (none when the challenge could not be answered).
    pub identity: Option<u64>,
    /// Whether that was an impostor presentation.
    pub impostor: bool,
    /// The captures submitted.
    pub captures: Vec<CaptureInfo>,
    /// `completed`, `failed`, `cancelled` (the simulator could not answer) or `rejected`
    /// (the service refused the capture).
    pub outcome: String,
    /// HTTP status of the capture submission (or of the cancellation).
    pub http_status: Option<u16>,
    /// The decision, for verifications and identifications.
    pub matched: Option<bool>,
    /// Milliseconds from receiving the challenge to the service's answer to the capture.
    pub latency_ms: f64,
    /// Why the challenge was not completed.
    pub error: Option<String>,
    /// The result the service returned.
    pub result: Option<Value>,
}

impl ChallengeReport {
    /// One line of text for the log.
    pub fn line(&self) -> String {
        let who = match (&self.external_user_id, self.identity) {
            (Some(user), Some(id)) => format!(
                "{user} <- identity {id}{}",
                if self.impostor { " (impostor)" } else { "" }
            ),
            (None, Some(id)) => format!(
                "identity {id}{}",
                if self.impostor { " (impostor)" } else { "" }
            ),
            (Some(user), None) => user.clone(),
            (None, None) => "-".to_owned(),
        };
        let captures: Vec<String> = self
            .captures
            .iter()
            .map(|c| match c.capture_index {
                Some(i) => format!("{} #{i} q={:.2}", c.palm_type, c.quality),
                None => format!("{} enrollment q={:.2}", c.palm_type, c.quality),
            })
            .collect();
        let decision = match self.matched {
            Some(true) => " matched",
            Some(false) => " not matched",
            None => "",
        };
        let error = self
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        format!(
            "{} {} [{}] {who} [{}] -> {}{decision}{error} in {:.1} ms",
            self.kind,
            self.challenge_id,
            self.palm_type,
            captures.join(", "),
            self.outcome,
            self.latency_ms
        )
    }
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
