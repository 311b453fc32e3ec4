//! The one-command demo and the simulated scanner, run as the `palmlink` binary.
//!
//! - `demo_runs_the_whole_loop`: `palmlink demo --json` as a child process; every step,
//!   decision and webhook of its output is checked.
//! - `scanner_pairs_and_answers_challenges`: `palmlink scanner` against a service started in
//!   the test: pairing, an enrollment, a genuine and an impostor verification, a challenge
//!   it cannot answer (cancelled).
//! - `simulator_*`: how the simulator chooses palms.
//! - `receiver_checks_standard_webhooks_signatures`: the demo receiver's signature check.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use palmlink_domain::{OperatorActor, Operators, SystemClock};
use palmlink_simulator::scanner::{SimOptions, Simulator};
use serde_json::{json, Value};

/// A child process killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a child with a deadline; returns (exit success, stdout lines as JSON).
fn finish(mut guard: ChildGuard, limit: Duration) -> (bool, Vec<Value>) {
    let mut stdout = guard.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the child did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().expect("reader");
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line {l:?}: {e}")))
        .collect();
    (status.success(), lines)
}

#[test]
fn demo_runs_the_whole_loop() {
    let child = Command::new(palmlink_tests::palmlink_binary())
        .args(["demo", "--json", "--timeout-secs", "20"])
        .env("PALMLINK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn palmlink demo");
    let (success, lines) = finish(ChildGuard(child), Duration::from_secs(120));
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(kinds.first(), Some(&"start"), "{lines:#?}");
    let data_dir = PathBuf::from(lines[0]["data_dir"].as_str().expect("data_dir"));
    assert!(
        !data_dir.exists(),
        "the temporary data directory {} was left behind",
        data_dir.display()
    );

    let steps: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "step").collect();
    for step in &steps {
        assert_eq!(step["ok"], true, "failed step {step:#}");
    }
    let step = |name: &str| -> &Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name:?} in {lines:#?}"))
    };
    for name in [
        "service started",
        "tenant and OAuth client created",
        "access token",
        "device registered",
        "scanner paired",
        "enrolled alice (right palm)",
        "enrolled bob (left palm)",
        "enrolled carol (both palms)",
    ] {
        step(name);
    }
    // The decisions, from the result data the demo printed.
    let genuine = step("genuine verification: alice presents her own palm");
    assert_eq!(genuine["data"]["matched"], true);
    assert_eq!(genuine["data"]["external_user_id"], "alice");
    assert_eq!(genuine["data"]["scores"].as_array().map(Vec::len), Some(10));
    let impostor = step("impostor verification: a stranger claims to be bob");
    assert_eq!(impostor["data"]["matched"], false);
    assert_eq!(impostor["data"]["external_user_id"], "bob");
    let second = step("second palm: carol verifies with her left palm");
    assert_eq!(second["data"]["matched"], true);
    assert_eq!(second["data"]["palm_type"], "left");
    let found = step("identification: carol presents her right palm");
    assert_eq!(found["data"]["matched"], true);
    assert_eq!(found["data"]["candidates"][0]["external_user_id"], "carol");
    assert_eq!(found["data"]["candidates"][0]["palm_type"], "right");
    let stranger = step("identification: a stranger is not found");
    assert_eq!(stranger["data"]["matched"], false);
    for s in steps
        .iter()
        .filter(|s| s["step"] != "scanner answered every challenge")
    {
        assert!(s["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{s:#}");
    }
    assert_eq!(
        step("scanner answered every challenge")["data"]["reported"],
        8
    );

    // The scanner answered every challenge: 3 enrollments, 3 verifications, 2 identifications.
    let reports: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "scanner")
        .map(|l| &l["report"])
        .collect();
    assert_eq!(reports.len(), 8, "{reports:#?}");
    assert!(
        reports.iter().all(|r| r["outcome"] == "completed"),
        "{reports:#?}"
    );
    let impostor_report = reports
        .iter()
        .find(|r| r["type"] == "verify" && r["external_user_id"] == "bob")
        .expect("scanner report of bob's verification");
    assert_eq!(impostor_report["identity"], 404);

    let summary = lines.last().expect("output");
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["failed"], json!([]));
    assert_eq!(summary["result_latency_ms"]["count"], 8);
    let (min, max) = (
        &summary["result_latency_ms"]["min"],
        &summary["result_latency_ms"]["max"],
    );
    assert!(min
        .as_f64()
        .is_some_and(|min| min >= 0.0 && max.as_f64().is_some_and(|max| max >= min)));
    assert_eq!(summary["checks"].as_u64(), Some(steps.len() as u64));
    let webhooks: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "webhook").collect();
    assert_eq!(
        summary["webhooks_received"].as_u64(),
        Some(webhooks.len() as u64)
    );
    // Webhook delivery is part of the service: the demo must not fall back to polling.
    assert_eq!(summary["webhooks"], "delivered", "{lines:#?}");
    step("webhook subscribed");
    step("device.paired webhook");
    let count = |event: &str| webhooks.iter().filter(|w| w["event_type"] == event).count();
    assert_eq!(count("device.paired"), 1, "{webhooks:#?}");
    assert_eq!(count("enrollment.complete"), 3, "{webhooks:#?}");
    assert_eq!(count("verification.complete"), 3, "{webhooks:#?}");
    assert_eq!(count("identification.complete"), 2, "{webhooks:#?}");
    assert_eq!(webhooks.len(), 9, "{webhooks:#?}");
    for w in &webhooks {
        assert_eq!(w["signature_valid"], true, "{w:#}");
        assert_eq!(w["api_key_valid"], true, "{w:#}");
        assert_eq!(w["x_link_event"], w["event_type"], "{w:#}");
        assert!(
            w["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_")),
            "{w:#}"
        );
        assert!(w["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{w:#}");
    }
    // Every challenge's webhook names a challenge the scanner answered, and carries the
    // decision the step reported.
    for w in webhooks
        .iter()
        .filter(|w| w["event_type"] != "device.paired")
    {
        assert!(
            reports
                .iter()
                .any(|r| r["challenge_id"] == w["challenge_id"]),
            "{w:#}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s["data"]["challenge_id"] == w["challenge_id"] && s["data"] == w["data"]),
            "{w:#}"
        );
    }
    assert!(success, "palmlink demo exited with failure");
}

/// A service started in the test, with a tenant, a client token and a registered device.
struct Service {
    server: palmlink_api::RunningServer,
    base: String,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start() -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = palmlink_api::Config::new(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("address");
        let store = palmlink_api::open_store(&config).await.expect("store");
        let operators = Operators::new(store, Arc::new(SystemClock));
        let tenant = operators
            .create_tenant(OperatorActor::CommandLine, "scanner test")
            .await
            .expect("tenant");
        let client = operators
            .create_client(OperatorActor::CommandLine, tenant.id, "test", None)
            .await
            .expect("client");
        let server = palmlink_api::start(config).await.expect("start");
        let base = format!("http://{}", server.addr());
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{base}/v1/auth/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": client.client.id, "client_secret": client.secret}))
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token body");
        let token = token["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        Service {
            server,
            base,
            token,
            http,
            _dir: dir,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a challenge and waits until it is no longer pending; returns its record.
    async fn settle(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 201, "{created:#}");
        let id = created["data"]["challenge_id"]
            .as_str()
            .expect("challenge_id")
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self
                .call(reqwest::Method::GET, &format!("/v1/challenges/{id}"), None)
                .await;
            assert_eq!(status, 200, "{body:#}");
            if body["data"]["status"] != "pending" {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "challenge {id} still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_pairs_and_answers_challenges() {
    let service = Service::start().await;
    let (status, device) = service
        .call(
            reqwest::Method::POST,
            "/v1/devices",
            Some(json!({"device_name": "Sim", "location": "Test bench"})),
        )
        .await;
    assert_eq!(status, 201, "{device:#}");
    let code = device["data"]["pairing_code"]
        .as_str()
        .expect("pairing_code")
        .to_owned();
    let device_id = device["data"]["device_id"]
        .as_str()
        .expect("device_id")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let identities = dir.path().join("identities.json");
    std::fs::write(&identities, r#"{"dana": 5}"#).expect("write identities");

    let child = Command::new(palmlink_tests::palmlink_binary())
        .args([
            "scanner",
            "--server",
            &service.base,
            "--pairing-code",
            &code,
            "--hardware-id",
            "hw-sim-1",
        ])
        .args(["--identities".as_ref(), identities.as_os_str()])
        .args([
            "--population",
            "1000",
            "--wait-ms",
            "500",
            "--max-challenges",
            "4",
            "--json",
        ])
        .env("PALMLINK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn palmlink scanner");
    let mut guard = ChildGuard(child);
    // The first line reports the pairing; read it, then hand stdout back for the rest.
    let mut stdout = BufReader::new(guard.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read pairing line");
    let paired: Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("bad first line {first:?}: {e}"));
    assert_eq!(paired["event"], "paired");
    assert_eq!(paired["device"]["device_id"], device_id.as_str());
    assert_eq!(paired["device"]["hardware_id"], "hw-sim-1");
    let (status, record) = service
        .call(
            reqwest::Method::GET,
            &format!("/v1/devices/{device_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["data"]["status"], "paired");

    let enroll = service
        .settle(
            "/v1/enroll",
            json!({"external_user_id": "dana", "hardware_id": "hw-sim-1", "palm_type": "right"}),
        )
        .await;
    assert_eq!(enroll["status"], "completed", "{enroll:#}");
    assert_eq!(enroll["result"]["vendor"], "mock");
    assert!(enroll["result"]["feature_id"].is_string(), "{enroll:#}");
    let genuine = service
        .settle(
            "/v1/verify",
            json!({"external_user_id": "dana", "hardware_id": "hw-sim-1"}),
        )
        .await;
    assert_eq!(genuine["status"], "completed", "{genuine:#}");
    assert_eq!(genuine["result"]["matched"], true, "{genuine:#}");
    let impostor = service
        .settle(
            "/v1/verify",
            json!({"external_user_id": "dana", "hardware_id": "hw-sim-1", "metadata": {"sim_impostor": true}}),
        )
        .await;
    assert_eq!(impostor["status"], "completed", "{impostor:#}");
    assert_eq!(impostor["result"]["matched"], false, "{impostor:#}");
    let unanswerable = service
        .settle("/v1/verify", json!({"external_user_id": "dana", "hardware_id": "hw-sim-1", "metadata": {"sim_identity": 5000}}))
        .await;
    assert_eq!(unanswerable["status"], "cancelled", "{unanswerable:#}");

    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the scanner did not stop after --max-challenges"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "palmlink scanner failed");
    let lines: Vec<Value> = rest
        .join()
        .expect("reader")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON {l:?}: {e}")))
        .collect();
    let reports: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "challenge")
        .map(|l| &l["challenge"])
        .collect();
    assert_eq!(reports.len(), 4, "{lines:#?}");
    assert_eq!(lines.last().map(|l| &l["event"]), Some(&json!("stopped")));
    let ids = [&enroll, &genuine, &impostor, &unanswerable].map(|c| c["challenge_id"].clone());
    for (report, id) in reports.iter().zip(&ids) {
        assert_eq!(&report["challenge_id"], id);
        assert!(report["latency_ms"].as_f64().is_some_and(|l| l >= 0.0));
    }
    // dana is identity 5 by the mapping file; the impostor is half the population away.
    assert_eq!(reports[0]["identity"], 5);
    assert_eq!(reports[0]["captures"][0]["capture_index"], Value::Null);
    assert_eq!(reports[1]["identity"], 5);
    assert_eq!(reports[1]["matched"], true);
    assert_eq!(reports[2]["identity"], 505);
    assert_eq!(reports[2]["impostor"], true);
    assert_eq!(reports[2]["matched"], false);
    assert_eq!(reports[3]["outcome"], "cancelled");
    assert!(reports[3]["error"]
        .as_str()
        .is_some_and(|e| e.contains("outside the synthetic population")));
    service.server.stop().await.expect("stop");
}

fn challenge(kind: &str, palm: &str, user: Option<&str>, metadata: Value) -> Value {
    let mut c =
        json!({"challenge_id": "c-1", "type": kind, "palm_type": palm, "metadata": metadata});
    if let Some(user) = user {
        c["external_user_id"] = json!(user);
    }
    c
}

#[test]
fn simulator_chooses_identities_and_palms() {
    let mut identities = std::collections::HashMap::new();
    identities.insert("erin".to_owned(), 42);
    let mut sim = Simulator::new(SimOptions {
        population: 100,
        identities,
        ..SimOptions::default()
    })
    .expect("simulator");
    // The mapping file, then a stable hash for unmapped users.
    let p = sim
        .present(&challenge("enroll", "both", Some("erin"), Value::Null))
        .expect("present");
    assert_eq!(p.identity, 42);
    assert_eq!(p.captures.len(), 2);
    assert_eq!(p.captures[0]["palm_type"], "left");
    assert_eq!(p.captures[1]["palm_type"], "right");
    assert_eq!(
        p.captures[0]["template"]["blocks"].as_array().map(Vec::len),
        Some(10)
    );
    let hashed = sim
        .present(&challenge("enroll", "right", Some("frank"), Value::Null))
        .expect("present")
        .identity;
    assert_eq!(
        sim.present(&challenge("verify", "right", Some("frank"), Value::Null))
            .expect("present")
            .identity,
        hashed
    );
    assert_eq!(sim.identity_of_user("frank"), hashed);
    // Metadata wins over the user; impostors are half the population away, never on enrollments.
    let p = sim
        .present(&challenge(
            "verify",
            "right",
            Some("erin"),
            json!({"sim_identity": 7}),
        ))
        .expect("present");
    assert_eq!((p.identity, p.impostor), (7, false));
    let p = sim
        .present(&challenge(
            "verify",
            "right",
            Some("erin"),
            json!({"sim_impostor": true}),
        ))
        .expect("present");
    assert_eq!((p.identity, p.impostor), (92, true));
    let p = sim
        .present(&challenge(
            "enroll",
            "right",
            Some("erin"),
            json!({"sim_impostor": true}),
        ))
        .expect("present");
    assert_eq!((p.identity, p.impostor), (42, false));
    let p = sim
        .present(&challenge(
            "identify",
            "any",
            None,
            json!({"sim_user": "erin", "sim_palm": "left"}),
        ))
        .expect("present");
    assert_eq!(p.identity, 42);
    assert_eq!(p.captures[0]["palm_type"], "left");
    // Probes advance through the palm's captures; quality is at least the minimum.
    let a = sim
        .present(&challenge(
            "verify",
            "right",
            None,
            json!({"sim_identity": 3}),
        ))
        .expect("present");
    let b = sim
        .present(&challenge(
            "verify",
            "right",
            None,
            json!({"sim_identity": 3}),
        ))
        .expect("present");
    assert!(b.info[0].capture_index > a.info[0].capture_index);
    assert!(a.info[0].quality >= 0.8 && b.info[0].quality >= 0.8);
}

#[test]
fn simulator_refuses_bad_instructions_without_panicking() {
    let mut sim = Simulator::new(SimOptions {
        population: 100,
        impostor: true,
        ..SimOptions::default()
    })
    .expect("simulator");
    for metadata in [
        json!({"sim_identity": 100}),
        json!({"sim_identity": -1}),
        json!({"sim_identity": "seven"}),
        json!({"sim_user": 3}),
        json!({"sim_palm": "middle"}),
    ] {
        assert!(
            sim.present(&challenge("identify", "any", None, metadata.clone()))
                .is_err(),
            "{metadata}"
        );
    }
    assert!(sim
        .present(&challenge("verify", "sideways", Some("x"), Value::Null))
        .is_err());
    // `--impostor` applies unless the challenge says otherwise.
    let p = sim
        .present(&challenge(
            "verify",
            "left",
            None,
            json!({"sim_identity": 1}),
        ))
        .expect("present");
    assert_eq!((p.identity, p.impostor), (51, true));
    let p = sim
        .present(&challenge(
            "verify",
            "left",
            None,
            json!({"sim_identity": 1, "sim_impostor": false}),
        ))
        .expect("present");
    assert_eq!((p.identity, p.impostor), (1, false));
    assert!(Simulator::new(SimOptions {
        population: 1,
        ..SimOptions::default()
    })
    .is_err());
}

#[test]
fn receiver_checks_standard_webhooks_signatures() {
    use palmlink_simulator::demo::verify_signature;
    // The example of the Standard Webhooks specification.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(verify_signature(secret, id, ts, body, good));
    // One valid entry among several (secret rotation) is enough.
    assert!(verify_signature(
        secret,
        id,
        ts,
        body,
        &format!("v1,AAAA {good}")
    ));
    assert!(!verify_signature(
        secret,
        id,
        ts,
        br#"{"test": 2432232315}"#,
        good
    ));
    assert!(!verify_signature(secret, id, "1614265331", body, good));
    assert!(!verify_signature(secret, "msg_other", ts, body, good));
    assert!(!verify_signature(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        id,
        ts,
        body,
        good
    ));
    assert!(!verify_signature("whsec_!!!", id, ts, body, good));
    assert!(!verify_signature(
        secret,
        id,
        ts,
        body,
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
    assert!(!verify_signature(secret, id, ts, body, ""));
}
