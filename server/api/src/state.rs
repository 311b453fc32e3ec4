//! What every request handler can reach.

use std::net::IpAddr;
use std::sync::Arc;

use palmlink_domain::Domain;
use uuid::Uuid;

use crate::limits::KeyedLimiter;

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
    pub limiter: KeyedLimiter<Uuid>,
    /// Per client address, for the public token and pairing endpoints.
    pub ip_limiter: KeyedLimiter<IpAddr>,
    /// Counters of `/metrics`.
    pub metrics: Metrics,
    /// Whether `/metrics` is served on the API's port (not when it has a listener of its own).
    pub metrics_on_api: bool,
}

/// Counters bumped by the handlers.
#[derive(Default)]
pub(crate) struct Metrics;

impl Metrics {
    /// Counts a challenge created.
    pub(crate) fn count_challenge_created(&self) {
        metrics::counter!("palmlink_challenges_created_total").increment(1);
    }

    /// Counts a challenge completed by a capture.
    pub(crate) fn count_challenge_completed(&self) {
        metrics::counter!("palmlink_challenges_completed_total").increment(1);
    }

    /// Counts a request refused by a rate limiter.
    pub(crate) fn count_rate_limited(&self) {
        metrics::counter!("palmlink_rate_limited_total").increment(1);
    }
}
