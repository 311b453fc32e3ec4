//! What every request handler can reach.

use std::net::IpAddr;
use std::sync::Arc;

use palmlink_domain::Domain;
use uuid::Uuid;

use crate::limits::KeyedLimiter;
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
    pub limiter: KeyedLimiter<Uuid>,
    /// Per client address, for the public token and pairing endpoints.
    pub ip_limiter: KeyedLimiter<IpAddr>,
    /// Counters of `/metrics`.
    pub metrics: Metrics,
    /// Whether `/metrics` is served on the API's port (not when it has a listener of its own).
    pub metrics_on_api: bool,
}
