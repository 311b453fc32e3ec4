//! `palmlink serve --log-format json --metrics-listen ADDR` as a child process: every log
//! line is a JSON object, a response's request id is on its access-log line, and `/metrics`
//! on its own address exposes each histogram after one request of each kind (an HTTP
//! request, a decision, a webhook delivery), while the API's port no longer serves it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::{capture, palm};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_and_metrics_on_their_own_port() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--allow-http-webhooks"])
        .env("PALMLINK_DATA_DIR", dir.path())
        .env("PALMLINK_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn palmlink serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("start line");
    let _child = Child(child);
    let started: Value = serde_json::from_str(&line).expect("start line is JSON");
    let base = format!(
        "http://{}",
        started["listening"].as_str().expect("listening")
    );
    let metrics_url = format!(
        "http://{}/metrics",
        started["metrics"].as_str().expect("metrics")
    );

    let tenant = palmlink_tests::operator(&bin, dir.path(), &["tenant", "create", "--name", "t"]);
    let tenant = tenant["tenant_id"].as_str().expect("tenant id").to_owned();
    let client = palmlink_tests::operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant, "--name", "app"],
    );
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token: Value = http
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"grant_type": "client_credentials",
            "client_id": client["client_id"], "client_secret": client["client_secret"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token body");
    let token = token["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let post = |path: &str, bearer: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };

    let receiver = Receiver::start(Vec::new()).await;
    let hook = post(
        "/v1/webhooks",
        &token,
        json!({"name": "h", "events": ["enrollment.complete"], "endpoint": receiver.url}),
    )
    .await
    .expect("webhook");
    assert_eq!(hook.status(), 201);
    let registered = post(
        "/v1/devices",
        &token,
        json!({"device_name": "d", "location": "l"}),
    )
    .await
    .expect("register");
    assert_eq!(registered.status(), 201);
    let request_id = registered.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let device: Value = registered.json().await.expect("device");
    let paired: Value = post(
        "/v1/device/pair",
        "",
        json!({"pairing_code": device["data"]["pairing_code"], "hardware_id": "hw-obs"}),
    )
    .await
    .expect("pair")
    .json()
    .await
    .expect("paired");
    let secret = paired["data"]["device_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let challenge: Value = post(
        "/v1/enroll",
        &token,
        json!({"external_user_id": "u1", "hardware_id": "hw-obs", "palm_type": "right"}),
    )
    .await
    .expect("enroll")
    .json()
    .await
    .expect("challenge");
    let id = challenge["data"]["challenge_id"]
        .as_str()
        .expect("challenge id");
    let captured = post(
        &format!("/v1/device/challenges/{id}/capture"),
        &secret,
        json!({"vendor": "mock", "captures": [capture("right", &palm(7))]}),
    )
    .await
    .expect("capture");
    assert_eq!(captured.status(), 200);
    receiver.wait_until(20, |seen| !seen.is_empty()).await;

    // The delivery's latency is recorded right after the receiver answers.
    let mut text = String::new();
    for _ in 0..100 {
        text = http
            .get(&metrics_url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("palmlink_webhook_delivery_duration_seconds_bucket") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for expected in [
        "palmlink_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/devices\",status=\"201\"",
        "palmlink_decision_duration_seconds_bucket{type=\"enroll\",mode=\"store\"",
        "palmlink_webhook_delivery_duration_seconds_bucket{outcome=\"succeeded\"",
        "palmlink_challenges_created_total 1",
        "palmlink_gallery_templates 1",
        "palmlink_galleries_ready 1",
        "palmlink_rate_limiter_keys{limiter=\"client\"} 1",
    ] {
        assert!(text.contains(expected), "no {expected} in\n{text}");
    }
    let public = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("api metrics");
    assert_eq!(
        public.status(),
        404,
        "/metrics must stay off the API's port"
    );

    let logs = std::fs::read_to_string(&log_path).expect("logs");
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line {l:?}: {e}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id.as_str())
        .collect();
    assert!(!access.is_empty(), "no line carries {request_id}:\n{logs}");
    let served = access
        .iter()
        .find(|l| l["fields"]["message"] == "served")
        .unwrap_or_else(|| panic!("no access line for {request_id}:\n{logs}"));
    assert_eq!(served["level"], "INFO");
    assert_eq!(served["span"]["method"], "POST");
    assert_eq!(served["span"]["route"], "/v1/devices");
    assert_eq!(served["fields"]["status"], 201);
    assert!(
        served["fields"]["latency_ms"].as_f64().is_some(),
        "{served}"
    );
    // One access line per request: as many as requests with an id were answered.
    let served_lines = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "served")
        .count();
    assert!(served_lines >= 7, "{served_lines} access lines");
}
