//! Operations endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// Alive.
#[utoipa::path(get, path = "/healthz", operation_id = "get_health", tag = "ops", responses((status = 200, description = "Alive", body = crate::openapi::responses::Health)))]
pub(crate) async fn healthz() -> Response {
    Json(json!({"success": true, "status": "ok"})).into_response()
}

/// Storage answers and the galleries have caught up with the database.
#[utoipa::path(get, path = "/readyz", operation_id = "get_readiness", tag = "ops", responses((status = 200, description = "Ready", body = crate::openapi::responses::Ready), (status = 503, description = "Not ready")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if !state.domain.galleries.is_ready() {
        return ApiError::Unavailable("the galleries are catching up with the database".to_owned())
            .into_response();
    }
    match state.domain.store.ping().await {
        Ok(()) => Json(
            json!({"success": true, "status": "ready", "templates": state.domain.galleries.live_total()}),
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            ApiError::Unavailable("storage unavailable".to_owned()).into_response()
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics", tag = "ops", responses((status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    if !state.metrics_on_api {
        // Served on `--metrics-listen` only, away from the public port.
        return ApiError::NotFound("route").into_response();
    }
    crate::metrics::render(&state)
}
