//! The access log: one line per request at info, emitted inside a span that carries the
//! request id, so every line logged while serving a request carries its id too.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tracing::Span;

/// The span of one request: its id, method and route (the route's pattern, not the path,
/// so ids in paths stay out of the logs).
pub(crate) fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", request_id, method = %req.method(), route)
}

/// The access-log line, emitted inside the request's span.
pub(crate) fn access_log(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "served"
    );
}
