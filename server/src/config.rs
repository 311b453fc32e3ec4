//! Run-time settings of the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `serve` needs to know; built from the command line or by tests.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding the embedded database, the signing key and the galleries.
    pub data_dir: PathBuf,
    /// Database URL; `None` means the embedded SQLite database in `data_dir`.
    pub database_url: Option<String>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Whether webhook endpoints may use plain http and private addresses.
    pub allow_http_webhooks: bool,
    /// `iss` claim of issued access tokens.
    pub issuer: String,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of challenges.
    pub challenge_ttl: Duration,
    /// Lifetime of pairing codes.
    pub pairing_code_ttl: Duration,
    /// Sustained requests per second allowed per OAuth client.
    pub rate_limit_per_second: u32,
    /// Burst of requests allowed per OAuth client.
    pub rate_limit_burst: u32,
    /// Sustained requests per second per client address on the public token and pairing
    /// endpoints.
    pub public_rate_limit_per_second: u32,
    /// Burst per client address on the public token and pairing endpoints.
    pub public_rate_limit_burst: u32,
    /// How often the sweeper expires stale challenges and idempotency records.
    pub sweep_interval: Duration,
    /// Webhook delivery: retry schedule, timeout, concurrency.
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl Config {
    /// Defaults for a data directory: loopback, embedded storage, contract lifetimes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_http_webhooks: false,
            issuer: "palmlink".to_owned(),
            token_ttl: Duration::from_secs(3600),
            challenge_ttl: Duration::from_secs(3600),
            pairing_code_ttl: Duration::from_secs(1800),
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            public_rate_limit_per_second: 20,
            public_rate_limit_burst: 100,
            sweep_interval: Duration::from_secs(15),
            webhooks: crate::webhooks::WebhookSettings::default(),
        }
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("palmlink.db").display()),
        }
    }
}
