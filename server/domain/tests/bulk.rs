//! The import against writes that land between its batches.

mod support;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use palmlink_domain::gallery_file::{end_line, record_line, Header};
use palmlink_domain::{Caller, DomainError, ImportOptions, ImportSummary, Progress, Unit};
use palmlink_engine::{Layout, Template};
use palmlink_fixtures::PalmSide;
use palmlink_store::PalmType;
use support::{world, World};

/// Erases one user once the import has written its first batch: by then the import has
/// prepared its second batch, which adds a palm to that user.
struct EraseAfterFirstBatch {
    world: Arc<World>,
    caller: Caller,
    user: &'static str,
    importing: AtomicBool,
    batches: AtomicU64,
}

impl Progress for EraseAfterFirstBatch {
    fn begin(&self, phase: &'static str, _: u64, _: Unit) {
        self.importing.store(phase == "importing", Ordering::SeqCst);
    }

    fn advance(&self, _: u64) {
        if !self.importing.load(Ordering::SeqCst) {
            return;
        }
        if self.batches.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(self.world.domain.users.erase(&self.caller, self.user))
                    .expect("the user of the first batch is erased");
            });
        }
    }

    fn end(&self) {}
}

/// Writes a gallery file of the header and `lines` (records and end lines as given).
fn write_file(w: &World, path: &std::path::Path, lines: &[String]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let header = Header::new(w.clock.0.load(Ordering::SeqCst));
    writeln!(out, "{}", serde_json::to_string(&header).unwrap()).unwrap();
    for line in lines {
        writeln!(out, "{line}").unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
}

fn template(w: &World, identity: u64, palm: PalmSide) -> Template {
    Template::from_blocks(
        Layout::DEFAULT,
        &w.population.enrollment(identity, palm).to_blocks(),
    )
    .unwrap()
}

/// Imports `file` into the caller's tenant without reporting progress.
async fn import_quietly(
    w: &World,
    caller: &Caller,
    file: &std::path::Path,
    options: &ImportOptions,
) -> ImportSummary {
    let silent = Arc::new(palmlink_domain::Silent);
    w.domain
        .bulk
        .import(caller.tenant_id, file, options, silent)
        .await
        .unwrap()
}

/// Palm types `external` holds, sorted.
async fn palms_of(w: &World, caller: &Caller, external: &str) -> Option<Vec<PalmType>> {
    match w.domain.users.get(caller, external).await {
        Ok(user) => {
            let mut types: Vec<PalmType> = user.palms.iter().map(|p| p.palm_type).collect();
            types.sort_by_key(|t| format!("{t:?}"));
            Some(types)
        }
        Err(DomainError::NotFound(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_erased_between_two_batches_is_created_anew_by_the_second() {
    let w = Arc::new(world().await);
    let caller = w.caller().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gallery.jsonl");
    // Batches of two: p1 and p2; then p1's second palm and p3; then p4 and p2's second.
    let records = [
        ("p1", 1, PalmSide::Right),
        ("p2", 2, PalmSide::Right),
        ("p1", 1, PalmSide::Left),
        ("p3", 3, PalmSide::Right),
        ("p4", 4, PalmSide::Right),
        ("p2", 2, PalmSide::Left),
    ];
    let mut lines: Vec<String> = records
        .iter()
        .map(|&(external, identity, palm)| {
            let palm_type = match palm {
                PalmSide::Left => PalmType::Left,
                PalmSide::Right => PalmType::Right,
            };
            let palm = template(&w, identity, palm);
            record_line(external, palm_type, 1_700_000_000_000_000, "mock", &palm)
        })
        .collect();
    lines.push(end_line(records.len() as u64));
    write_file(&w, &file, &lines);

    let progress = Arc::new(EraseAfterFirstBatch {
        world: w.clone(),
        caller: caller.clone(),
        user: "p1",
        importing: AtomicBool::new(false),
        batches: AtomicU64::new(0),
    });
    let options = ImportOptions {
        skip_invalid: false,
        batch_size: 2,
    };
    let summary = w
        .domain
        .bulk
        .import(caller.tenant_id, &file, &options, progress.clone())
        .await
        .unwrap();
    assert_eq!(progress.batches.load(Ordering::SeqCst), 3);
    assert!(summary.refused.is_none(), "{summary:?}");
    // The second batch met the erasure of its user when written: it was written again
    // from fresh reads, which found no p1 and created one.
    assert_eq!((summary.imported, summary.skipped_existing), (6, 0));
    assert_eq!(
        palms_of(&w, &caller, "p1").await,
        Some(vec![PalmType::Left])
    );
    let both = Some(vec![PalmType::Left, PalmType::Right]);
    assert_eq!(palms_of(&w, &caller, "p2").await, both);
    assert_eq!(
        palms_of(&w, &caller, "p3").await,
        Some(vec![PalmType::Right])
    );
    assert_eq!(
        palms_of(&w, &caller, "p4").await,
        Some(vec![PalmType::Right])
    );

    // The same file again adds only what the erasure took: p1's right palm.
    let again = import_quietly(&w, &caller, &file, &options).await;
    assert_eq!((again.imported, again.skipped_existing), (1, 5));
    assert_eq!(palms_of(&w, &caller, "p1").await, both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_goes_on_after_its_end_line_is_refused_naming_both_lines() {
    let w = world().await;
    let caller = w.caller().await;
    let dir = tempfile::tempdir().unwrap();
    let palm = template(&w, 1, PalmSide::Right);
    let record = |i: usize| record_line(&format!("u{i}"), PalmType::Right, 0, "mock", &palm);
    let options = ImportOptions {
        skip_invalid: true,
        batch_size: 100,
    };
    // The check parses 2,048 lines at a time: the end line and the record after it in one
    // chunk, then in two (line 2,049 is the last of the first chunk).
    for records_before_end in [3, 2048] {
        let mut lines: Vec<String> = (0..records_before_end).map(record).collect();
        lines.push(end_line(records_before_end as u64));
        lines.push(record(records_before_end));
        let file = dir
            .path()
            .join(format!("after-end-{records_before_end}.jsonl"));
        write_file(&w, &file, &lines);
        let summary = import_quietly(&w, &caller, &file, &options).await;
        let end = records_before_end + 2;
        assert_eq!(
            summary.refused.as_deref(),
            Some(
                format!(
                    "line {}: the file goes on after its end line (line {end})",
                    end + 1
                )
                .as_str()
            ),
            "{summary:?}"
        );
        assert_eq!(summary.imported, 0);
        assert!(palms_of(&w, &caller, "u0").await.is_none());
    }
}
