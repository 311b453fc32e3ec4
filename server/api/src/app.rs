//! The router: every route with its middleware, the OpenAPI document built with it, and the
//! interactive reference on `/docs`.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palmlink_domain::Domain;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::access_log;
use crate::auth::{limit_by_address, require_token};
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::idempotency::idempotency;
use crate::limits::KeyedLimiter;
use crate::metrics;
use crate::openapi;
use crate::routes::{audit, challenges, devices, ops, scanner, settings, tokens, users, webhooks};
use crate::state::{AppState, Metrics, Parts};

async fn not_found() -> Response {
    ApiError::NotFound("route").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// The HTTP application over the domain's services, with the rate limits of `config`.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`, so the public
/// endpoints can limit by client address.
pub fn app(domain: Arc<Domain>, config: &Config) -> Router {
    app_and_metrics(domain, config).0
}

/// [`app`], and the router of `/metrics` alone for `config.metrics_listen`.
pub(crate) fn app_and_metrics(domain: Arc<Domain>, config: &Config) -> (Router, Router) {
    metrics::prometheus();
    let state = AppState::new(Parts {
        domain,
        limiter: KeyedLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        ip_limiter: KeyedLimiter::new(
            config.public_rate_limit_per_second,
            config.public_rate_limit_burst,
        ),
        metrics: Metrics,
        metrics_on_api: config.metrics_listen.is_none(),
    });
    let api = OpenApiRouter::new()
        .routes(routes!(devices::register, devices::list))
        .routes(routes!(devices::get, devices::revoke))
        .routes(routes!(devices::pairing_code))
        .routes(routes!(challenges::enroll))
        .routes(routes!(challenges::enroll_both))
        .routes(routes!(challenges::verify))
        .routes(routes!(challenges::identify))
        .routes(routes!(challenges::list))
        .routes(routes!(challenges::get))
        .routes(routes!(users::list))
        .routes(routes!(users::get, users::delete))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(audit::list))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::retry))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::test))
        .route_layer(from_fn_with_state(state.clone(), idempotency))
        .route_layer(from_fn_with_state(state.clone(), require_token));
    let credentials = OpenApiRouter::new()
        .routes(routes!(tokens::token))
        .routes(routes!(scanner::pair))
        .route_layer(from_fn_with_state(state.clone(), limit_by_address));
    let public = OpenApiRouter::new()
        .routes(routes!(tokens::jwks))
        .routes(routes!(scanner::poll))
        .routes(routes!(scanner::capture))
        .routes(routes!(scanner::cancel))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics));
    let (router, openapi) = OpenApiRouter::with_openapi(openapi::base())
        .merge(api)
        .merge(credentials)
        .merge(public)
        .split_for_parts();
    let spec = serde_json::to_string_pretty(&openapi::complete(&openapi))
        .unwrap_or_else(|_| "{}".to_owned());
    let spec = Arc::new(spec);
    let docs = SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json"));
    let router = router
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        spec.as_str().to_owned(),
                    )
                }
            }),
        )
        .merge(crate::console::router(state.clone()))
        .merge(docs)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(metrics::measure))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(access_log::request_span)
                .on_response(access_log::access_log),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state.clone());
    (router, metrics::metrics_router(state))
}
