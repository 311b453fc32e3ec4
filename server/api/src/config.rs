//! Run-time settings of a node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use palmlink_domain::DomainConfig;
use palmlink_engine::IndexPolicy;
use palmlink_webhooks::WebhookSettings;

/// Everything a node needs to know; built from the command line or by tests.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding the embedded database, the signing key and the galleries.
    pub data_dir: PathBuf,
    /// Database URL; `None` means the embedded SQLite database in `data_dir`.
    pub database_url: Option<String>,
    /// The master key file; `None` means `data_dir/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where `/metrics` is served instead of the API's port (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
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
    /// How often finished work past its tenant's retention period is purged.
    pub retention_interval: Duration,
    /// How often the galleries look for template log entries other nodes wrote.
    pub follow_interval: Duration,
    /// Webhook delivery: retry schedule, timeout, concurrency.
    pub webhooks: WebhookSettings,
    /// When the galleries build and use their graph indexes.
    pub index_policy: IndexPolicy,
}

impl Config {
    /// Defaults for a data directory: loopback, embedded storage, contract lifetimes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        let domain = DomainConfig::default();
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            master_key_file: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            allow_http_webhooks: false,
            issuer: domain.issuer,
            token_ttl: domain.token_ttl,
            challenge_ttl: domain.challenge_ttl,
            pairing_code_ttl: domain.pairing_code_ttl,
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            public_rate_limit_per_second: 20,
            public_rate_limit_burst: 100,
            sweep_interval: Duration::from_secs(15),
            retention_interval: Duration::from_secs(600),
            follow_interval: Duration::from_secs(2),
            webhooks: WebhookSettings::default(),
            index_policy: domain.index_policy,
        }
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("palmlink.db").display()),
        }
    }

    /// The master key file in force: the configured one or `data_dir/master.key`.
    pub fn effective_master_key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| palmlink_domain::default_master_key_path(&self.data_dir))
    }

    /// The domain's part of the settings.
    pub fn domain(&self) -> DomainConfig {
        DomainConfig {
            issuer: self.issuer.clone(),
            token_ttl: self.token_ttl,
            challenge_ttl: self.challenge_ttl,
            pairing_code_ttl: self.pairing_code_ttl,
            allow_private_webhooks: self.allow_http_webhooks,
            index_policy: self.index_policy,
        }
    }
}
