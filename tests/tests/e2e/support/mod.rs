//! A node on a loopback port per test, an HTTP client, synthetic palm templates, and a
//! webhook receiver ([`receiver`]).

pub mod postgres;
pub mod receiver;

use std::sync::Arc;

use palmlink_api::{Config, RunningServer};
use palmlink_domain::{OperatorActor, Operators, SystemClock};
use palmlink_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Sends the in-process nodes' warnings and errors (the detail behind a 500, say) to the
/// output of the test that caused them, which is shown when it fails. `PALMLINK_LOG` sets
/// another filter.
fn log_warnings_to_the_test() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALMLINK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Only the first call installs it; later ones find it in place.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// A running server with its own data directory.
pub struct Harness {
    /// The data directory, removed when the harness is dropped.
    _dir: TempDir,
    pub config: Config,
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    /// The PostgreSQL schema of the node, when the tests run on PostgreSQL (dropped last).
    schema: Option<postgres::Schema>,
}

/// A tenant with one all-scopes client and a token.
pub struct Tenant {
    pub id: String,
    pub client_id: String,
    pub secret: String,
    pub token: String,
}

/// A paired scanner.
pub struct Scanner {
    pub device_id: String,
    pub hardware_id: String,
    pub secret: String,
}

/// A response: status, headers and body (JSON, or `Null` when empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Harness {
        log_warnings_to_the_test();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        let schema = postgres::Schema::new();
        config.database_url = schema.as_ref().map(postgres::Schema::url);
        adjust(&mut config);
        let server = palmlink_api::start(config.clone())
            .await
            .expect("server starts");
        let base = format!("http://{}", server.addr());
        let harness = Harness {
            _dir: dir,
            config,
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            schema,
        };
        harness.wait_ready().await;
        harness
    }

    /// A client of a node running elsewhere (a `palmlink serve` process) at `base`.
    pub fn external(base: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config::new(dir.path());
        Harness {
            _dir: dir,
            config,
            server: None,
            base: base.to_owned(),
            http: reqwest::Client::new(),
            schema: None,
        }
    }

    /// Waits until `/readyz` answers 200 (the galleries have caught up), at most 10 s.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            let ready = self.http.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the node did not become ready");
    }

    /// Runs `sql` (statements separated by `;`) on the node's database behind its back: to
    /// make rows look older than they are, say.
    pub async fn run_sql(&self, sql: &str) {
        match &self.schema {
            Some(schema) => schema.execute(sql).await,
            None => {
                let db = rusqlite::Connection::open(self.config.data_dir.join("palmlink.db"))
                    .expect("open database");
                db.busy_timeout(std::time::Duration::from_secs(10))
                    .expect("busy timeout");
                db.execute_batch(sql).expect("statements run");
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        palmlink_api::open_store(&self.config).await.expect("store")
    }

    /// The node's token signing key (PKCS#8), read as an operator holding the master key
    /// can: from the database, unwrapped.
    pub async fn signing_key_der(&self) -> Vec<u8> {
        let store = self.store().await;
        let master = palmlink_domain::unlock(
            &self.config.effective_master_key_file(),
            store.as_ref(),
            &SystemClock,
        )
        .await
        .expect("master key");
        let der = master
            .signing_key_pkcs8(store.as_ref(), &SystemClock, || {
                panic!("the node has no signing key")
            })
            .await
            .expect("signing key");
        der.to_vec()
    }

    /// The operator's actions on this node's storage.
    pub async fn operators(&self) -> Operators {
        Operators::new(self.store().await, Arc::new(SystemClock))
    }

    /// A new tenant and client (all scopes unless given) with a token.
    pub async fn tenant_with_scopes(&self, scopes: Option<&str>) -> Tenant {
        let operators = self.operators().await;
        let t = operators
            .create_tenant(OperatorActor::CommandLine, "test")
            .await
            .expect("tenant");
        let c = operators
            .create_client(OperatorActor::CommandLine, t.id, "app", scopes)
            .await
            .expect("client");
        let id = t.id.to_string();
        let client_id = c.client.id.to_string();
        let secret = c.secret;
        let token = self.token(&client_id, &secret).await;
        Tenant {
            id,
            client_id,
            secret,
            token,
        }
    }

    pub async fn tenant(&self) -> Tenant {
        self.tenant_with_scopes(None).await
    }

    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/v1/auth/token",
                None,
                Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.call(Method::GET, path, Some(bearer), None).await
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(bearer), Some(body))
            .await
    }

    /// Registers a device and returns (device_id, pairing_code).
    pub async fn register(&self, t: &Tenant) -> (String, String) {
        let r = self
            .post(
                "/v1/devices",
                &t.token,
                json!({"device_name": "Lobby", "location": "Main entrance"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["data"]["device_id"].as_str().expect("id").to_owned(),
            r.body["data"]["pairing_code"]
                .as_str()
                .expect("code")
                .to_owned(),
        )
    }

    /// Registers and pairs a scanner.
    pub async fn scanner(&self, t: &Tenant, hardware_id: &str) -> Scanner {
        let (device_id, code) = self.register(t).await;
        let r = self
            .call(
                Method::POST,
                "/v1/device/pair",
                None,
                Some(json!({"pairing_code": code, "hardware_id": hardware_id})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        Scanner {
            device_id,
            hardware_id: hardware_id.to_owned(),
            secret: r.body["data"]["device_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        }
    }

    /// Creates a challenge (`path` = /v1/enroll, ...) and returns its id.
    pub async fn challenge(&self, t: &Tenant, path: &str, body: Value) -> String {
        let r = self.post(path, &t.token, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"]["challenge_id"]
            .as_str()
            .expect("challenge id")
            .to_owned()
    }

    /// Submits captures for a challenge from a scanner.
    pub async fn capture(&self, s: &Scanner, challenge_id: &str, captures: Value) -> Reply {
        self.post(
            &format!("/v1/device/challenges/{challenge_id}/capture"),
            &s.secret,
            json!({"vendor": "mock", "captures": captures}),
        )
        .await
    }

    /// Enrolls one palm of a user end to end and returns the completed challenge.
    pub async fn enroll(
        &self,
        t: &Tenant,
        s: &Scanner,
        user: &str,
        palm: &str,
        blocks: &Blocks,
    ) -> Value {
        let id = self
            .challenge(
                t,
                "/v1/enroll",
                json!({"external_user_id": user, "hardware_id": s.hardware_id, "palm_type": palm}),
            )
            .await;
        let r = self.capture(s, &id, json!([capture(palm, blocks)])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"].clone()
    }
}

/// A template as blocks of floats.
pub type Blocks = Vec<Vec<f32>>;

/// A deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (x as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A person's palm: 10 blocks of 64 values.
pub fn palm(seed: u64) -> Blocks {
    let mut rng = Rng::new(seed);
    (0..10)
        .map(|_| (0..64).map(|_| rng.next()).collect())
        .collect()
}

/// Another capture of the same palm: `base` plus noise of the given amplitude.
pub fn recapture(base: &Blocks, seed: u64, amount: f32) -> Blocks {
    let mut rng = Rng::new(seed ^ 0xDEAD_BEEF);
    base.iter()
        .map(|b| b.iter().map(|v| v + amount * rng.next()).collect())
        .collect()
}

/// Plain cosine similarity of two blocks, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let mut dot = 0.0f64;
    let mut na = 0.0f64;
    let mut nb = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// The 10 per-block cosine similarities of two templates.
pub fn block_cosines(a: &Blocks, b: &Blocks) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect()
}

/// A capture entry in the `f32` format.
pub fn capture(palm_type: &str, blocks: &Blocks) -> Value {
    json!({"palm_type": palm_type, "template": {"format": "f32", "blocks": blocks}, "quality": 0.93, "liveness": 0.99})
}

/// A capture entry in the `f32le_base64` format.
pub fn capture_b64(palm_type: &str, values: &[f32]) -> Value {
    use base64::Engine as _;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    json!({"palm_type": palm_type, "template": {"format": "f32le_base64", "data": base64::engine::general_purpose::STANDARD.encode(bytes)}})
}

/// Asserts the scores equal the expected cosines.
pub fn assert_scores(actual: &Value, expected: &[f64]) {
    let actual: Vec<f64> = actual
        .as_array()
        .expect("scores array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() < 1e-4, "block {i}: server {a}, computed {e}");
    }
}

/// The 422 error list's fields.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
