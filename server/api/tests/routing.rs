//! `app()` in-process, without a socket (tower's `oneshot`): routing, the shape of every
//! kind of error, request ids, the token endpoint's two body forms.

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use palmlink_api::Config;
use palmlink_domain::OperatorActor;
use serde_json::{json, Value};
use tower::ServiceExt as _;

struct App {
    router: Router,
    client_id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path());
    let (domain, _stopping) = palmlink_api::open_domain(&config).await.unwrap();
    let tenant = domain
        .operators
        .create_tenant(OperatorActor::CommandLine, "t")
        .await
        .unwrap();
    let client = domain
        .operators
        .create_client(OperatorActor::CommandLine, tenant.id, "app", None)
        .await
        .unwrap();
    App {
        router: palmlink_api::app(domain, &config),
        client_id: client.client.id.to_string(),
        secret: client.secret,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn token(&self) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            self.client_id, self.secret
        );
        let r = self
            .send(
                Request::post("/v1/auth/token")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        r.body["access_token"].as_str().unwrap().to_owned()
    }
}

fn json_request(method: Method, uri: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["success"], false, "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert!(r.body["message"].is_string(), "{}", r.body);
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn unknown_routes_and_methods_have_the_error_body() {
    let app = app().await;
    let r = app
        .send(
            Request::get("/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app
        .send(Request::delete("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn credentials_are_checked_before_anything_else() {
    let app = app().await;
    let r = app
        .send(Request::get("/v1/devices").body(Body::empty()).unwrap())
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    let r = app
        .send(json_request(Method::GET, "/v1/devices", "not-a-token", ""))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // An API token is no scanner credential.
    let token = app.token().await;
    let r = app
        .send(json_request(
            Method::GET,
            "/v1/device/challenges",
            &token,
            "",
        ))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/auth/token",
            "",
            r#"{"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}"#,
        ))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(r.body["error"], "invalid_client");
}

#[tokio::test]
async fn bodies_are_400_when_malformed_422_when_invalid_413_when_too_large() {
    let app = app().await;
    let token = app.token().await;
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/devices",
            &token,
            "{\"device_name\":",
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/devices",
            &token,
            r#"{"device_name": 5, "location": "Lobby"}"#,
        ))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "device_name");
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/devices",
            &token,
            r#"{"device_name": " ", "location": ""}"#,
        ))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["device_name", "location"]);
    let huge = format!(
        r#"{{"device_name": "{}", "location": "x"}}"#,
        "a".repeat(1 << 20)
    );
    let r = app
        .send(json_request(Method::POST, "/v1/devices", &token, &huge))
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // A webhook body that does not fit is a 400, as the contract has it.
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/webhooks",
            &token,
            r#"{"name": "n", "events": "device.paired", "endpoint": "https://example.com/"}"#,
        ))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_webhook");
}

#[tokio::test]
async fn a_registered_device_comes_back_with_its_pairing_code() {
    let app = app().await;
    let token = app.token().await;
    let r = app
        .send(json_request(
            Method::POST,
            "/v1/devices",
            &token,
            &json!({"device_name": "Front desk", "location": "Lobby"}).to_string(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let data = &r.body["data"];
    assert_eq!(data["status"], "pending_pair");
    assert_eq!(data["expires_in"], 1800);
    assert_eq!(data["pairing_code"].as_str().unwrap().len(), 10);
    let id = data["device_id"].as_str().unwrap();
    let r = app
        .send(json_request(
            Method::GET,
            &format!("/v1/devices/{id}"),
            &token,
            "",
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["data"].get("pairing_code").is_none());
    let r = app
        .send(json_request(
            Method::GET,
            "/v1/devices/not-a-uuid",
            &token,
            "",
        ))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app
        .send(json_request(Method::GET, "/v1/devices?limit=0", &token, ""))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = app().await;
    let r = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = r.body["paths"].as_object().unwrap();
    for path in [
        "/v1/auth/token",
        "/v1/devices",
        "/v1/device/pair",
        "/v1/device/challenges/{challenge_id}/capture",
        "/v1/enroll",
        "/v1/identify",
        "/v1/users/{external_user_id}",
        "/v1/settings/matching",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is missing");
    }
}
