//! `POST /v1/auth/token` (OAuth 2.0 client credentials) and `GET /.well-known/jwks.json`.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::parse_scopes;
use crate::auth::secrets::{constant_time_eq, sha256_hex};
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
    path = "/v1/auth/token",
    tag = "auth",
    description = "OAuth 2.0 client credentials grant; JSON or form body, or HTTP Basic client authentication.",
    responses(
        (status = 200, description = "Token issued"),
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
    let fields = body_fields(&headers, &body)?;
    match fields.get("grant_type").map(String::as_str) {
        None | Some("") => return Err(invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                description: "only client_credentials is supported".to_owned(),
                basic: false,
            })
        }
    }
    let used_basic = basic.is_some();
    let (client_id, secret) = match basic {
        Some(creds) => {
            if fields.contains_key("client_secret") {
                return Err(invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            creds
        }
        None => {
            let id = fields
                .get("client_id")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid_request("client_id is required"))?;
            let secret = fields
                .get("client_secret")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid_request("client_secret is required"))?;
            (id.clone(), secret.clone())
        }
    };
    let client_id = Uuid::parse_str(&client_id).map_err(|_| invalid_client(used_basic))?;
    let client = state
        .store
        .get_client(client_id)
        .await?
        .ok_or_else(|| invalid_client(used_basic))?;
    let presented = sha256_hex(secret.as_bytes());
    let current = constant_time_eq(presented.as_bytes(), client.secret_hash.as_bytes());
    let old = client
        .old_secret_hash
        .as_ref()
        .is_some_and(|h| constant_time_eq(presented.as_bytes(), h.as_bytes()));
    if !(current | old) {
        return Err(invalid_client(used_basic));
    }
    let granted = parse_scopes(&client.scopes).unwrap_or_default();
    let scopes = match fields
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => granted,
        Some(requested) => {
            let invalid_scope = |d: String| ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_scope",
                description: d,
                basic: false,
            };
            let wanted = parse_scopes(requested).map_err(invalid_scope)?;
            if let Some(extra) = wanted.iter().find(|s| !granted.contains(s)) {
                return Err(invalid_scope(format!(
                    "the client is not granted `{extra}`"
                )));
            }
            wanted
        }
    };
    let scope = scopes.join(" ");
    let access_token = state.tokens.issue(client.id, client.tenant_id, &scope)?;
    let mut response = Json(json!({
        "success": true,
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.tokens.ttl_secs(),
        "scope": scope,
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
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set")))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.tokens.jwks()).into_response()
}
