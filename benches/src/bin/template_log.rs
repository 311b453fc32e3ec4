//! Templates in the database and galleries that follow its log: enrollment throughput through
//! HTTP, then how fast a node's galleries catch up with the log and are rebuilt from it.
//!
//! ```text
//! cargo run --release -p palmlink-benches --bin template_log -- [TEMPLATES] [CLIENTS]
//! ```
//!
//! 1. A node in-process (SQLite in a fresh directory; `PALMLINK_LOAD_DATABASE_URL` for
//!    PostgreSQL) enrolls `TEMPLATES` users (default 20,000) through HTTP from `CLIENTS`
//!    concurrent clients (default 32), each with its own paired scanner: `POST /v1/enroll`,
//!    then the scanner's capture, whose 200 means the sealed template, its log entry and the
//!    gallery row are durable. Half the users are enrolled, the node stopped and its
//!    galleries copied aside, the node restarted and the other half enrolled.
//! 2. Start-up cost: the node restarted with nothing to apply, timed until `/readyz` is 200.
//! 3. Catch-up: the galleries copied aside (half the log applied) put back, the node started:
//!    the other half is applied from the log (sealed templates read in batches, opened,
//!    inserted durably), timed until ready, less the start-up cost.
//! 4. Rebuild: the galleries deleted, the node started: the whole gallery is built afresh
//!    from the templates the database holds, timed until ready, less the start-up cost.
//!
//! Every phase ends with `palmlink gallery check`'s agreement: the gallery holds exactly the
//! database's templates.
//!
//! The node builds no graph index at open (`index_policy.at_open` off): from 50,000 rows a
//! build would start in the background at every restart and share the cores with the
//! catch-up and the rebuild being timed.

use std::path::Path;
use std::sync::Arc;

use palmlink_benches::service::{
    arg, enroll_users, percentile, start_until_ready, Api, BenchService,
};

/// The allocator of the `palmlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What an enrollment phase measured.
struct Enrolled {
    count: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Enrolls users `range` through the scanners.
async fn enroll(
    api: &Arc<Api>,
    scanners: &[(String, String)],
    range: std::ops::Range<usize>,
) -> anyhow::Result<Enrolled> {
    let (seconds, all) = enroll_users(api, scanners, range, |_, _| Ok(())).await?;
    Ok(Enrolled {
        count: all.len(),
        seconds,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    })
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Whether every gallery of the node holds exactly the database's templates.
async fn galleries_agree(config: &palmlink_api::Config) -> anyhow::Result<(bool, usize)> {
    let (domain, _stopping) = palmlink_api::open_domain(config).await?;
    let (mut agree, mut held) = (true, 0);
    for tenant in domain.store.list_tenant_ids().await? {
        let check = domain.galleries.check(tenant).await?;
        agree &= check.agrees();
        held += check.gallery_templates;
    }
    Ok((agree, held))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = arg(1, 20_000).max(2);
    let clients = arg(2, 32).max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let service = BenchService::start_for_enrollments(&http).await?;
    let on_postgres = service.config.database_url.is_some();
    let mut config = service.config.clone();
    config.listen = service.server.addr();
    let api = Arc::new(Api {
        http: http.clone(),
        base: service.base.clone(),
        token: service.token.clone(),
    });
    let scanners = api.pair_scanners(clients).await?;

    // 1. Enrollment through HTTP, in two halves; the galleries of the first half set aside.
    let half = total / 2;
    let first = enroll(&api, &scanners, 0..half).await?;
    let BenchService {
        server,
        dir,
        schema,
        ..
    } = service;
    server.stop().await?;
    let galleries = config.data_dir.join("galleries");
    let aside = dir.path().join("galleries-at-half");
    copy_tree(&galleries, &aside)?;
    let (server, _) = start_until_ready(&http, &config).await?;
    let second = enroll(&api, &scanners, half..total).await?;
    server.stop().await?;

    // 2. Start-up with nothing to apply.
    let (server, idle) = start_until_ready(&http, &config).await?;
    server.stop().await?;

    // 3. Catch-up of the second half from the log.
    std::fs::remove_dir_all(&galleries)?;
    copy_tree(&aside, &galleries)?;
    let (server, catch_up) = start_until_ready(&http, &config).await?;
    server.stop().await?;
    let (caught_up_agrees, held_after_catch_up) = galleries_agree(&config).await?;

    // 4. Rebuild of everything from the database.
    std::fs::remove_dir_all(&galleries)?;
    let (server, rebuild) = start_until_ready(&http, &config).await?;
    server.stop().await?;
    let (rebuilt_agrees, held_after_rebuild) = galleries_agree(&config).await?;

    let enrolled = first.count + second.count;
    println!("templates in the database, galleries following the log");
    println!(
        "  store: {}; {clients} clients; {enrolled} users enrolled through HTTP",
        if on_postgres {
            "PostgreSQL (a schema of its own)"
        } else {
            "SQLite in a fresh temp dir"
        }
    );
    println!(
        "  cores: {}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!("| phase | templates | seconds | templates/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (name, e) in [
        ("enroll, first half", &first),
        ("enroll, second half", &second),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            e.count,
            e.seconds,
            e.count as f64 / e.seconds,
            e.p50_ms,
            e.p99_ms
        );
    }
    let applied = total - half;
    println!("| start-up, nothing to apply | 0 | {idle:.3} | | | |");
    let net_catch_up = (catch_up - idle).max(1e-6);
    println!(
        "| catch-up from the log (start-up excluded) | {applied} | {net_catch_up:.3} | {:.0} | | |",
        applied as f64 / net_catch_up
    );
    let net_rebuild = (rebuild - idle).max(1e-6);
    println!(
        "| rebuild from the database (start-up excluded) | {total} | {net_rebuild:.3} | {:.0} | | |",
        total as f64 / net_rebuild
    );
    println!();
    println!(
        "  galleries agree with the database after the catch-up: {caught_up_agrees} ({held_after_catch_up} templates); after the rebuild: {rebuilt_agrees} ({held_after_rebuild} templates)"
    );
    anyhow::ensure!(
        caught_up_agrees && rebuilt_agrees,
        "a gallery disagrees with the database"
    );
    BenchService::drop_schema(&config, schema.as_deref()).await?;
    drop(dir);
    Ok(())
}
