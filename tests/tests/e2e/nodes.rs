//! Several `palmlink serve` processes on one PostgreSQL database, each with its own data
//! directory and galleries, sharing a master key file. Runs when
//! `PALMLINK_TEST_DATABASE_URL` names a database.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::postgres::Schema;
use crate::support::receiver::{verify, Received, Receiver};
use crate::support::{capture, palm, recapture, Harness, Tenant};
use palmlink_tests::{operator_with, ServerProcess, UNTHROTTLED};

/// Nodes on one schema: the binary, the shared database URL and master key file, and one
/// data directory per node.
struct Cluster {
    bin: PathBuf,
    url: String,
    key_file: String,
    _keys: TempDir,
    dirs: Vec<TempDir>,
    _schema: Schema,
}

impl Cluster {
    /// `None` (and a line saying so) without a test database.
    fn new(nodes: usize) -> Option<Cluster> {
        let Some(schema) = Schema::new() else {
            println!("skipped: PALMLINK_TEST_DATABASE_URL is not set");
            return None;
        };
        let keys = tempfile::tempdir().expect("temp dir");
        let key_file = keys.path().join("master.key").display().to_string();
        Some(Cluster {
            bin: palmlink_tests::palmlink_binary(),
            url: schema.url(),
            key_file,
            _keys: keys,
            dirs: (0..nodes)
                .map(|_| tempfile::tempdir().expect("temp dir"))
                .collect(),
            _schema: schema,
        })
    }

    fn env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("PALMLINK_DATABASE_URL", self.url.as_str()),
            ("PALMLINK_MASTER_KEY_FILE", self.key_file.as_str()),
            ("PALMLINK_WEBHOOK_RETRY_SCHEDULE", "200ms,500ms,1s,2s"),
            ("PALMLINK_WEBHOOK_TIMEOUT", "1s"),
        ];
        env.extend_from_slice(UNTHROTTLED);
        env
    }

    /// Starts node `i` and waits until it is ready.
    async fn start(&self, i: usize) -> (ServerProcess, Harness) {
        let node = ServerProcess::start(
            &self.bin,
            self.dirs[i].path(),
            &["--allow-http-webhooks"],
            &self.env(),
        );
        let client = Harness::external(&node.base);
        client.wait_ready().await;
        (node, client)
    }

    /// An operator command against the shared database (through node 0's directory).
    fn operator(&self, args: &[&str]) -> Value {
        operator_with(&self.bin, self.dirs[0].path(), args, &self.env())
    }

    /// A tenant and client made by the operator, with a token issued by `h`'s node.
    async fn tenant(&self, h: &Harness) -> Tenant {
        let tenant = self.operator(&["tenant", "create", "--name", "nodes"]);
        let id = tenant["tenant_id"].as_str().expect("tenant").to_owned();
        let client = self.operator(&["client", "create", "--tenant", &id, "--name", "app"]);
        let client_id = client["client_id"].as_str().expect("client").to_owned();
        let secret = client["client_secret"].as_str().expect("secret").to_owned();
        let token = h.token(&client_id, &secret).await;
        Tenant {
            id,
            client_id,
            secret,
            token,
        }
    }
}

/// Subscribes `rx` to every event; returns the signing secret.
async fn subscribe(h: &Harness, t: &Tenant, rx: &Receiver) -> String {
    let r = h
        .post(
            "/v1/webhooks",
            &t.token,
            json!({
                "name": "all",
                "events": ["device.paired", "enrollment.complete", "verification.complete",
                           "identification.complete"],
                "endpoint": rx.url,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["data"]["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned()
}

/// Event ids received, with how often each arrived.
fn arrivals(seen: &[Received]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for r in seen {
        *count
            .entry(r.json()["event_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    count
}

#[tokio::test]
async fn two_nodes_on_one_database_serve_one_tenant_together() {
    let Some(cluster) = Cluster::new(2) else {
        return;
    };
    let (_node_a, a) = cluster.start(0).await;
    let (_node_b, b) = cluster.start(1).await;
    // A token issued by node A is accepted by node B.
    let t = cluster.tenant(&a).await;
    let rx = Receiver::start(vec![]).await;
    let secret = subscribe(&b, &t, &rx).await;

    // Paired through A; its credential works on B too.
    let s = a.scanner(&t, "hw-nodes").await;
    let listed = b.get("/v1/device/challenges?wait_ms=0", &s.secret).await;
    assert_eq!(listed.status, 200, "{}", listed.body);

    // A scanner long-polling A is woken by a challenge created on B.
    let poll_url = a.url("/v1/device/challenges?wait_ms=20000");
    let poll = a.http.get(poll_url).bearer_auth(&s.secret).send();
    let polled = tokio::spawn(async move {
        let started = Instant::now();
        let body: Value = poll.await.expect("poll").json().await.expect("json");
        (started.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let person = palm(9_001);
    let enroll = b
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "ada", "hardware_id": "hw-nodes", "palm_type": "right"}),
        )
        .await;
    let (waited, body) = polled.await.expect("poll task");
    let offered: Vec<&str> = body["data"]
        .as_array()
        .expect("challenges")
        .iter()
        .filter_map(|c| c["challenge_id"].as_str())
        .collect();
    assert_eq!(offered, vec![enroll.as_str()], "{body}");
    assert!(
        waited < Duration::from_secs(10),
        "the long poll was not woken: it returned after {waited:?}"
    );

    // Captured on A; verified through B; identified through A and through B.
    let done = a
        .capture(&s, &enroll, json!([capture("right", &person)]))
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["data"]["status"], "completed", "{}", done.body);
    let probe = recapture(&person, 1, 0.3);
    let verify_b = b
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "ada", "hardware_id": "hw-nodes"}),
        )
        .await;
    let r = b
        .capture(&s, &verify_b, json!([capture("right", &probe)]))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["result"]["matched"], true, "{}", r.body);
    for node in [&a, &b] {
        let id = node
            .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-nodes"}))
            .await;
        let r = node
            .capture(&s, &id, json!([capture("right", &probe)]))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let result = &r.body["data"]["result"];
        assert_eq!(result["matched"], true, "{} on {}", r.body, node.base);
        assert_eq!(result["candidates"][0]["external_user_id"], "ada");
    }

    // Erased through A: B answers 404 within a second, and B's gallery forgets the palm.
    let erased = a
        .call(Method::DELETE, "/v1/users/ada", Some(&t.token), None)
        .await;
    assert_eq!(erased.status, 204, "{}", erased.body);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let r = b.get("/v1/users/ada", &t.token).await;
        if r.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "B still answers {}", r.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = b
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-nodes"}))
        .await;
    let r = b.capture(&s, &id, json!([capture("right", &probe)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["result"]["matched"], false, "{}", r.body);

    // Every event arrives once, signed: 1 pairing, 1 enrollment, 1 verification, 3
    // identifications.
    let seen = rx.wait_until(30, |seen| seen.len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = if rx.seen().len() > seen.len() {
        rx.seen()
    } else {
        seen
    };
    assert!(seen.iter().all(|r| verify(&secret, r)), "unsigned delivery");
    let count = arrivals(&seen);
    assert_eq!(count.len(), 6, "{count:?}");
    assert!(count.values().all(|&n| n == 1), "{count:?}");
    let mut types: Vec<String> = seen
        .iter()
        .map(|r| {
            r.json()["event_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "device.paired",
            "enrollment.complete",
            "identification.complete",
            "identification.complete",
            "identification.complete",
            "verification.complete"
        ]
    );
}

/// Every delivery of a subscription, with its attempts, read through `h`.
async fn deliveries(h: &Harness, t: &Tenant, webhook: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let path = format!(
            "/v1/webhooks/{webhook}/deliveries?limit=100&offset={}",
            out.len()
        );
        let page = h.get(&path, &t.token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let rows = page.body["data"].as_array().expect("data").clone();
        out.extend(rows);
        if out.len() as u64 >= page.body["total"].as_u64().expect("total") {
            return out;
        }
    }
}

#[tokio::test]
async fn a_node_killed_mid_burst_leaves_its_work_to_the_other() {
    let Some(cluster) = Cluster::new(2) else {
        return;
    };
    let (node_a, a) = cluster.start(0).await;
    let (_node_b, b) = cluster.start(1).await;
    let t = cluster.tenant(&a).await;
    // A slow receiver: deliveries are outstanding when A dies.
    let rx = Receiver::start(vec![]).await;
    rx.set_delay(Duration::from_millis(200));
    subscribe(&a, &t, &rx).await;
    let webhook = a.get("/v1/webhooks", &t.token).await.body["data"][0]["webhook_id"]
        .as_str()
        .expect("webhook")
        .to_owned();

    // The burst through A: pairings and enrollments, each acknowledged.
    let s = a.scanner(&t, "hw-burst").await;
    let mut enrolled: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    for i in 0..12 {
        let name = format!("p{i}");
        let person = palm(5_000 + i);
        let done = a.enroll(&t, &s, &name, "right", &person).await;
        assert_eq!(done["status"], "completed");
        enrolled.push((name, person));
    }
    let acknowledged = 1 + enrolled.len();
    let before_kill = arrivals(&rx.seen());
    node_a.kill();
    assert!(
        before_kill.len() < acknowledged,
        "the kill must come while deliveries are outstanding"
    );
    // While both nodes ran, each attempt was made by one of them only.
    assert!(before_kill.values().all(|&n| n == 1), "{before_kill:?}");

    // B delivers every acknowledged event (A's leases run out first).
    rx.set_delay(Duration::from_millis(0));
    let seen = rx
        .wait_until(90, |seen| arrivals(seen).len() >= acknowledged)
        .await;
    assert_eq!(arrivals(&seen).len(), acknowledged);

    // After the kill, B made every attempt that remained: the receiver saw each event as
    // often as the delivery log records attempts of it, plus at most the one attempt A had
    // in flight when it died (sent, never recorded, repeated once its lease ran out).
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = deliveries(&b, &t, &webhook).await;
        if log.iter().all(|d| d["status"] == "succeeded") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries still pending: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(log.len(), acknowledged, "one delivery per event");
    let count = arrivals(&rx.seen());
    for d in &log {
        let event = d["event_id"].as_str().expect("event id");
        let attempts = d["attempts"].as_u64().expect("attempts") as usize;
        let arrived = count.get(event).copied().unwrap_or(0);
        assert!(
            arrived == attempts || arrived == attempts + 1,
            "event {event}: {arrived} arrivals, {attempts} attempts recorded"
        );
    }

    // Every acknowledged enrollment verifies on B.
    let distinct: HashSet<&str> = enrolled.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(distinct.len(), enrolled.len());
    for (i, (name, person)) in enrolled.iter().enumerate() {
        let id = b
            .challenge(
                &t,
                "/v1/verify",
                json!({"external_user_id": name, "hardware_id": "hw-burst"}),
            )
            .await;
        let probe = recapture(person, i as u64, 0.3);
        let r = b.capture(&s, &id, json!([capture("right", &probe)])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["data"]["result"]["matched"], true, "{name}");
    }
}
