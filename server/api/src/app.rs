//! The router: every route with its middleware, and the OpenAPI document built with it.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palmlink_domain::Domain;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{limit_by_address, require_token};
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::idempotency::idempotency;
use crate::metrics::Metrics;
use crate::routes::{audit, challenges, devices, ops, scanner, settings, tokens, users, webhooks};
use crate::state::{rate_limiter, AppState, Parts};

/// Declares the two credentials: OAuth access tokens and scanner credentials.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /v1/auth/token; the scopes are listed per operation."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "scanner",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The device_secret returned by POST /v1/device/pair."))
                    .build(),
            ),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(modifiers(&SecuritySchemes), info(
    title = "PalmLink API",
    version = "1",
    description = "Open palm-biometric identity API: devices, enrollment, 1:1 verification, 1:N identification."
))]
struct ApiDoc;

async fn not_found() -> Response {
    ApiError::NotFound("route").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

async fn count_status(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    state.metrics.record_status(response.status().as_u16());
    response
}

/// The HTTP application over the domain's services, with the rate limits of `config`.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`, so the public
/// endpoints can limit by client address.
pub fn app(domain: Arc<Domain>, config: &Config) -> Router {
    let state = AppState::new(Parts {
        domain,
        limiter: rate_limiter(config.rate_limit_per_second, config.rate_limit_burst),
        ip_limiter: rate_limiter(
            config.public_rate_limit_per_second,
            config.public_rate_limit_burst,
        ),
        metrics: Metrics::default(),
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
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .merge(credentials)
        .merge(public)
        .split_for_parts();
    let spec = Arc::new(openapi.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    router
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), count_status))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
