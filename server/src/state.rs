//! Shared state of the running service.

use std::net::IpAddr;
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

/// Everything a request handler can reach, behind one pointer: every middleware and handler
/// of a request clones it, which costs one reference count rather than one per part.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Parts>);

impl AppState {
    /// The state made of its parts.
    pub(crate) fn new(parts: Parts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenService>,
    pub galleries: Arc<Galleries>,
    pub hub: Arc<DeviceHub>,
    pub limiter: Arc<DefaultKeyedRateLimiter<Uuid>>,
    /// Per client address, for the public token and pairing endpoints.
    pub ip_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Turns true when the server begins shutting down (ends long polls early).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub webhooks: Arc<crate::webhooks::delivery::Webhooks>,
}

/// A keyed GCRA limiter: `per_second` sustained, `burst` at once.
pub(crate) fn rate_limiter<K: Clone + Eq + std::hash::Hash>(
    per_second: u32,
    burst: u32,
) -> DefaultKeyedRateLimiter<K> {
    let per_second = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}
