//! Shared state of the running service.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::auth::token::TokenService;
use crate::config::Config;
use crate::galleries::Galleries;
use crate::hub::DeviceHub;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a request handler can reach; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenService>,
    pub galleries: Arc<Galleries>,
    pub hub: Arc<DeviceHub>,
    pub limiter: Arc<DefaultKeyedRateLimiter<Uuid>>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Turns true when the server begins shutting down (ends long polls early).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub webhooks: Arc<crate::webhooks::delivery::Webhooks>,
}

/// The per-client rate limiter of a configuration.
pub(crate) fn rate_limiter(config: &Config) -> DefaultKeyedRateLimiter<Uuid> {
    let per_second =
        NonZeroU32::new(config.rate_limit_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(config.rate_limit_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}
