//! `GET /metrics`: the Prometheus metrics, recorded through the `metrics` facade and rendered
//! by its Prometheus exporter: request latency (method, route, status), decision latency
//! (type, search mode), webhook delivery latency (outcome, recorded by the webhook worker),
//! counters of challenges and rate-limited requests, and gauges of the galleries and the
//! rate limiters read at each scrape.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Seconds: from a millisecond to ten seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed as the `metrics` facade's global recorder
/// on first use (a process has one; every app built in it records there).
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "palmlink_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route and status."
    );
    describe_histogram!(
        "palmlink_decision_duration_seconds",
        Unit::Seconds,
        "Capture decision latency by challenge type and search mode."
    );
    describe_histogram!(
        "palmlink_webhook_delivery_duration_seconds",
        Unit::Seconds,
        "Webhook delivery attempt latency by outcome."
    );
    describe_counter!("palmlink_challenges_created_total", "Challenges created.");
    describe_counter!(
        "palmlink_challenges_completed_total",
        "Challenges completed by a capture."
    );
    describe_counter!(
        "palmlink_rate_limited_total",
        "Requests refused by a rate limiter."
    );
    describe_gauge!(
        "palmlink_gallery_templates",
        "Live templates in the node's loaded galleries."
    );
    describe_gauge!(
        "palmlink_galleries_ready",
        "1 once the galleries have caught up with the template log, else 0."
    );
    describe_gauge!(
        "palmlink_rate_limiter_keys",
        "Keys a rate limiter remembers (bounded by the keys seen within its refill window)."
    );
    describe_gauge!(
        "palmlink_gallery_unreadable_templates",
        "Templates whose sealed copy did not open on this node."
    );
}

/// Middleware: the request latency histogram by method, route and status.
pub(crate) async fn measure(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics::histogram!(
        "palmlink_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed());
    response
}

/// Records how long a capture took to decide, by challenge type and search mode (`exact` or
/// `ann` for an identification, `one_to_one` for a verification, `store` for an enrollment).
pub(crate) fn record_decision(kind: &str, result: Option<&serde_json::Value>, took: Duration) {
    let mode = match kind {
        "identify" => result
            .and_then(|r| r["search"]["mode"].as_str())
            .unwrap_or("none"),
        "verify" => "one_to_one",
        _ => "store",
    };
    metrics::histogram!(
        "palmlink_decision_duration_seconds",
        "type" => kind.to_owned(),
        "mode" => mode.to_owned(),
    )
    .record(took);
}

/// The Prometheus exposition, with the gauges read from the node now.
pub(crate) fn render(state: &AppState) -> Response {
    let galleries = &state.domain.galleries;
    metrics::gauge!("palmlink_rate_limiter_keys", "limiter" => "client")
        .set(state.limiter.keys() as f64);
    metrics::gauge!("palmlink_rate_limiter_keys", "limiter" => "address")
        .set(state.ip_limiter.keys() as f64);
    metrics::gauge!("palmlink_gallery_templates").set(galleries.live_total() as f64);
    metrics::gauge!("palmlink_galleries_ready").set(if galleries.is_ready() { 1.0 } else { 0.0 });
    metrics::gauge!("palmlink_gallery_unreadable_templates")
        .set(galleries.unreadable().len() as f64);
    let handle = prometheus();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The `/metrics` route on its own, for `--metrics-listen`.
pub(crate) fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { render(&state) }),
        )
        .with_state(state)
}
