//! The OpenAPI document against the router it is generated with, in-process (tower's
//! `oneshot`): unique operation ids, a schema for every response, the error bodies, the
//! security of every operation, every documented operation routed and no other method on
//! its path, and the interactive reference served without external assets.

use std::collections::HashSet;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use palmlink_api::Config;
use serde_json::Value;
use tower::ServiceExt as _;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn router() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path());
    let (domain, _stopping) = palmlink_api::open_domain(&config).await.unwrap();
    (palmlink_api::app(domain, &config), dir)
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String, String) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, kind, String::from_utf8_lossy(&bytes).into_owned())
}

async fn document(router: &Router) -> Value {
    let (status, kind, body) = get(router, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "application/json");
    serde_json::from_str(&body).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_operation_has_a_unique_id_security_and_typed_responses() {
    let (router, _dir) = router().await;
    let doc = document(&router).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut ids = HashSet::new();
    let ops = operations(&doc);
    assert!(ops.len() >= 38, "{} operations", ops.len());
    for (path, method, op) in &ops {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no id"));
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: operation id {id} is not unique"
        );
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{id}: no security"));
        let mut names: Vec<&str> = security
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
            .collect();
        names.dedup();
        let public = [
            "issue_token",
            "get_jwks",
            "pair_device",
            "get_health",
            "get_readiness",
            "get_metrics",
            "get_openapi",
            "get_docs",
        ];
        if path.starts_with("/v1/device/") && id != "pair_device" {
            assert_eq!(names, ["scanner"], "{id}");
        } else if !public.contains(&id) {
            assert_eq!(names, ["bearer"], "{id}");
            let scopes = &security[0]["bearer"];
            assert!(!scopes.as_array().unwrap().is_empty(), "{id}: no scope");
        }
        let responses = op["responses"].as_object().unwrap();
        for code in ["401", "403", "429"] {
            if names.contains(&"bearer") {
                assert!(responses.contains_key(code), "{id}: no {code}");
            }
        }
        if op.get("requestBody").is_some() {
            let content = op["requestBody"]["content"].as_object().unwrap();
            for media in content.values() {
                // A body that may be omitted is `oneOf: [null, {$ref}]`.
                let schema = &media["schema"];
                let reference = schema["$ref"]
                    .as_str()
                    .or_else(|| {
                        schema["oneOf"]
                            .as_array()?
                            .iter()
                            .find_map(|s| s["$ref"].as_str())
                    })
                    .unwrap_or_else(|| panic!("{id}: untyped body {schema}"));
                let name = reference.rsplit('/').next().unwrap();
                assert!(
                    schemas.contains_key(name),
                    "{id}: {name} is not a component"
                );
                assert!(
                    !schemas[name]["properties"].as_object().unwrap().is_empty(),
                    "{id}: {name}"
                );
            }
        }
        for (status, response) in responses {
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{id} {status}"
            );
            if status == "204" {
                assert!(response.get("content").is_none(), "{id} 204 with a body");
                continue;
            }
            let content = response["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{id} {status}: no body schema"));
            for media in content.values() {
                let schema = &media["schema"];
                assert!(
                    schema.is_object() && schema != &Value::Object(Default::default()),
                    "{id} {status}: empty schema"
                );
                if let Some(reference) = schema["$ref"].as_str() {
                    let name = reference.rsplit('/').next().unwrap();
                    assert!(schemas.contains_key(name), "{id} {status}: {name} missing");
                    if status.as_str() >= "400" {
                        let expected = if status == "422" {
                            "ValidationError"
                        } else {
                            "Error"
                        };
                        assert_eq!(name, expected, "{id} {status}");
                    }
                }
            }
        }
    }
    let validation = &schemas["ValidationError"];
    assert!(validation["required"]
        .as_array()
        .unwrap()
        .contains(&Value::from("errors")));
}

/// Path parameters filled with ids that exist nowhere.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "0b7c6a5e-8f3d-4a2b-9c1d-2e3f4a5b6c7d"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn send(router: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_document_and_the_router_name_the_same_operations() {
    let (router, _dir) = router().await;
    let doc = document(&router).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = concrete(path);
        for method in METHODS {
            let (status, body) = send(&router, method, &uri).await;
            let routed = status != StatusCode::METHOD_NOT_ALLOWED
                && !(status == StatusCode::NOT_FOUND && body["message"] == "route not found");
            assert_eq!(
                routed,
                item.get(method).is_some(),
                "{method} {path}: answered {status} {body}"
            );
        }
    }
    // Paths next to documented ones are not routed.
    for uri in [
        "/v1",
        "/v1/device",
        "/v1/devices/x/y",
        "/v1/webhooks/x/deliveries/y/z",
    ] {
        let (status, body) = send(&router, "get", uri).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (StatusCode::NOT_FOUND, Some("route not found")),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_reference_page_is_served_without_external_assets() {
    let (router, _dir) = router().await;
    let (status, kind, html) = get(&router, "/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(html.contains("swagger-ui"), "{html}");
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "//cdn",
    ] {
        assert!(!html.contains(attr), "external asset: {attr}");
    }
    let (status, _, init) = get(&router, "/docs/swagger-initializer.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(init.contains("/openapi.json"), "{init}");
    let (status, kind, bundle) = get(&router, "/docs/swagger-ui-bundle.js").await;
    assert_eq!(status, StatusCode::OK, "{kind}");
    assert!(bundle.len() > 100_000);
}
