//! `palmlink gallery import`: a gallery file into a tenant, checked whole first, then
//! written in batches that each commit in one transaction.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use palmlink_store::{Actor, ImportBatch, Palm, PalmType, StoreError, User};
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::format::{self, Item, Record};
use super::{Bulk, Progress, Unit};
use crate::audit::{record, CLI_OPERATOR};
use crate::{DomainError, DomainResult, FieldError};

/// Invalid records kept in a summary (the rest are counted).
const MAX_LISTED: usize = 100;
/// Attempts of a batch that meets concurrent writes to the same users.
const ATTEMPTS: usize = 5;
/// Read buffer of the file.
const READ_BUFFER: usize = 1 << 20;

/// How an import behaves.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Import the valid records of a file that has invalid ones (listed in the summary)
    /// instead of refusing the whole file.
    pub skip_invalid: bool,
    /// Records per transaction (1-10,000).
    pub batch_size: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            skip_invalid: false,
            batch_size: 1000,
        }
    }
}

/// A record the import did not take, by its line in the file (the header is line 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvalidRecord {
    /// Its line.
    pub line: u64,
    /// Its number among the records (the first record is 1).
    pub record: u64,
    /// What is wrong, field by field.
    pub errors: Vec<FieldError>,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Records in the file.
    pub read: u64,
    /// Palms added.
    pub imported: u64,
    /// Records whose user already holds that palm (an earlier run, or an enrollment).
    pub skipped_existing: u64,
    /// Invalid records (all of them counted).
    pub invalid_count: u64,
    /// The first invalid records.
    pub invalid: Vec<InvalidRecord>,
    /// Why nothing was imported, when the file was refused.
    pub refused: Option<String>,
    /// The tenant's template log head after the import.
    pub log_head: u64,
}

/// A batch of records with its writes, prepared before they are written (`None` when it
/// has nothing to write).
struct Prepared {
    writes: Option<ImportBatch>,
    /// The batch's users with the palm types they hold once it is written.
    pending: Pending,
}

/// The users and palm types of a batch being written, by external id: the next batch
/// is prepared meanwhile and must see them as held even before they commit.
#[derive(Default)]
struct Pending {
    users: HashMap<String, (Uuid, Vec<PalmType>)>,
}

/// What the check of the whole file found.
struct Checked {
    records: u64,
    invalid: Vec<InvalidRecord>,
    invalid_lines: HashSet<u64>,
    refused: Option<String>,
}

fn unreadable(path: &Path, e: &std::io::Error) -> DomainError {
    DomainError::field("in", format!("reading {}: {e}", path.display()))
}

/// Reads the file's lines: `(line number, bytes)` in order to `each`, which may stop early.
fn lines(
    path: &Path,
    mut each: impl FnMut(u64, &[u8], u64) -> Result<bool, String>,
) -> Result<Result<(), String>, DomainError> {
    let file = File::open(path).map_err(|e| unreadable(path, &e))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut number = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| unreadable(path, &e))?;
        if n == 0 {
            return Ok(Ok(()));
        }
        number += 1;
        match each(number, &buf, n as u64) {
            Ok(true) => {}
            Ok(false) => return Ok(Ok(())),
            Err(problem) => return Ok(Err(problem)),
        }
    }
}

/// Lines parsed at once, in parallel, by the check.
const CHECK_CHUNK: usize = 2048;

/// The check's state as it goes through the file in order.
struct Checking {
    checked: Checked,
    seen: HashMap<(String, PalmType), u64>,
    end: Option<(u64, u64)>,
}

impl Checking {
    /// Parses `chunk` (numbered lines after the header) in parallel, then takes the
    /// results in order: the end line, duplicate keys, invalid records.
    fn take(&mut self, chunk: &mut Vec<(u64, Vec<u8>)>) -> Result<(), String> {
        let parsed: Vec<Result<Item, Vec<FieldError>>> = chunk
            .par_iter()
            .map(|(_, line)| format::item(line))
            .collect();
        for ((number, _), item) in chunk.drain(..).zip(parsed) {
            if let Some((end_line, _)) = self.end {
                return Err(format!(
                    "line {number}: the file goes on after its end line (line {end_line})"
                ));
            }
            let errors = match item {
                Ok(Item::End(announced)) => {
                    self.end = Some((number, announced));
                    continue;
                }
                Ok(Item::Record(r)) => {
                    self.checked.records += 1;
                    match self.seen.insert((r.external_user_id, r.palm_type), number) {
                        None => continue,
                        Some(first) => vec![FieldError::new(
                            "external_user_id",
                            format!(
                                "this user's {} palm is already on line {first}",
                                r.palm_type.as_str()
                            ),
                        )],
                    }
                }
                Err(errors) => {
                    self.checked.records += 1;
                    errors
                }
            };
            self.checked.invalid_lines.insert(number);
            if self.checked.invalid.len() < MAX_LISTED {
                self.checked.invalid.push(InvalidRecord {
                    line: number,
                    record: number - 1,
                    errors,
                });
            }
        }
        Ok(())
    }
}

/// Checks every line of the file: the header, each record, no key twice, the end line
/// and its count. Records are parsed in parallel, a chunk of lines at a time.
fn check_file(path: &Path, progress: &dyn Progress) -> DomainResult<Checked> {
    let size = std::fs::metadata(path)
        .map_err(|e| unreadable(path, &e))?
        .len();
    progress.begin("checking", size, Unit::Bytes);
    let mut state = Checking {
        checked: Checked {
            records: 0,
            invalid: Vec::new(),
            invalid_lines: HashSet::new(),
            refused: None,
        },
        seen: HashMap::new(),
        end: None,
    };
    let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHECK_CHUNK);
    let mut last_line = 0;
    let read = lines(path, |number, line, n| {
        progress.advance(n);
        last_line = number;
        if number == 1 {
            return format::header(line)
                .map(|_| true)
                .map_err(|e| format!("line 1 (the header): {e}"));
        }
        chunk.push((number, line.to_vec()));
        if chunk.len() == CHECK_CHUNK {
            state.take(&mut chunk)?;
        }
        Ok(true)
    })?;
    let outcome = read.and_then(|()| state.take(&mut chunk));
    progress.end();
    let Checking {
        mut checked, end, ..
    } = state;
    checked.refused = match (outcome, end) {
        (Err(problem), _) => Some(problem),
        (Ok(()), _) if last_line == 0 => Some("the file is empty".to_owned()),
        (Ok(()), None) => Some(format!(
            "the file ends after line {last_line} (record {}) without its end line: it is \
             truncated",
            last_line.saturating_sub(1)
        )),
        (Ok(()), Some((line, announced))) if announced != checked.records => Some(format!(
            "the end line (line {line}) announces {announced} records, the file holds {}",
            checked.records
        )),
        _ => None,
    };
    Ok(checked)
}

/// A first problem, as a sentence naming its line and record.
fn describe(invalid: &InvalidRecord) -> String {
    let what: Vec<String> = invalid
        .errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect();
    format!(
        "line {} (record {}): {}",
        invalid.line,
        invalid.record,
        what.join("; ")
    )
}

/// Parses the file again on a thread of its own, sending batches of valid records.
fn read_batches(
    path: PathBuf,
    skip: HashSet<u64>,
    batch_size: usize,
    tx: mpsc::Sender<Result<Vec<(u64, Record)>, String>>,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let outcome = lines(&path, |number, line, _| {
        if number == 1 || skip.contains(&number) {
            return Ok(true);
        }
        match format::item(line) {
            Ok(Item::Record(r)) => batch.push((number, r)),
            Ok(Item::End(_)) => return Ok(false),
            Err(_) => {
                return Err(format!(
                    "line {number} changed since the file was checked: run the import again"
                ))
            }
        }
        if batch.len() == batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if tx.blocking_send(Ok(full)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    });
    let last = match outcome {
        Ok(Ok(())) => Ok(batch),
        Ok(Err(problem)) => Err(problem),
        Err(e) => Err(e.to_string()),
    };
    let _ = tx.blocking_send(last);
}

impl Bulk {
    /// Imports the gallery file at `path` into `tenant`. The whole file is checked first
    /// (header, every record, no `(external_user_id, palm_type)` twice, the end line and its
    /// count); a file with a problem is refused before anything is written, unless
    /// `skip_invalid` lets its valid records through. Then batches of records are written,
    /// each in one transaction; records whose user already holds that palm are skipped.
    pub async fn import(
        &self,
        tenant: Uuid,
        path: &Path,
        options: &ImportOptions,
        progress: Arc<dyn Progress>,
    ) -> DomainResult<ImportSummary> {
        if !(1..=10_000).contains(&options.batch_size) {
            return Err(DomainError::field("batch_size", "must be 1-10000"));
        }
        self.require_tenant(tenant).await?;
        let checked = {
            let (path, progress) = (path.to_owned(), progress.clone());
            tokio::task::spawn_blocking(move || check_file(&path, progress.as_ref()))
                .await
                .map_err(DomainError::internal)??
        };
        let mut summary = ImportSummary {
            tenant_id: tenant,
            read: checked.records,
            imported: 0,
            skipped_existing: 0,
            invalid_count: checked.invalid_lines.len() as u64,
            invalid: checked.invalid,
            refused: checked.refused,
            log_head: self.store.log_head(tenant).await?,
        };
        if summary.refused.is_none() && !options.skip_invalid {
            summary.refused = summary.invalid.first().map(|first| {
                format!(
                    "{} invalid record(s), the first on {}; nothing was imported \
                     (--skip-invalid imports the others)",
                    summary.invalid_count,
                    describe(first)
                )
            });
        }
        if summary.refused.is_some() {
            return Ok(summary);
        }
        let valid = summary.read - summary.invalid_count;
        progress.begin("importing", valid, Unit::Records);
        let (tx, mut rx) = mpsc::channel(2);
        let owned = path.to_owned();
        let skip = checked.invalid_lines;
        let batch_size = options.batch_size;
        let reader = std::thread::spawn(move || read_batches(owned, skip, batch_size, tx));
        // Batch k+1 is prepared (users read, templates sealed) while batch k is written:
        // the writes wait only for the store. What k adds is carried into k+1's
        // preparation, since k+1 may read before k commits.
        let mut prepared: Option<(Vec<(u64, Record)>, Prepared)> = None;
        loop {
            let next = match rx.recv().await {
                Some(batch) => Some(batch.map_err(|problem| DomainError::field("in", problem))?),
                None => None,
            };
            let next = next.filter(|batch| !batch.is_empty());
            let Some((records, current)) = prepared.take() else {
                match next {
                    Some(records) => {
                        let writes = self.prepare(tenant, &records, &Pending::default()).await?;
                        prepared = Some((records, writes));
                        continue;
                    }
                    None => break,
                }
            };
            let (written, following) = tokio::join!(self.write_prepared(tenant, &current), async {
                match &next {
                    Some(next) => Some(self.prepare(tenant, next, &current.pending).await),
                    None => None,
                }
            });
            let (imported, head) = match written {
                Ok(done) => {
                    prepared = match (next, following) {
                        (Some(next), Some(writes)) => Some((next, writes?)),
                        _ => None,
                    };
                    done
                }
                // Another writer enrolled or erased one of these users meanwhile: the
                // batch is written again from fresh reads, and the next prepared anew.
                Err(StoreError::Conflict(_)) => {
                    let done = self.write_batch(tenant, &records).await?;
                    prepared = match next {
                        Some(next) => {
                            let writes = self.prepare(tenant, &next, &Pending::default()).await?;
                            Some((next, writes))
                        }
                        None => None,
                    };
                    done
                }
                Err(e) => return Err(e.into()),
            };
            summary.imported += imported;
            summary.skipped_existing += records.len() as u64 - imported;
            if let Some(head) = head {
                summary.log_head = head;
                self.wakeups.templates_changed(tenant);
            }
            progress.advance(records.len() as u64);
        }
        let _ = reader.join();
        progress.end();
        Ok(summary)
    }

    /// Writes a prepared batch once; returns how many palms it wrote and the log head after
    /// them (`None` when it had none to write).
    async fn write_prepared(
        &self,
        tenant: Uuid,
        prepared: &Prepared,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let Some(writes) = &prepared.writes else {
            return Ok((0, None));
        };
        let head = self
            .store
            .import_palms(tenant, writes, self.clock.now())
            .await?;
        Ok((writes.palms.len() as u64, Some(head)))
    }

    /// Writes the records of one batch that the tenant does not hold yet, reading the
    /// tenant's users afresh for each attempt; returns how many it wrote and the log head
    /// after them (`None` when it wrote none).
    async fn write_batch(
        &self,
        tenant: Uuid,
        batch: &[(u64, Record)],
    ) -> DomainResult<(u64, Option<u64>)> {
        for attempt in 1..=ATTEMPTS {
            let prepared = self.prepare(tenant, batch, &Pending::default()).await?;
            let Some(writes) = prepared.writes else {
                return Ok((0, None));
            };
            let n = writes.palms.len() as u64;
            match self
                .store
                .import_palms(tenant, &writes, self.clock.now())
                .await
            {
                Ok(head) => return Ok((n, Some(head))),
                // Another writer enrolled or erased one of these users meanwhile: read
                // them again.
                Err(StoreError::Conflict(_)) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::internal(
            "an import batch kept meeting concurrent writes",
        ))
    }

    /// The writes of a batch: its records whose palm the tenant does not hold yet, with
    /// their users (existing or new) and templates sealed; `None` when there are none.
    async fn prepare(
        &self,
        tenant: Uuid,
        batch: &[(u64, Record)],
        pending: &Pending,
    ) -> DomainResult<Prepared> {
        let externals: Vec<String> = batch
            .iter()
            .map(|(_, r)| r.external_user_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut users: HashMap<String, (Uuid, bool, Vec<PalmType>)> = self
            .store
            .users_with_palm_types(tenant, &externals)
            .await?
            .into_iter()
            .map(|(u, palms)| (u.external_user_id, (u.id, false, palms)))
            .collect();
        // What the batch being written adds, whether or not it has committed yet.
        for external in &externals {
            if let Some((id, types)) = pending.users.get(external) {
                let (_, _, held) =
                    users
                        .entry(external.clone())
                        .or_insert((*id, false, Vec::new()));
                for t in types {
                    if !held.contains(t) {
                        held.push(*t);
                    }
                }
            }
        }
        let now = self.clock.now();
        let mut new_users = Vec::new();
        let mut palms = Vec::new();
        let mut imported = Vec::new();
        for (_, r) in batch {
            let enrolled_at = r.enrolled_at.unwrap_or(now);
            let (user_id, _, held) = users.entry(r.external_user_id.clone()).or_insert_with(|| {
                let user = User {
                    id: Uuid::now_v7(),
                    tenant_id: tenant,
                    external_user_id: r.external_user_id.clone(),
                    created_at: enrolled_at,
                };
                let id = user.id;
                new_users.push(user);
                (id, true, Vec::new())
            });
            if held.contains(&r.palm_type) {
                continue;
            }
            held.push(r.palm_type);
            // Time-ordered ids (users and palms): a batch's rows land together at the end of
            // each id index instead of on a random page of it each, which at a million rows
            // would dirty (and log) a page of every index for every row.
            let feature_id = Uuid::now_v7();
            let sealed = self
                .vault
                .seal_template(tenant, *user_id, feature_id, &r.template)
                .await?;
            imported.push(serde_json::json!({
                "external_user_id": r.external_user_id,
                "palm_type": r.palm_type,
                "feature_id": feature_id,
            }));
            palms.push((
                Palm {
                    feature_id,
                    tenant_id: tenant,
                    user_id: *user_id,
                    palm_type: r.palm_type,
                    enrolled_at,
                    vendor: r.vendor.clone(),
                    challenge_id: Uuid::nil(),
                },
                sealed,
            ));
        }
        if palms.is_empty() {
            return Ok(Prepared {
                writes: None,
                pending: Pending::default(),
            });
        }
        let receiving: HashSet<Uuid> = palms.iter().map(|(p, _)| p.user_id).collect();
        let existing_users: Vec<Uuid> = users
            .values()
            .filter(|(id, new, _)| !new && receiving.contains(id))
            .map(|(id, _, _)| *id)
            .collect();
        let lines = (
            batch.first().map_or(0, |b| b.0),
            batch.last().map_or(0, |b| b.0),
        );
        let audit = record(
            tenant,
            now,
            Actor::operator(CLI_OPERATOR),
            "users.imported",
            ("tenant", tenant.to_string()),
            "success",
            serde_json::json!({
                "lines": [lines.0, lines.1],
                "new_users": new_users.len(),
                "palms": imported,
            }),
        );
        let pending = Pending {
            users: users
                .into_iter()
                .map(|(external, (id, _, held))| (external, (id, held)))
                .collect(),
        };
        Ok(Prepared {
            writes: Some(ImportBatch {
                new_users,
                existing_users,
                palms,
                audit,
            }),
            pending,
        })
    }
}
