//! What every request handler can reach.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use palmlink_domain::Domain;
use uuid::Uuid;

use crate::metrics::Metrics;

/// The HTTP adapter's state behind one pointer: every middleware and handler of a request
/// clones it, which costs one reference count.
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
    /// The services.
    pub domain: Arc<Domain>,
    /// Per OAuth client, on the integrator API.
    pub limiter: DefaultKeyedRateLimiter<Uuid>,
    /// Per client address, for the public token and pairing endpoints.
    pub ip_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Counters of `/metrics`.
    pub metrics: Metrics,
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
