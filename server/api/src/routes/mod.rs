//! HTTP routes: thin handlers that parse the request, call [`crate::service`] and shape the
//! response. The router and the OpenAPI document are built together.

pub(crate) mod audit;
pub(crate) mod challenges;
pub(crate) mod devices;
pub(crate) mod ops;
pub(crate) mod scanner;
pub(crate) mod settings;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod webhooks;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `200 {"success": true, "data": ...}`.
pub(crate) fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

/// `201 {"success": true, "data": ..., "message": ...}`.
pub(crate) fn created(data: Value, message: &str) -> Response {
    (
        StatusCode::CREATED,
        Json(json!({"success": true, "data": data, "message": message})),
    )
        .into_response()
}
