//! Request extractors that reject with the service's own error shape.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use palmlink_domain::Page;

use crate::error::{ApiError, ApiResult};

/// Largest accepted request body.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body: 400 when malformed, 422 with field errors when it does not fit `T`, 413 when
/// over [`BODY_LIMIT`]. What the values mean is the domain's to check.
pub(crate) struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(AppJson(parse_body(&bytes)?))
    }
}

/// Buffers the body, mapping an oversized body to 413.
pub(crate) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })
}

/// Parses a JSON object body into `T`: 400 when it is not JSON, 422 naming the failing field
/// when it does not fit `T`.
///
/// A body that fits is parsed once, straight into `T`. Only a body that does not is parsed
/// again step by step ([`parse_json`], then [`from_value`]), which tells the two failures apart
/// and names the field; that second parse also decides a body the first refused for a reason
/// of its own (a repeated key, whose last value counts).
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_object {
        if let Ok(parsed) = serde_json::from_slice(bytes) {
            return Ok(parsed);
        }
    }
    from_value(parse_json(bytes)?)
}

/// Parses bytes as JSON: 400 `malformed_json` when they are not.
pub(crate) fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "request body is empty",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))
}

/// Deserialises a JSON object into `T`, reporting the failing field as a 422.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    if !value.is_object() {
        return Err(ApiError::field("body", "expected a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        match missing {
            Some(name) => {
                let field = if path == "." {
                    name
                } else {
                    format!("{path}.{name}")
                };
                ApiError::field(field, "is required")
            }
            None => ApiError::field(if path == "." { "body".to_owned() } else { path }, message),
        }
    })
}

/// Parses an id from a path: anything that is not a UUID is simply unknown (404).
pub(crate) fn parse_id(raw: &str, what: &'static str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}

/// The query string as a map; never rejects (bad escapes are decoded leniently, and
/// parameters are then validated by whoever reads them).
pub(crate) struct QueryMap(pub HashMap<String, String>);

impl QueryMap {
    /// The page its `offset` and `limit` ask for (422 when out of bounds).
    pub(crate) fn page(&self) -> ApiResult<Page> {
        Ok(Page::parse(
            self.0.get("offset").map(String::as_str),
            self.0.get("limit").map(String::as_str),
        )?)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(QueryMap(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

/// One path parameter; a parameter that cannot be decoded names nothing that exists (404).
pub(crate) struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|_| ApiError::NotFound("resource"))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        blocks: Vec<Vec<f64>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    fn fields(err: ApiError) -> Vec<palmlink_domain::FieldError> {
        match err {
            ApiError::Validation(errors) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn field_paths_name_the_failing_value() {
        let missing = from_value::<Outer>(json!({"items": []})).unwrap_err();
        assert_eq!(
            fields(missing),
            vec![palmlink_domain::FieldError::new("name", "is required")]
        );
        let nested_missing = from_value::<Outer>(json!({"name": "x", "items": [{}]})).unwrap_err();
        assert_eq!(fields(nested_missing)[0].field, "items[0].blocks");
        let wrong_type =
            from_value::<Outer>(json!({"name": "x", "items": [{"blocks": [[1.0, "a"]]}]}))
                .unwrap_err();
        assert_eq!(fields(wrong_type)[0].field, "items[0].blocks[0][1]");
        let not_object = from_value::<Outer>(json!([1])).unwrap_err();
        assert_eq!(fields(not_object)[0].field, "body");
    }

    #[test]
    fn a_body_parses_as_it_would_step_by_step() {
        let parsed: Outer =
            parse_body(br#" {"name": "x", "items": [{"blocks": [[1.5]]}]}"#).unwrap();
        assert_eq!(
            (parsed.name.as_str(), parsed.items[0].blocks[0][0]),
            ("x", 1.5)
        );
        // A repeated key: the last value counts, as in a step-by-step parse.
        let parsed: Outer = parse_body(br#"{"name": "a", "name": "b", "items": []}"#).unwrap();
        assert_eq!(parsed.name, "b");
        // A struct could be read from an array: the body must still be an object.
        let err = parse_body::<Outer>(br#"["x", []]"#).unwrap_err();
        assert_eq!(fields(err)[0].field, "body");
        let err =
            parse_body::<Outer>(br#"{"name": "x", "items": [{"blocks": [["a"]]}]}"#).unwrap_err();
        assert_eq!(fields(err)[0].field, "items[0].blocks[0][0]");
        let err = parse_body::<Outer>(br#"{"name": "x""#).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn malformed_and_empty_bodies_are_400() {
        for body in [&b""[..], b"  ", b"{", b"nul"] {
            let err = parse_json(body).unwrap_err();
            assert_eq!(
                err.status(),
                axum::http::StatusCode::BAD_REQUEST,
                "{body:?}"
            );
        }
        assert!(parse_json(b"{}").is_ok());
    }
}
