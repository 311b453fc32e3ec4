//! Who is calling: integrator tokens on `/v1/*`, scanner credentials on `/v1/device/*`, and
//! the rate limits that follow from who it is.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palmlink_domain::Caller;
use palmlink_store::Device;

use crate::error::ApiError;
use crate::limits::KeyedLimiter;
use crate::state::AppState;

/// The authenticated integrator of a request (put there by [`require_token`]).
#[derive(Clone, Debug)]
pub(crate) struct Integrator(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Integrator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Integrator)
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

/// 429 with the whole seconds to wait when `key` is over its limit.
fn check_rate<K: Clone + Eq + std::hash::Hash>(
    state: &AppState,
    limiter: &KeyedLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    if let Err(wait) = limiter.check(key) {
        state.metrics.count_rate_limited();
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

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".to_owned()))?;
    let caller = state.domain.tokens.authenticate(token).await?;
    check_rate(state, &state.limiter, &caller.client_id)?;
    Ok(caller)
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
        let secret = bearer(&parts.headers).ok_or_else(|| {
            ApiError::Unauthorized("missing or invalid scanner credential".to_owned())
        })?;
        Ok(Scanner(
            state.domain.devices.authenticate_scanner(secret).await?,
        ))
    }
}
