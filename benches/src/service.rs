//! The service started in-process for the load benches: loopback, a fresh data
//! directory, rate limits raised so none throttle the load, one tenant and an
//! integrator token; and the small helpers both load generators use.

use std::sync::Arc;

use palmlink_domain::{Operators, SystemClock};
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
        let server = palmlink_api::start(config.clone()).await?;
        let base = format!("http://{}", server.addr());

        let operators = Operators::new(
            palmlink_api::open_store(&config).await?,
            Arc::new(SystemClock),
        );
        let tenant = operators.create_tenant("bench").await?;
        let client = operators.create_client(tenant.id, "bench", None).await?;
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
        })
    }

    /// Stops the server and removes the data directory.
    pub async fn stop(self) -> anyhow::Result<()> {
        Ok(self.server.stop().await?)
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

/// The `n`-th command-line argument as a number, or `default`.
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}
