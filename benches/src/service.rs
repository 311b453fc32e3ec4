//! The service started in-process for the load benches: loopback, a fresh data
//! directory, rate limits raised so none throttle the load, one tenant and an
//! integrator token; and the small helpers both load generators use.

use std::sync::Arc;

use palmlink_domain::{OperatorActor, Operators, SystemClock};
use serde_json::{json, Value};

/// A running service and what a load generator needs to call it.
pub struct BenchService {
    /// The server; [`BenchService::stop`] stops it.
    pub server: palmlink_api::RunningServer,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An access token of the tenant's client (every scope).
    pub token: String,
    /// The data directory, removed when this is dropped.
    pub dir: tempfile::TempDir,
    /// The node's configuration.
    pub config: palmlink_api::Config,
    /// The PostgreSQL schema the node's tables live in (a first node made it), dropped by
    /// [`BenchService::stop`].
    pub schema: Option<String>,
}

impl BenchService {
    /// Starts the service after `configure` has adjusted its configuration, creates a
    /// tenant and a client, and fetches the client's token with `http`.
    pub async fn start(
        http: &reqwest::Client,
        configure: impl FnOnce(&mut palmlink_api::Config),
    ) -> anyhow::Result<BenchService> {
        let dir = tempfile::tempdir()?;
        let mut config = palmlink_api::Config::new(dir.path());
        config.listen = "127.0.0.1:0".parse()?;
        config.rate_limit_per_second = 1_000_000;
        config.rate_limit_burst = 1_000_000;
        config.public_rate_limit_per_second = 1_000_000;
        config.public_rate_limit_burst = 1_000_000;
        configure(&mut config);
        // A PostgreSQL database gets a fresh schema per run.
        let schema = match &config.database_url {
            Some(url) if url.starts_with("postgres") => {
                let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let sep = if url.contains('?') { '&' } else { '?' };
                config.database_url = Some(format!("{url}{sep}schema={name}"));
                Some(name)
            }
            _ => None,
        };
        let server = palmlink_api::start(config.clone()).await?;
        let base = format!("http://{}", server.addr());

        let operators = Operators::new(
            palmlink_api::open_store(&config).await?,
            Arc::new(SystemClock),
        );
        let tenant = operators
            .create_tenant(OperatorActor::CommandLine, "bench")
            .await?;
        let client = operators
            .create_client(OperatorActor::CommandLine, tenant.id, "bench", None)
            .await?;
        let token: Value = http
            .post(format!("{base}/v1/auth/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": client.client.id, "client_secret": client.secret}))
            .send()
            .await?
            .json()
            .await?;
        let token = token["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(BenchService {
            server,
            base,
            token,
            dir,
            config,
            schema,
        })
    }

    /// [`BenchService::start`] for the enrollment benches: on the store
    /// `PALMLINK_LOAD_DATABASE_URL` names (SQLite in the fresh directory without it), with no
    /// graph index built at open, so that no background build shares the cores with what
    /// they time.
    pub async fn start_for_enrollments(http: &reqwest::Client) -> anyhow::Result<BenchService> {
        let database_url = std::env::var("PALMLINK_LOAD_DATABASE_URL").ok();
        BenchService::start(http, |c| {
            c.database_url = database_url;
            c.index_policy.at_open = false;
        })
        .await
    }

    /// Starts another node on `first`'s database and master key, with a data directory of
    /// its own (its galleries follow the database's template log).
    pub async fn start_node(
        first: &BenchService,
        configure: impl FnOnce(&mut palmlink_api::Config),
    ) -> anyhow::Result<BenchService> {
        let dir = tempfile::tempdir()?;
        let mut config = first.config.clone();
        config.data_dir = dir.path().to_owned();
        config.master_key_file = Some(first.config.effective_master_key_file());
        configure(&mut config);
        let server = palmlink_api::start(config.clone()).await?;
        let base = format!("http://{}", server.addr());
        Ok(BenchService {
            server,
            base,
            token: first.token.clone(),
            dir,
            config,
            schema: None,
        })
    }

    /// Stops the server, drops its PostgreSQL schema if it made one, and removes the data
    /// directory.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        BenchService::drop_schema(&self.config, self.schema.as_deref()).await
    }

    /// Drops `schema` (when there is one) from the PostgreSQL database of `config`.
    pub async fn drop_schema(
        config: &palmlink_api::Config,
        schema: Option<&str>,
    ) -> anyhow::Result<()> {
        let (Some(schema), Some(url)) = (schema, &config.database_url) else {
            return Ok(());
        };
        let base = url.split_once("schema=").map_or(url.as_str(), |(b, _)| b);
        let base = base.trim_end_matches(['?', '&']);
        let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
        Ok(())
    }
}

/// The value at fraction `p` (0..=1) of ascending `sorted` values (nearest rank); NaN
/// when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Nodes a load bench runs: `PALMLINK_LOAD_NODES` (default 2) on a database named by
/// `PALMLINK_LOAD_DATABASE_URL`, one on the embedded default.
pub fn node_count(database_url: Option<&str>) -> usize {
    match database_url {
        Some(_) => std::env::var("PALMLINK_LOAD_NODES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(2),
        None => 1,
    }
}

/// The `n`-th command-line argument as a number, or `default`.
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The integrator's view of the service during setup.
pub struct Api {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An access token of the tenant's client.
    pub token: String,
}

impl Api {
    /// Pairs `count` scanners (`hw-enroll-0`, ...) for the enrollment benches; their
    /// hardware ids and secrets.
    pub async fn pair_scanners(&self, count: usize) -> anyhow::Result<Vec<(String, String)>> {
        let mut scanners = Vec::with_capacity(count);
        for c in 0..count {
            let hardware_id = format!("hw-enroll-{c}");
            let secret = self.pair(&hardware_id).await?;
            scanners.push((hardware_id, secret));
        }
        Ok(scanners)
    }

    /// POSTs `body` as JSON with `bearer`; the JSON answer of a 2xx, an error otherwise.
    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {v}");
        Ok(v)
    }

    /// Registers and pairs a scanner; returns its secret.
    pub async fn pair(&self, hardware_id: &str) -> anyhow::Result<String> {
        let d = self
            .post(
                "/v1/devices",
                &self.token,
                json!({"device_name": "bench", "location": "lab"}),
            )
            .await?;
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
            .await?;
        Ok(p["data"]["device_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// Enrolls `user` with the right palm of `seed` through the paired scanner
/// `(hardware_id, secret)`: `POST /v1/enroll`, then the scanner's capture, whose 200 means
/// the enrollment is durable. Returns the completed challenge.
pub async fn enroll_one(
    api: &Api,
    (hardware_id, secret): &(String, String),
    user: &str,
    seed: u64,
) -> anyhow::Result<Value> {
    let c = api
        .post(
            "/v1/enroll",
            &api.token,
            json!({"external_user_id": user, "hardware_id": hardware_id, "palm_type": "right"}),
        )
        .await?;
    let id = c["data"]["challenge_id"].as_str().unwrap_or_default();
    let done = api
        .post(
            &format!("/v1/device/challenges/{id}/capture"),
            secret,
            capture_body(&palm(seed)),
        )
        .await?;
    anyhow::ensure!(
        done["data"]["status"] == "completed",
        "enrollment of {user}: {done}"
    );
    Ok(done)
}

/// Enrolls users `range` (`user-N` with the palm of seed `N + 1`), the scanners sharing
/// them round robin, each scanner one enrollment at a time; `check` judges every completed
/// challenge. Returns the seconds taken and every enrollment's latency in ms, ascending.
pub async fn enroll_users(
    api: &Arc<Api>,
    scanners: &[(String, String)],
    range: std::ops::Range<usize>,
    check: fn(usize, &Value) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let started = std::time::Instant::now();
    let n = scanners.len();
    let mut tasks = Vec::with_capacity(n);
    for (c, scanner) in scanners.iter().enumerate() {
        let api = Arc::clone(api);
        let scanner = scanner.clone();
        let mine: Vec<usize> = range.clone().skip(c).step_by(n).collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(mine.len());
            for user in mine {
                let t0 = std::time::Instant::now();
                let done =
                    enroll_one(&api, &scanner, &format!("user-{user}"), user as u64 + 1).await?;
                check(user, &done)?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok((started.elapsed().as_secs_f64(), all))
}

/// Uniform values in [-1, 1) from a seed (xorshift64*).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A person's palm: 10 blocks of 64 values.
pub fn palm(seed: u64) -> Vec<Vec<f32>> {
    values(seed, 640).chunks(64).map(<[f32]>::to_vec).collect()
}

/// Another capture of the same palm: small noise added to every value.
pub fn recapture(base: &[Vec<f32>], seed: u64) -> Vec<Vec<f32>> {
    let noise = values(seed ^ 0xDEAD_BEEF, 640);
    base.iter()
        .flatten()
        .zip(noise)
        .map(|(v, n)| v + 0.05 * n)
        .collect::<Vec<f32>>()
        .chunks(64)
        .map(<[f32]>::to_vec)
        .collect()
}

/// A capture request body with one right-palm template.
pub fn capture_body(blocks: &[Vec<f32>]) -> Value {
    json!({"vendor": "mock", "captures": [{"palm_type": "right",
        "template": {"format": "f32", "blocks": blocks}, "quality": 0.93, "liveness": 0.99}]})
}

/// Starts a node on `config` and times it until `/readyz` answers 200 (its galleries have
/// caught up): the node and the seconds.
pub async fn start_until_ready(
    http: &reqwest::Client,
    config: &palmlink_api::Config,
) -> anyhow::Result<(palmlink_api::RunningServer, f64)> {
    let started = std::time::Instant::now();
    let server = palmlink_api::start(config.clone()).await?;
    let ready = format!("http://{}/readyz", server.addr());
    loop {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok((server, started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
