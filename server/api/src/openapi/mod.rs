//! The OpenAPI document: generated with the routes (`utoipa`), then completed with what every
//! operation shares: the error responses its middleware and extractors can give (each with
//! the error body, `errors` on 422), the `X-Request-Id` header, request and response examples
//! from `fixtures/api/`, and the links between operations that a stateful client follows.

pub(crate) mod responses;
pub(crate) mod results;

use serde_json::{json, Map, Value};
use utoipa::OpenApi as _;

/// Declares the three credentials: OAuth access tokens, HTTP Basic client authentication on
/// the token endpoint, and scanner credentials.
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
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "client_id:client_secret (RFC 6749 §2.3.1), on the token endpoint only.",
                    ))
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
#[openapi(
    modifiers(&SecuritySchemes),
    info(
        title = "PalmLink API",
        version = "1.1",
        description = "Open palm-biometric identity API: devices, enrollment, 1:1 verification, 1:N identification."
    ),
    components(schemas(responses::Error, responses::ValidationError))
)]
pub(crate) struct ApiDoc;

/// The document the routes start from: info, security schemes, the error bodies.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The generated document, completed (see the module doc), as served on `/openapi.json`.
pub(crate) fn complete(openapi: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_else(|_| json!({}));
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if METHODS.contains(&method.as_str()) {
                    complete_operation(path, method, op);
                }
            }
        }
        paths.insert(
            "/openapi.json".to_owned(),
            document_route(
                "get_openapi",
                "This document (OpenAPI 3.1).",
                "application/json",
                json!({"type": "object"}),
            ),
        );
        paths.insert(
            "/docs".to_owned(),
            document_route(
                "get_docs",
                "The interactive API reference (Swagger UI, served from the binary).",
                "text/html",
                json!({"type": "string"}),
            ),
        );
    }
    constrain(&mut doc["components"]["schemas"]);
    add_examples(&mut doc);
    add_links(&mut doc);
    doc
}

fn document_route(id: &str, description: &str, media: &str, schema: Value) -> Value {
    json!({"get": {
        "tags": ["ops"], "operationId": id, "summary": description, "security": [],
        "responses": {"200": {
            "description": description,
            "headers": {"X-Request-Id": request_id_header()},
            "content": {media: {"schema": schema}},
        }},
    }})
}

fn request_id_header() -> Value {
    json!({"description": "The request's id, also on its log lines.", "schema": {"type": "string"}})
}

fn schemes(op: &Value) -> Vec<String> {
    op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|r| r.keys().cloned())
        .collect()
}

/// Adds the responses an operation gets from the layers around its handler, and the error
/// body, the `Retry-After` and the `X-Request-Id` headers to every response.
fn complete_operation(path: &str, method: &str, op: &mut Value) {
    let schemes = schemes(op);
    let bearer = schemes.iter().any(|s| s == "bearer");
    let id = op["operationId"].as_str().unwrap_or_default().to_owned();
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if bearer {
        extra.push(("401", "Missing, invalid, expired or revoked access token"));
        extra.push(("403", "The token lacks the operation's scope"));
        extra.push(("429", "Rate limited per client; see `Retry-After`"));
        if method == "post" {
            extra.push((
                "422",
                "Invalid `Idempotency-Key`, or the key reused with another body",
            ));
        }
    }
    if schemes.iter().any(|s| s == "scanner") {
        extra.push(("401", "Missing or invalid scanner credential"));
    }
    if id == "issue_token" || id == "pair_device" {
        extra.push(("429", "Rate limited per client address; see `Retry-After`"));
    }
    if op.get("requestBody").is_some() {
        extra.push(("400", "Malformed or empty JSON body"));
        extra.push(("413", "Request body over 1 MiB"));
    }
    if path.contains('{') {
        extra.push(("404", "Unknown resource in this tenant"));
    }
    let paged = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "limit"));
    if paged {
        extra.push(("422", "Bad pagination or filter"));
    }
    if id == "list_challenges" {
        empty_filters(op);
    }
    if op.get("security").is_none() {
        op["security"] = json!([]);
    }
    let responses = op["responses"]
        .as_object_mut()
        .expect("utoipa always writes responses");
    for (status, description) in extra {
        responses
            .entry(status)
            .or_insert_with(|| json!({"description": description}));
    }
    for (status, response) in responses.iter_mut() {
        let response = response.as_object_mut().expect("a response object");
        if status.as_str() >= "400" {
            let schema = if status == "422" {
                "ValidationError"
            } else {
                "Error"
            };
            response.insert(
                "content".to_owned(),
                json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}),
            );
        }
        let headers = response
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("headers object");
        headers.insert("X-Request-Id".to_owned(), request_id_header());
        if status == "429" {
            headers.insert(
                "Retry-After".to_owned(),
                json!({"description": "Whole seconds to wait.", "schema": {"type": "integer"}}),
            );
        }
    }
}

/// What the derived schemas cannot say: thresholds each in -1..1; `k` required by `k_of_n`.
fn constrain(schemas: &mut Value) {
    let settings = &mut schemas["MatchingSettings"];
    settings["properties"]["thresholds"]["items"] =
        json!({"type": "number", "format": "double", "minimum": -1, "maximum": 1});
    settings["properties"]["k"] = json!({"type": ["integer", "null"],
        "description": "Blocks that must pass under `k_of_n`, 1-10 (ignored by the other policies)."});
    settings["oneOf"] = json!([
        {"properties": {"match_policy": {"enum": ["all_thresholds", "mean"]}}},
        {"properties": {"match_policy": {"const": "k_of_n"}, "k": {"type": "integer", "minimum": 1, "maximum": 10}},
         "required": ["k"]},
    ]);
}

/// The challenge list's filters: the contract writes `?type=&status=`, so an empty value
/// is accepted and means no filter.
fn empty_filters(op: &mut Value) {
    let Some(params) = op["parameters"].as_array_mut() else {
        return;
    };
    for p in params.iter_mut() {
        let values: &[&str] = match p["name"].as_str() {
            Some("type") => &["enroll", "verify", "identify"],
            Some("status") => &["pending", "completed", "failed", "cancelled", "expired"],
            _ => continue,
        };
        let mut all = vec![""];
        all.extend_from_slice(values);
        p["schema"] = json!({"type": "string", "enum": all});
        p["description"] = json!(format!(
            "{} (empty: no filter)",
            p["description"].as_str().unwrap_or_default()
        ));
    }
}

/// A fixture with its template placeholders filled in.
fn fixture(text: &str) -> Value {
    let filled = text
        .replace("{{external_user_id}}", "emp-4421")
        .replace("{{hardware_id}}", "hardware_local_002");
    serde_json::from_str(&filled).unwrap_or(Value::Null)
}

/// Request and response examples from `fixtures/api/`, by operation id.
fn add_examples(doc: &mut Value) {
    let requests: [(&str, &str); 5] = [
        (
            "issue_token",
            include_str!("../../../../fixtures/api/auth_token_request.json"),
        ),
        (
            "register_device",
            include_str!("../../../../fixtures/api/device_register_request.json"),
        ),
        (
            "create_enrollment_both",
            include_str!("../../../../fixtures/api/enroll_both_request.json"),
        ),
        (
            "create_verification",
            include_str!("../../../../fixtures/api/verify_request.json"),
        ),
        (
            "create_webhook",
            include_str!("../../../../fixtures/api/webhook_create_request.json"),
        ),
    ];
    let responses: [(&str, &str, &str); 3] = [
        (
            "issue_token",
            "200",
            include_str!("../../../../fixtures/api/auth_token_response.json"),
        ),
        (
            "register_device",
            "201",
            include_str!("../../../../fixtures/api/device_register_response.json"),
        ),
        (
            "create_enrollment_both",
            "201",
            include_str!("../../../../fixtures/api/enroll_both_response.json"),
        ),
    ];
    for_each_operation(doc, |id, op| {
        for (_, text) in requests.iter().filter(|(r, _)| *r == id) {
            if let Some(content) = op["requestBody"]["content"].as_object_mut() {
                for media in content.values_mut() {
                    media["example"] = fixture(text);
                }
            }
        }
        for (_, status, text) in responses.iter().filter(|(r, _, _)| *r == id) {
            if let Some(media) =
                op["responses"][*status]["content"]["application/json"].as_object_mut()
            {
                media.insert("example".to_owned(), fixture(text));
            }
        }
    });
}

/// Links from what creates a resource to what reads, changes or deletes it.
fn add_links(doc: &mut Value) {
    let links: [(&str, &str, &str, &[&str], &str); 5] = [
        (
            "register_device",
            "201",
            "device_id",
            &["get_device", "revoke_device", "issue_pairing_code"],
            "$response.body#/data/device_id",
        ),
        (
            "create_webhook",
            "201",
            "webhook_id",
            &[
                "get_webhook",
                "update_webhook",
                "delete_webhook",
                "rotate_webhook_secret",
                "list_deliveries",
                "recover_deliveries",
                "test_webhook",
            ],
            "$response.body#/data/webhook_id",
        ),
        (
            "create_enrollment",
            "201",
            "challenge_id",
            &["get_challenge"],
            "$response.body#/data/challenge_id",
        ),
        (
            "create_verification",
            "201",
            "challenge_id",
            &["get_challenge"],
            "$response.body#/data/challenge_id",
        ),
        (
            "create_identification",
            "201",
            "challenge_id",
            &["get_challenge"],
            "$response.body#/data/challenge_id",
        ),
    ];
    for_each_operation(doc, |id, op| {
        for (_, status, param, targets, expr) in links.iter().filter(|l| l.0 == id) {
            let Some(response) = op["responses"][*status].as_object_mut() else {
                continue;
            };
            let mut map = Map::new();
            for target in *targets {
                map.insert(
                    (*target).to_owned(),
                    json!({"operationId": target, "parameters": {*param: expr}}),
                );
            }
            response.insert("links".to_owned(), Value::Object(map));
        }
    });
}

fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, op) in item.iter_mut() {
            if METHODS.contains(&method.as_str()) {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                f(&id, op);
            }
        }
    }
}
