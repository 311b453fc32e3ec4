//! `palmlink gallery import` against the engine's own durable batch insert of the same
//! templates, in one run.
//!
//! ```text
//! cargo run --release -p palmlink-benches --bin bulk_import -- [TEMPLATES] [BATCH]
//! ```
//!
//! 1. A gallery file of `TEMPLATES` synthetic palms (default 100,000; two per person) is
//!    written to a fresh directory (not timed).
//! 2. Engine: a fresh gallery takes the same templates through `Gallery::insert_batch`,
//!    `BATCH` per call (default 1,000), each call durable (flushed and committed) when it
//!    returns. Only the inserts are timed.
//! 3. Import: a fresh deployment (SQLite in a fresh directory; `PALMLINK_LOAD_DATABASE_URL`
//!    for PostgreSQL, on a schema of its own) imports the file into a new tenant with
//!    `BATCH` records per transaction, as `palmlink gallery import` does: the whole file
//!    checked first, then each batch's users, sealed templates, log entries and audit entry
//!    committed together. Timed from start to end, and per phase.
//!
//! Prints templates/s of each and the ratio engine / import.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use palmlink_benches::service::{arg, palm, BenchService};
use palmlink_domain::gallery_file::{end_line, record_line, Header};
use palmlink_domain::{ImportOptions, OperatorActor, Progress, Unit};
use palmlink_engine::{Gallery, Layout, PalmSide, RecordIds, Template};
use palmlink_store::PalmType;

/// The allocator of the `palmlink` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The template of record `i`.
fn template(i: usize) -> Template {
    Template::from_blocks(Layout::DEFAULT, &palm(1 + i as u64)).expect("template")
}

/// Seconds spent in each phase of the import.
#[derive(Default)]
struct Phases {
    started: Mutex<Option<Instant>>,
    done: Mutex<Vec<(&'static str, f64)>>,
    current: Mutex<&'static str>,
}

impl Progress for Phases {
    fn begin(&self, phase: &'static str, _: u64, _: Unit) {
        *self.started.lock().unwrap() = Some(Instant::now());
        *self.current.lock().unwrap() = phase;
    }
    fn advance(&self, _: u64) {}
    fn end(&self) {
        if let Some(t) = self.started.lock().unwrap().take() {
            let phase = *self.current.lock().unwrap();
            self.done
                .lock()
                .unwrap()
                .push((phase, t.elapsed().as_secs_f64()));
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = arg(1, 100_000);
    let batch = arg(2, 1000);
    let dir = tempfile::tempdir()?;

    let file = dir.path().join("gallery.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    writeln!(out, "{}", serde_json::to_string(&Header::new(0))?)?;
    for i in 0..n {
        let palm_type = if i % 2 == 0 {
            PalmType::Right
        } else {
            PalmType::Left
        };
        let line = record_line(
            &format!("person-{}", i / 2),
            palm_type,
            1_700_000_000_000_000,
            "bench",
            &template(i),
        );
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{}", end_line(n as u64))?;
    out.into_inner()?.sync_all()?;
    let size = std::fs::metadata(&file)?.len();
    println!(
        "bulk_import: {n} templates, batches of {batch}, file {:.1} MB",
        size as f64 / 1e6
    );

    // The engine's plain durable batch insert of the same templates.
    let gallery = Gallery::create(&dir.path().join("engine"), Layout::DEFAULT)?;
    let mut engine_secs = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let templates: Vec<Template> = (start..end).map(template).collect();
        let items: Vec<(RecordIds, &Template)> = templates
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let i = start + k;
                let ids = RecordIds {
                    feature_id: i as u128 + 1,
                    user_key: (i / 2) as u128 + 1,
                    palm: if i % 2 == 0 {
                        PalmSide::Right
                    } else {
                        PalmSide::Left
                    },
                };
                (ids, t)
            })
            .collect();
        let t0 = Instant::now();
        gallery.insert_batch(&items)?;
        engine_secs += t0.elapsed().as_secs_f64();
        start = end;
    }
    assert_eq!(gallery.live_count(), n);
    drop(gallery);
    let engine_rate = n as f64 / engine_secs;
    println!("engine insert_batch: {engine_secs:.2} s, {engine_rate:.0} templates/s");

    // The import, on a deployment of its own.
    let data = tempfile::tempdir()?;
    let mut config = palmlink_api::Config::new(data.path());
    let schema = match std::env::var("PALMLINK_LOAD_DATABASE_URL").ok() {
        Some(url) => {
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let sep = if url.contains('?') { '&' } else { '?' };
            config.database_url = Some(format!("{url}{sep}schema={name}"));
            Some(name)
        }
        None => None,
    };
    let backend = if schema.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let (domain, _stopping) = palmlink_api::open_domain(&config).await?;
    let tenant = domain
        .operators
        .create_tenant(OperatorActor::CommandLine, "bench")
        .await?;
    let phases = Arc::new(Phases::default());
    let options = ImportOptions {
        skip_invalid: false,
        batch_size: batch,
    };
    let t0 = Instant::now();
    let summary = domain
        .bulk
        .import(tenant.id, &file, &options, phases.clone())
        .await?;
    let import_secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.imported == n as u64 && summary.refused.is_none(),
        "the import did not take every record: {summary:?}"
    );
    let import_rate = n as f64 / import_secs;
    let split: Vec<String> = phases
        .done
        .lock()
        .unwrap()
        .iter()
        .map(|(p, s)| format!("{p} {s:.2} s"))
        .collect();
    println!(
        "gallery import ({backend}): {import_secs:.2} s, {import_rate:.0} templates/s ({})",
        split.join(", ")
    );
    println!(
        "ratio engine / import: {:.2} (target: at most 2)",
        engine_rate / import_rate
    );
    drop(domain);
    BenchService::drop_schema(&config, schema.as_deref()).await?;
    Ok(())
}
