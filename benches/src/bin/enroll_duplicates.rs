//! What the duplicate-identity check costs an enrollment: enrollment throughput through HTTP
//! with `duplicate_check` `off` and `flag`, at a given gallery size, in one run.
//!
//! ```text
//! cargo run --release -p palmlink-benches --bin enroll_duplicates -- [GALLERY] [PER_PHASE] [CLIENTS]
//! ```
//!
//! A node in-process (SQLite in a fresh directory; `PALMLINK_LOAD_DATABASE_URL` for
//! PostgreSQL) first holds `GALLERY` distinct users (default 10,000), brought in as
//! `palmlink gallery import` does (timed apart), then the node restarted without its
//! galleries, which it rebuilds from the database before it answers ready (timed: the
//! rebuild's figure). Then, from `CLIENTS` concurrent scanners (default 32), after a warm-up
//! of up to 500 enrollments under each setting (not reported), four phases of `PER_PHASE`
//! enrollments each (default 1,000), in the order off, flag, flag, off, so that the gallery's
//! growth during the run weighs on both settings alike. Under `flag` every enrollment
//! searches the tenant's gallery 1:N for other users' matching templates (the passing scan:
//! every template that passes the decision) before it is stored. Every enrollment of a
//! distinct palm must report no duplicate, and a last enrollment of an enrolled palm under a
//! new name must report one: the check ran.
//!
//! The node builds no graph index at open (`index_policy.at_open` off): the duplicate check
//! runs the passing scan, which needs none, and a graph build in the background (about 20
//! minutes of both cores at 1M) would weigh on the phases unevenly.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use palmlink_benches::service::{
    arg, enroll_one, enroll_users, palm, percentile, start_until_ready, Api, BenchService,
};
use palmlink_domain::gallery_file::{end_line, record_line, Header};
use palmlink_domain::{ImportOptions, Silent};
use palmlink_engine::{Layout, Template};
use palmlink_store::PalmType;
use serde_json::{json, Value};

/// The allocator of the `palmlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What one phase of enrollments measured.
struct Phase {
    check: &'static str,
    count: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// That an enrollment of a distinct palm reported no duplicate.
fn no_duplicate(user: usize, done: &Value) -> anyhow::Result<()> {
    let flagged = done["data"]["result"]["duplicates"]
        .as_array()
        .map_or(0, Vec::len);
    anyhow::ensure!(flagged == 0, "user-{user} flagged as a duplicate: {done}");
    Ok(())
}

/// How long the preload took.
struct Preloaded {
    /// The import into the database.
    import_seconds: f64,
    /// The restart, its galleries rebuilt from the database, until `/readyz` answered 200.
    rebuild_seconds: f64,
}

/// Imports users `0..count` (seeds `1..=count`, right palms) into the service's one tenant
/// through the import of `palmlink gallery import`, then removes the node's galleries and
/// restarts it, so that they are rebuilt from the database before it answers ready.
async fn preload(service: BenchService, count: usize) -> anyhow::Result<(BenchService, Preloaded)> {
    let file = service.dir.path().join("preload.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    writeln!(out, "{}", serde_json::to_string(&Header::new(0))?)?;
    for user in 0..count {
        let template = Template::from_blocks(Layout::DEFAULT, &palm(user as u64 + 1))?;
        let line = record_line(
            &format!("user-{user}"),
            PalmType::Right,
            1_700_000_000_000_000,
            "bench",
            &template,
        );
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{}", end_line(count as u64))?;
    out.into_inner()?.sync_all()?;

    let started = Instant::now();
    let (domain, _stopping) = palmlink_api::open_domain(&service.config).await?;
    let tenant = domain.store.list_tenant_ids().await?[0];
    let options = ImportOptions {
        skip_invalid: false,
        batch_size: 1000,
    };
    let summary = domain
        .bulk
        .import(tenant, &file, &options, Arc::new(Silent))
        .await?;
    anyhow::ensure!(
        summary.imported == count as u64,
        "the import did not take every record: {summary:?}"
    );
    let seconds = started.elapsed().as_secs_f64();
    drop(domain);
    std::fs::remove_file(&file)?;

    // The node restarted on its address: ready once its galleries hold the import.
    let BenchService {
        server,
        base,
        token,
        dir,
        config,
        schema,
    } = service;
    let mut restart = config.clone();
    restart.listen = server.addr();
    server.stop().await?;
    // No galleries (the import writes the database only; any left are removed): the
    // restarted node rebuilds them from the database.
    let galleries = config.data_dir.join("galleries");
    if galleries.exists() {
        std::fs::remove_dir_all(galleries)?;
    }
    let (server, rebuild_seconds) = start_until_ready(&reqwest::Client::new(), &restart).await?;
    let service = BenchService {
        server,
        base,
        token,
        dir,
        config,
        schema,
    };
    Ok((
        service,
        Preloaded {
            import_seconds: seconds,
            rebuild_seconds,
        },
    ))
}

/// Sets the tenant's `duplicate_check`, leaving the other matching settings as they are.
async fn set_duplicate_check(api: &Api, check: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/settings/matching", api.base);
    let current: Value = api
        .http
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut settings = current["data"].clone();
    settings["duplicate_check"] = json!(check);
    api.http
        .put(&url)
        .bearer_auth(&api.token)
        .json(&settings)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gallery = arg(1, 10_000);
    let per_phase = arg(2, 1_000).max(1);
    let clients = arg(3, 32).max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let service = BenchService::start_for_enrollments(&http).await?;
    let on_postgres = service.config.database_url.is_some();
    let (service, preloaded) = preload(service, gallery).await?;
    // Connections of its own to the restarted node.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let api = Arc::new(Api {
        http: http.clone(),
        base: service.base.clone(),
        token: service.token.clone(),
    });
    let scanners = api.pair_scanners(clients).await?;

    // A warm-up, not reported: the restarted node derives its quantised copy in the
    // background and its caches are cold; the first phase would pay for both.
    let mut next = gallery;
    let warm_up = per_phase.min(500);
    for check in ["flag", "off"] {
        set_duplicate_check(&api, check).await?;
        enroll_users(&api, &scanners, next..next + warm_up, no_duplicate).await?;
        next += warm_up;
    }

    let mut phases = Vec::new();
    for check in ["off", "flag", "flag", "off"] {
        set_duplicate_check(&api, check).await?;
        let (seconds, latencies) =
            enroll_users(&api, &scanners, next..next + per_phase, no_duplicate).await?;
        let count = latencies.len();
        next += per_phase;
        phases.push(Phase {
            check,
            count,
            seconds,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
        });
    }

    // The check ran: an enrolled palm under a new name is flagged.
    set_duplicate_check(&api, "flag").await?;
    let twin = enroll_one(&api, &scanners[0], "twin-of-user-0", 1).await?;
    let twins = twin["data"]["result"]["duplicates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        twins.iter().any(|d| d["external_user_id"] == "user-0"),
        "an enrolled palm under a new name was not flagged: {twin}"
    );

    println!("enrollment with the duplicate-identity check off and on (flag)");
    println!(
        "  store: {}; {clients} clients; gallery of {gallery} users imported first ({:.0}/s), growing to {next} during the phases",
        if on_postgres { "PostgreSQL" } else { "SQLite in a fresh temp dir" },
        gallery as f64 / preloaded.import_seconds
    );
    println!(
        "  the node restarted without galleries: rebuilt from the database and ready in {:.2} s ({:.0} templates/s, start-up included)",
        preloaded.rebuild_seconds,
        gallery as f64 / preloaded.rebuild_seconds
    );
    println!(
        "  cores: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!(
        "| phase | duplicate_check | enrollments | seconds | enrollments/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, p) in phases.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            i + 1,
            p.check,
            p.count,
            p.seconds,
            p.count as f64 / p.seconds,
            p.p50_ms,
            p.p99_ms
        );
    }
    let rate = |check: &str| {
        let (n, s) = phases
            .iter()
            .filter(|p| p.check == check)
            .fold((0, 0.0), |(n, s), p| (n + p.count, s + p.seconds));
        n as f64 / s
    };
    let (off, flag) = (rate("off"), rate("flag"));
    println!();
    println!(
        "  off {off:.0}/s, flag {flag:.0}/s: flag/off = {:.2}",
        flag / off
    );
    println!("  an enrolled palm under a new name was flagged as a duplicate of user-0");
    service.stop().await?;
    Ok(())
}
