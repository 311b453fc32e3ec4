//! Durable verify round trips on loopback: round trips per second and round-trip latency at
//! 16 and 64 concurrent clients, beside the plain `GET /healthz` rate at the same concurrency.
//!
//! ```text
//! cargo run --release -p palmlink-benches --bin verify_load -- [SECONDS] [MAX_PER_CLIENT]
//! ```
//!
//! One round trip is the integrator's `POST /v1/verify` for an enrolled user followed by the
//! scanner's `POST /v1/device/challenges/{id}/capture` with a genuine capture of that user's
//! palm; the 200 carries the decision, and the same transaction writes the durable
//! `verification.complete` outbox event. The service runs in-process on 127.0.0.1 with a
//! fresh data directory (SQLite) and rate limits raised so they never throttle the load.
//! Every client is a tokio task with its own paired scanner, looping for `SECONDS`
//! (default 10) or `MAX_PER_CLIENT` round trips (default 100000), whichever ends first; the
//! healthz loop at the same concurrency is the ceiling of the HTTP stack on this machine.
//!
//! Those clients never pause, so their latency is mostly the queue they make themselves
//! (mean latency = clients / throughput). A paced phase then offers a fixed rate from the
//! same clients, the way a fleet of scanners loads a service: client `i` of `n` sends every
//! `n / rate` seconds, staggered, and each latency runs from the time the request was due,
//! so a late start counts against the service (no coordinated omission).
//! `PALMLINK_LOAD_RATES` lists the offered rates (default 2000; `0` for none).
//!
//! With `PALMLINK_LOAD_DATABASE_URL=postgres://...` the store is that PostgreSQL database (a
//! fresh schema of it) and `PALMLINK_LOAD_NODES` nodes (default 2) run on it, each with its
//! own data directory and galleries; client `i` talks to node `i mod nodes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use palmlink_benches::service::{
    arg, capture_body, enroll_one, node_count, palm, percentile, recapture, Api, BenchService,
};
use serde_json::json;

/// The allocator of the `palmlink` binary (`server/src/main.rs`), so the service is measured
/// as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrency levels measured unless `PALMLINK_LOAD_CLIENTS` lists others (`1,4,16`).
const LEVELS: [usize; 2] = [16, 64];

/// The numbers listed in the environment variable `name` (`16,64`), if it is set.
fn listed(name: &str) -> Option<Vec<usize>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
}

/// The concurrency levels of this run.
fn levels() -> Vec<usize> {
    listed("PALMLINK_LOAD_CLIENTS")
        .filter(|v| !v.is_empty() && v.iter().all(|&n| n > 0))
        .unwrap_or_else(|| LEVELS.to_vec())
}

/// Offered rates (round trips/s, all clients together) of the paced phases unless
/// `PALMLINK_LOAD_RATES` lists others (`2000,3000`; `0` for none).
const RATES: [usize; 1] = [2000];

/// The offered rates of this run's paced phases.
fn rates() -> Vec<usize> {
    listed("PALMLINK_LOAD_RATES").map_or_else(
        || RATES.to_vec(),
        |v| v.into_iter().filter(|&n| n > 0).collect(),
    )
}

/// Users enrolled per scanner; each client cycles through its scanner's users.
const USERS_PER_DEVICE: usize = 2;
/// Warm-up before each timed phase, not counted.
const WARMUP: Duration = Duration::from_secs(1);

/// One enrolled user as a client presents them: request bodies prepared ahead of time.
struct Subject {
    verify: Bytes,
    capture: Bytes,
}

/// One concurrent client: its scanner and the users it verifies.
struct Client {
    /// The node this client talks to.
    addr: std::net::SocketAddr,
    /// `Bearer <scanner credential>`.
    scanner: String,
    subjects: Vec<Subject>,
}

/// What one task measured.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    errors: usize,
    rejected: usize,
}

/// Everything a task needs.
struct Shared {
    /// `Bearer <token>` of the integrator.
    authorization: String,
}

/// One keep-alive HTTP/1.1 connection of a client: a load generator that costs little next
/// to the service it measures (no pool, no redirects, bodies prepared ahead).
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Connection { sender })
    }

    /// Sends one request; returns the status and the whole body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// The part of a challenge response the load generator reads.
#[derive(serde::Deserialize)]
struct Created {
    data: CreatedData,
}

#[derive(serde::Deserialize)]
struct CreatedData {
    challenge_id: String,
}

/// The part of a capture response the load generator reads.
#[derive(serde::Deserialize)]
struct Captured {
    data: CapturedData,
}

#[derive(serde::Deserialize)]
struct CapturedData {
    result: Outcome,
}

#[derive(serde::Deserialize)]
struct Outcome {
    #[serde(default)]
    matched: Option<bool>,
    #[serde(default)]
    result: Option<String>,
}

/// One verify round trip; `Ok(matched)` on two successful responses.
async fn round_trip(
    s: &Shared,
    conn: &mut Connection,
    c: &Client,
    subject: &Subject,
) -> anyhow::Result<bool> {
    let (status, body) = conn
        .send(
            Method::POST,
            "/v1/verify",
            Some(&s.authorization),
            Some(subject.verify.clone()),
        )
        .await?;
    anyhow::ensure!(status.is_success(), "verify: {status}");
    let created: Created = serde_json::from_slice(&body)?;
    let path = format!(
        "/v1/device/challenges/{}/capture",
        created.data.challenge_id
    );
    let (status, body) = conn
        .send(
            Method::POST,
            &path,
            Some(&c.scanner),
            Some(subject.capture.clone()),
        )
        .await?;
    anyhow::ensure!(status.is_success(), "capture: {status}");
    let outcome = serde_json::from_slice::<Captured>(&body)?.data.result;
    Ok(outcome.matched == Some(true) || outcome.result.as_deref() == Some("match"))
}

/// When a paced client sends: every `interval` from `first`.
#[derive(Clone, Copy)]
struct Pace {
    first: Instant,
    interval: Duration,
}

impl Pace {
    /// When round trip `i` is due.
    fn due(self, i: usize) -> Option<Instant> {
        let i = u32::try_from(i).ok()?;
        self.first.checked_add(self.interval.checked_mul(i)?)
    }
}

/// Verify loop of one client until `until` or `max` round trips. Unpaced, each round trip
/// starts when the previous one ends; paced, when it is due (or when the previous one ends,
/// if that is later), and its latency runs from when it was due.
async fn verify_loop(
    s: Arc<Shared>,
    c: Arc<Client>,
    pace: Option<Pace>,
    until: Instant,
    max: usize,
) -> Tally {
    let mut t = Tally::default();
    let Ok(mut conn) = Connection::open(c.addr).await else {
        t.errors += 1;
        return t;
    };
    let mut i = 0usize;
    while i < max {
        let due = match pace {
            None => Some(Instant::now()),
            Some(pace) => pace.due(i),
        };
        let Some(due) = due.filter(|&due| due < until) else {
            break;
        };
        if pace.is_some() {
            tokio::time::sleep_until(due.into()).await;
        }
        let subject = &c.subjects[i % c.subjects.len()];
        match round_trip(&s, &mut conn, &c, subject).await {
            Ok(matched) => {
                t.latencies_ms.push(due.elapsed().as_secs_f64() * 1000.0);
                if !matched {
                    t.rejected += 1;
                }
            }
            Err(_) => {
                t.errors += 1;
                match Connection::open(c.addr).await {
                    Ok(fresh) => conn = fresh,
                    Err(_) => return t,
                }
            }
        }
        i += 1;
    }
    t
}

/// Healthz loop of one client until the deadline or `max` requests.
async fn healthz_loop(c: Arc<Client>, until: Instant, max: usize) -> Tally {
    let mut t = Tally::default();
    let Ok(mut conn) = Connection::open(c.addr).await else {
        t.errors += 1;
        return t;
    };
    let mut i = 0usize;
    while i < max && Instant::now() < until {
        let t0 = Instant::now();
        match conn.send(Method::GET, "/healthz", None, None).await {
            Ok((status, _)) if status.is_success() => {
                t.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            _ => t.errors += 1,
        }
        i += 1;
    }
    t
}

/// The merged result of one phase.
struct Phase {
    per_second: f64,
    p50: f64,
    p99: f64,
    max: f64,
    count: usize,
    errors: usize,
    rejected: usize,
}

/// What the clients of a phase send.
#[derive(Clone, Copy)]
enum Load {
    /// `GET /healthz` as fast as answered.
    Healthz,
    /// Verify round trips as fast as answered.
    Verify,
    /// Verify round trips offered at this many per second, all clients together.
    Paced(usize),
}

/// Runs `n` tasks of `load` for `duration`, after a warm-up.
async fn phase(
    s: &Arc<Shared>,
    clients: &[Arc<Client>],
    n: usize,
    load: Load,
    duration: Duration,
    max: usize,
) -> anyhow::Result<Phase> {
    let mut tallies = Vec::with_capacity(n);
    for (timed, span) in [(false, WARMUP), (true, duration)] {
        let start = Instant::now();
        let until = start + span;
        let mut handles = Vec::with_capacity(n);
        for (i, c) in clients.iter().take(n).enumerate() {
            let s = Arc::clone(s);
            let c = Arc::clone(c);
            handles.push(match load {
                Load::Healthz => tokio::spawn(healthz_loop(c, until, max)),
                Load::Verify => tokio::spawn(verify_loop(s, c, None, until, max)),
                Load::Paced(rate) => {
                    // Client i sends every n / rate s, starting i / rate s in.
                    let pace = Pace {
                        first: start + Duration::from_secs_f64(i as f64 / rate as f64),
                        interval: Duration::from_secs_f64(n as f64 / rate as f64),
                    };
                    tokio::spawn(verify_loop(s, c, Some(pace), until, max))
                }
            });
        }
        let mut done = Vec::with_capacity(n);
        for h in handles {
            done.push(h.await?);
        }
        // Until the last answer: a paced phase that fell behind runs past its span.
        let elapsed = start.elapsed();
        if timed {
            tallies = done;
            let mut lat: Vec<f64> = tallies
                .iter()
                .flat_map(|t| t.latencies_ms.iter().copied())
                .collect();
            lat.sort_by(f64::total_cmp);
            anyhow::ensure!(!lat.is_empty(), "no successful requests");
            return Ok(Phase {
                per_second: lat.len() as f64 / elapsed.as_secs_f64(),
                p50: percentile(&lat, 0.50),
                p99: percentile(&lat, 0.99),
                max: percentile(&lat, 1.0),
                count: lat.len(),
                errors: tallies.iter().map(|t| t.errors).sum(),
                rejected: tallies.iter().map(|t| t.rejected).sum(),
            });
        }
    }
    anyhow::bail!("no timed phase ran ({} tallies)", tallies.len())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unavailable".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let duration = Duration::from_secs(arg(1, 10).max(1) as u64);
    let max = arg(2, 100_000);
    let load_start = loadavg();
    let levels = levels();
    let devices = levels.iter().copied().max().unwrap_or(1);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let database_url = std::env::var("PALMLINK_LOAD_DATABASE_URL").ok();
    let node_count = node_count(database_url.as_deref());
    let service = BenchService::start(&http, |c| c.database_url = database_url.clone()).await?;
    let (base, token) = (service.base.clone(), service.token.clone());
    // More nodes on the same database, sharing the first one's master key file.
    let mut nodes = vec![service.server.addr()];
    let mut extra = Vec::new();
    for _ in 1..node_count {
        let node = BenchService::start_node(&service, |_| {}).await?;
        nodes.push(node.server.addr());
        extra.push(node);
    }
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        token: token.clone(),
    };

    // Setup, untimed: one paired scanner per client, users enrolled through the API.
    let setup = Instant::now();
    let mut clients = Vec::with_capacity(devices);
    for d in 0..devices {
        let hardware_id = format!("hw-verify-{d}");
        let scanner = api.pair(&hardware_id).await?;
        let mut subjects = Vec::with_capacity(USERS_PER_DEVICE);
        for u in 0..USERS_PER_DEVICE {
            let seed = (d * USERS_PER_DEVICE + u) as u64 + 1;
            let user = format!("user-{d}-{u}");
            let enrolled = palm(seed);
            let paired = (hardware_id.clone(), scanner.clone());
            enroll_one(&api, &paired, &user, seed).await?;
            let verify =
                json!({"external_user_id": user, "hardware_id": hardware_id, "palm_type": "right"});
            subjects.push(Subject {
                verify: Bytes::from(serde_json::to_vec(&verify)?),
                capture: Bytes::from(serde_json::to_vec(&capture_body(&recapture(
                    &enrolled, seed,
                )))?),
            });
        }
        clients.push(Arc::new(Client {
            addr: nodes[d % nodes.len()],
            scanner: format!("Bearer {scanner}"),
            subjects,
        }));
    }
    let setup = setup.elapsed();

    let shared = Arc::new(Shared {
        authorization: format!("Bearer {token}"),
    });
    let mut rows = Vec::new();
    let mut paced = Vec::new();
    for &n in &levels {
        let health = phase(&shared, &clients, n, Load::Healthz, duration, max).await?;
        let verify = phase(&shared, &clients, n, Load::Verify, duration, max).await?;
        rows.push((n, verify, health));
        for &rate in &rates() {
            let p = phase(&shared, &clients, n, Load::Paced(rate), duration, max).await?;
            paced.push((n, rate, p));
        }
    }
    let load_end = loadavg();

    println!("durable verify round trip (POST /v1/verify + scanner capture), loopback");
    println!(
        "  setup: {devices} paired scanners, {} enrolled users in {:.1} s (untimed)",
        devices * USERS_PER_DEVICE,
        setup.as_secs_f64()
    );
    println!(
        "  {} s per phase after {} s warm-up, at most {max} per client; {}",
        duration.as_secs(),
        WARMUP.as_secs(),
        match &database_url {
            Some(_) => format!(
                "{node_count} nodes on one PostgreSQL database (a schema of its own), clients spread over them"
            ),
            None => "one node, store SQLite in a fresh temp dir".to_owned(),
        }
    );
    println!("  rate limits raised to 1000000/s (burst 1000000) for the bench, so none throttle");
    println!(
        "  cores: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("  load average at start: {load_start}; at end: {load_end}");
    println!();
    println!(
        "| clients | verify round trips/s | p50 ms | p99 ms | healthz/s | healthz p50 ms | healthz p99 ms | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (n, v, h) in &rows {
        println!(
            "| {n} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.3} |",
            v.per_second,
            v.p50,
            v.p99,
            h.per_second,
            h.p50,
            h.p99,
            v.per_second / h.per_second
        );
    }
    println!();
    for (n, v, h) in &rows {
        println!(
            "  {n} clients: {} round trips ({} errors, {} not matched); {} healthz ({} errors)",
            v.count, v.errors, v.rejected, h.count, h.errors
        );
    }
    let met = rows
        .iter()
        .all(|(_, v, _)| v.per_second >= 2000.0 && v.p99 < 25.0);
    println!(
        "  target, clients that never pause (>= 2000 round trips/s, p99 < 25 ms at every level): {}",
        if met { "met" } else { "not met" }
    );
    if !paced.is_empty() {
        println!();
        println!("paced: the same clients offering a fixed rate; latency from when each round trip was due");
        println!();
        println!("| clients | offered/s | answered/s | p50 ms | p99 ms | max ms | errors | not matched |");
        println!("|---|---|---|---|---|---|---|---|");
        for (n, rate, p) in &paced {
            println!(
                "| {n} | {rate} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
                p.per_second, p.p50, p.p99, p.max, p.errors, p.rejected
            );
        }
        let met = paced
            .iter()
            .filter(|(_, rate, _)| *rate >= 2000)
            .all(|(_, rate, p)| p.per_second >= 0.99 * *rate as f64 && p.p99 < 25.0);
        println!();
        println!(
            "  target, paced (every offered rate >= 2000/s answered, p99 < 25 ms at every level): {}",
            if met { "met" } else { "not met" }
        );
    }
    for node in extra {
        node.stop().await?;
    }
    service.stop().await
}
