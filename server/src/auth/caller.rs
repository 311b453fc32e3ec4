//! Who is calling: integrator tokens on `/v1/*`, scanner credentials on `/v1/device/*`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use uuid::Uuid;

use super::secrets::sha256_hex;
use crate::clock::now_micros;
use crate::error::ApiError;

/// How stale a scanner's `last_seen_at` may get before a request refreshes it (5 s).
const LAST_SEEN_RESOLUTION_MICROS: i64 = 5_000_000;
use crate::state::AppState;
use crate::store::Device;

/// Prefix of scanner credentials.
pub(crate) const DEVICE_SECRET_PREFIX: &str = "pds_";

/// An authenticated integrator (an OAuth client of a tenant).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub scopes: Vec<String>,
}

impl Caller {
    /// 403 `insufficient_scope` unless the token carries `scope`.
    pub(crate) fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".to_owned()))
    }
}

/// The bearer credential of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".to_owned()))?;
    let verified = state.tokens.verify(token)?;
    // Deleting a client must end its tokens at once: look it up on every request.
    let client = state.store.get_client(verified.client_id).await?;
    match client {
        Some(c) if c.tenant_id == verified.tenant_id => {}
        _ => {
            return Err(ApiError::Unauthorized(
                "the client of this token no longer exists".to_owned(),
            ))
        }
    }
    if let Err(not_until) = state.limiter.check_key(&verified.client_id) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        state
            .metrics
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::RateLimited(
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        ));
    }
    Ok(Caller {
        tenant_id: verified.tenant_id,
        client_id: verified.client_id,
        scopes: verified.scopes,
    })
}

/// 429 with the whole seconds to wait when `key` is over its limit.
fn check_rate<K: Clone + Eq + std::hash::Hash>(
    state: &AppState,
    limiter: &governor::DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    if let Err(not_until) = limiter.check_key(key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        state
            .metrics
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::RateLimited(
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        ));
    }
    Ok(())
}

/// Middleware of the public token and pairing endpoints: rate limits per client address.
pub(crate) async fn limit_by_address(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        if let Err(e) = check_rate(&state, &state.ip_limiter, &ip) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// Middleware of the integrator API: authenticates the token, then rate limits per client.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&state, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// An authenticated, paired scanner.
#[derive(Clone, Debug)]
pub(crate) struct Scanner(pub Device);

impl FromRequestParts<AppState> for Scanner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized =
            || ApiError::Unauthorized("missing or invalid scanner credential".to_owned());
        let secret = bearer(&parts.headers).ok_or_else(unauthorized)?;
        if !secret.starts_with(DEVICE_SECRET_PREFIX) {
            return Err(unauthorized());
        }
        let device = state
            .store
            .find_device_by_secret_hash(&sha256_hex(secret.as_bytes()))
            .await?
            .ok_or_else(unauthorized)?;
        let now = now_micros();
        if device.cert_valid_until.is_some_and(|until| until <= now) {
            return Err(ApiError::Unauthorized(
                "the scanner credential has expired".to_owned(),
            ));
        }
        // `last_seen_at` is a presence indicator: refreshing it at most every few seconds
        // keeps a durable write off most scanner requests.
        if device
            .last_seen_at
            .is_none_or(|seen| now - seen >= LAST_SEEN_RESOLUTION_MICROS)
        {
            state.store.touch_device(device.id, now).await?;
        }
        Ok(Scanner(device))
    }
}
