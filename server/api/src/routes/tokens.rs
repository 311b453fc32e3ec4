//! `POST /v1/auth/token` (OAuth 2.0 client credentials) and `GET /.well-known/jwks.json`.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use palmlink_domain::GrantRequest;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{parse_json, read_body};
use crate::state::AppState;

fn invalid_request(description: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
        description: description.into(),
        basic: false,
    }
}

fn invalid_client(basic: bool) -> ApiError {
    ApiError::OAuth {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: "invalid client_id or client_secret".to_owned(),
        basic,
    }
}

/// Client id and secret from `Authorization: Basic` (each form-urlencoded, RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| invalid_client(true))?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(invalid_client(true));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client(false));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid_client(true))?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid_client(true))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| invalid_client(true))?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// The token request's parameters from a JSON or form body.
fn body_fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        let mut fields = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if fields.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(invalid_request("a parameter is repeated"));
            }
        }
        return Ok(fields);
    }
    let value = parse_json(body).map_err(|_| invalid_request("the body is not valid JSON"))?;
    let Value::Object(map) = value else {
        return Err(invalid_request("the body must be a JSON object"));
    };
    let mut fields = HashMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                fields.insert(k, s);
            }
            Value::Null => {}
            _ => return Err(invalid_request(format!("`{k}` must be a string"))),
        }
    }
    Ok(fields)
}

/// Exchanges client credentials for an access token.
#[utoipa::path(
    post,
    path = "/v1/auth/token", operation_id = "issue_token",
    tag = "auth",
    description = "OAuth 2.0 client credentials grant. The same fields are also accepted as an \
        `application/x-www-form-urlencoded` body (RFC 6749), and the client may authenticate with \
        HTTP Basic instead of `client_id` and `client_secret`.",
    security((), ("basic" = [])),
    request_body = crate::schemas::TokenRequest,
    responses(
        (status = 200, description = "Token issued", body = crate::openapi::responses::TokenResponse),
        (status = 400, description = "Invalid body, unsupported grant type or missing parameter"),
        (status = 401, description = "Unknown client or wrong secret"),
    )
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let body = read_body(req, &()).await?;
    let basic = basic_credentials(&headers)?;
    let mut fields = body_fields(&headers, &body)?;
    let grant = state
        .domain
        .tokens
        .grant(GrantRequest {
            grant_type: fields.remove("grant_type"),
            client_id: fields.remove("client_id"),
            client_secret: fields.remove("client_secret"),
            scope: fields.remove("scope"),
            basic,
        })
        .await?;
    let mut response = Json(json!({
        "success": true,
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": grant.scope,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "get_jwks", tag = "auth", responses((status = 200, description = "JSON Web Key Set", body = crate::openapi::responses::Jwks)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.domain.tokens.jwks()).into_response()
}
