//! [`RowStore`]: create, open, insert, delete, read and scrub the rows of
//! one gallery directory.
//!
//! # Durability
//!
//! A write is acknowledged only after everything it depends on is on the
//! device, in this order:
//!
//! 1. Growth: both files are extended with `set_len` and `fsync`ed (size
//!    metadata included) before any row in the new space is written, so a
//!    committed count never points past the end of a file after a crash.
//! 2. Insert: the new rows (vectors, then records with state `LIVE` and their
//!    checksums) are written past the committed count and flushed
//!    (`msync(MS_SYNC)`). Only then is the commit written: the *other* header
//!    slot gets `seq + 1` and the new count, and is flushed. A crash before the
//!    slot reaches the device leaves the old slot current and the new rows
//!    beyond the count, ignored; a torn slot fails its checksum and the old
//!    slot stays current. A batch shares one row flush and one commit (group
//!    commit), and is all-or-nothing.
//! 3. Delete: the row's state word becomes `DEAD` (one aligned atomic store)
//!    and is flushed; then its vector is overwritten with zeros and flushed
//!    (erasure). A crash after the first flush leaves the row deleted; a
//!    crash before it leaves it live, and the delete was never acknowledged.
//!
//! Readers never take the writer's lock: they load the current [`Snapshot`]
//! (mappings plus committed count) from an `ArcSwap`, so a writer growing and
//! remapping the files only ever swaps in a new snapshot; old mappings stay
//! valid while any reader holds them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use rayon::prelude::*;

use super::format::{
    self, HeaderSlot, Record, VectorFileHeader, FORMAT_VERSION, HEADER_BYTES, RECORDS_FILE,
    RECORD_BYTES, SLOT_B_OFFSET, STATE_DEAD, STATE_LIVE, STATE_OFFSET, VECTORS_FILE, VECTORS_MAGIC,
};
use super::mapping::Mapping;
use super::snapshot::Snapshot;
use crate::error::GalleryError;
use crate::ids::{RecordIds, RowId};
use crate::template::{Layout, Template};

/// Rows a new gallery has room for before it first grows.
const INITIAL_CAPACITY: u64 = 1024;
/// Smallest growth step, in rows.
const MIN_GROWTH: u64 = 4096;

/// The rows of one gallery in memory-mapped files under one directory:
/// vectors, records with their checksums, and the two commit slots.
///
/// `Send + Sync`. Writers are serialised inside; readers take a
/// [`Snapshot`] and never wait for them. The directory is held under an
/// exclusive lock while the store is open, so a second `open` of the same
/// directory, in this process or another, fails with
/// [`GalleryError::Locked`].
pub(crate) struct RowStore {
    dir: PathBuf,
    layout: Layout,
    stride: usize,
    snapshot: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
    live: AtomicUsize,
    damaged: Arc<HashSet<u64>>,
}

struct Writer {
    vectors_file: File,
    records_file: File,
    vectors: Arc<Mapping>,
    records: Arc<Mapping>,
    capacity: u64,
    count: u64,
    seq: u64,
    next_slot: usize,
    poisoned: bool,
}

/// The outcome of [`Gallery::scrub`](crate::Gallery::scrub).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Live rows whose checksums were verified.
    pub checked: usize,
    /// Rows whose record or vector fails its checksum.
    pub damaged: Vec<RowId>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |e| GalleryError::io(path, e)
}

fn slot_offset(slot: usize) -> usize {
    if slot == 0 {
        0
    } else {
        SLOT_B_OFFSET
    }
}

impl RowStore {
    /// Creates an empty gallery in `dir` (created if missing).
    ///
    /// `records.bin` is written under a temporary name and renamed into place
    /// last, so a crash during creation leaves no half-made gallery behind
    /// (a later `create` simply starts again).
    pub(crate) fn create(dir: &Path, layout: Layout) -> Result<RowStore, GalleryError> {
        let layout = Layout::new(layout.blocks, layout.dim)
            .map_err(|_| GalleryError::InvalidQuery(format!("invalid layout {layout:?}")))?;
        fs::create_dir_all(dir).map_err(io(dir))?;
        let records_path = dir.join(RECORDS_FILE);
        if records_path.exists() {
            return Err(GalleryError::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let stride = format::row_stride(layout) as u64;

        let vectors_path = dir.join(VECTORS_FILE);
        let vectors = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&vectors_path)
            .map_err(io(&vectors_path))?;
        vectors
            .set_len(HEADER_BYTES as u64 + INITIAL_CAPACITY * stride)
            .map_err(io(&vectors_path))?;
        vectors
            .write_all_at(bytemuck::bytes_of(&VectorFileHeader::new(layout)), 0)
            .map_err(io(&vectors_path))?;
        vectors.sync_all().map_err(io(&vectors_path))?;

        let tmp_path = dir.join(format!("{RECORDS_FILE}.tmp"));
        let records = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(io(&tmp_path))?;
        records
            .set_len(HEADER_BYTES as u64 + INITIAL_CAPACITY * RECORD_BYTES as u64)
            .map_err(io(&tmp_path))?;
        records
            .write_all_at(bytemuck::bytes_of(&HeaderSlot::new(layout, 1, 0)), 0)
            .map_err(io(&tmp_path))?;
        records.sync_all().map_err(io(&tmp_path))?;
        drop(records);
        fs::rename(&tmp_path, &records_path).map_err(io(&records_path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        RowStore::open(dir)
    }

    /// Opens an existing store: maps its files, checks both headers and
    /// reads each row's 4-byte state word; vectors are not read.
    ///
    /// A damaged row does not fail the open: it is never returned by a search,
    /// reading it is a [`GalleryError::Corrupt`] error, and
    /// [`RowStore::scrub`] lists it (rows with an invalid state word are known
    /// at once, from [`RowStore::damaged_rows`]).
    pub(crate) fn open(dir: &Path) -> Result<RowStore, GalleryError> {
        let records_path = dir.join(RECORDS_FILE);
        let records_file = match File::options().read(true).write(true).open(&records_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GalleryError::NotFound {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(GalleryError::io(&records_path, e)),
        };
        match records_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(GalleryError::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(GalleryError::io(&records_path, e)),
        }
        let vectors_path = dir.join(VECTORS_FILE);
        let vectors_file = match File::options().read(true).write(true).open(&vectors_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GalleryError::corrupt(&vectors_path, "file is missing"))
            }
            Err(e) => return Err(GalleryError::io(&vectors_path, e)),
        };

        let vectors_len = vectors_file.metadata().map_err(io(&vectors_path))?.len();
        let records_len = records_file.metadata().map_err(io(&records_path))?.len();
        if vectors_len < HEADER_BYTES as u64 {
            return Err(GalleryError::corrupt(&vectors_path, "truncated header"));
        }
        if records_len < HEADER_BYTES as u64 {
            return Err(GalleryError::corrupt(&records_path, "truncated header"));
        }

        let mut raw = [0u8; 64];
        vectors_file
            .read_exact_at(&mut raw, 0)
            .map_err(io(&vectors_path))?;
        let header: VectorFileHeader = bytemuck::pod_read_unaligned(&raw);
        if header.magic != VECTORS_MAGIC {
            return Err(GalleryError::corrupt(&vectors_path, "bad magic number"));
        }
        if header.crc != header.computed_crc() {
            return Err(GalleryError::corrupt(
                &vectors_path,
                "header checksum mismatch",
            ));
        }
        if header.version != FORMAT_VERSION {
            return Err(GalleryError::UnsupportedVersion {
                path: vectors_path,
                found: header.version,
            });
        }
        let layout = Layout::new(header.blocks as usize, header.dim as usize)
            .map_err(|_| GalleryError::corrupt(&vectors_path, "invalid layout in header"))?;
        let stride = format::row_stride(layout);
        if header.row_stride as usize != stride {
            return Err(GalleryError::corrupt(
                &vectors_path,
                "row stride disagrees with layout",
            ));
        }

        let mut slots = Vec::with_capacity(2);
        for slot in 0..2 {
            records_file
                .read_exact_at(&mut raw, slot_offset(slot) as u64)
                .map_err(io(&records_path))?;
            let s: HeaderSlot = bytemuck::pod_read_unaligned(&raw);
            if s.is_intact() {
                slots.push((slot, s));
            }
        }
        let Some(&(current, slot)) = slots.iter().max_by_key(|(_, s)| s.seq) else {
            return Err(GalleryError::corrupt(
                &records_path,
                "no intact header slot",
            ));
        };
        if slot.version != FORMAT_VERSION {
            return Err(GalleryError::UnsupportedVersion {
                path: records_path,
                found: slot.version,
            });
        }
        if (slot.blocks as usize, slot.dim as usize) != (layout.blocks, layout.dim) {
            return Err(GalleryError::corrupt(
                &records_path,
                "layout differs from vectors.bin",
            ));
        }
        let vector_rows = (vectors_len - HEADER_BYTES as u64) / stride as u64;
        let record_rows = (records_len - HEADER_BYTES as u64) / RECORD_BYTES as u64;
        if slot.count > vector_rows {
            return Err(GalleryError::corrupt(
                &vectors_path,
                format!(
                    "truncated: {} rows committed, room for {vector_rows}",
                    slot.count
                ),
            ));
        }
        if slot.count > record_rows {
            return Err(GalleryError::corrupt(
                &records_path,
                format!(
                    "truncated: {} rows committed, room for {record_rows}",
                    slot.count
                ),
            ));
        }

        let vectors = Arc::new(Mapping::new(&vectors_file, &vectors_path)?);
        let records = Arc::new(Mapping::new(&records_file, &records_path)?);
        let mut snapshot = Snapshot {
            vectors: vectors.clone(),
            records: records.clone(),
            count: slot.count,
            layout,
            stride,
            damaged: Arc::default(),
        };
        let (live, damaged) = check_records(&snapshot);
        let damaged = Arc::new(damaged);
        snapshot.damaged = damaged.clone();
        let writer = Writer {
            vectors_file,
            records_file,
            vectors,
            records,
            capacity: vector_rows.min(record_rows),
            count: slot.count,
            seq: slot.seq,
            next_slot: 1 - current,
            poisoned: false,
        };
        Ok(RowStore {
            dir: dir.to_path_buf(),
            layout,
            stride,
            snapshot: ArcSwap::new(Arc::new(snapshot)),
            writer: Mutex::new(writer),
            live: AtomicUsize::new(live),
            damaged,
        })
    }

    /// The store's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout every row has.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Live (committed, not deleted, undamaged) rows.
    pub(crate) fn live_count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Committed rows, deleted ones included.
    pub(crate) fn row_count(&self) -> u64 {
        self.snapshot.load().count
    }

    /// Rows whose state word was invalid when the gallery was opened.
    pub(crate) fn damaged_rows(&self) -> Vec<RowId> {
        let mut rows: Vec<RowId> = self.damaged.iter().map(|&r| RowId(r)).collect();
        rows.sort();
        rows
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn is_damaged(&self, row: u64) -> bool {
        !self.damaged.is_empty() && self.damaged.contains(&row)
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, GalleryError> {
        // A panic while holding the lock cannot leave a half-committed row
        // visible (commits are the last step), so the guard is still usable.
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.poisoned {
            return Err(GalleryError::io(
                &self.dir,
                std::io::Error::other("an earlier flush failed; reopen the gallery"),
            ));
        }
        Ok(w)
    }

    pub(crate) fn check_layout(&self, template: &Template) -> Result<(), GalleryError> {
        if template.layout() != self.layout {
            return Err(GalleryError::LayoutMismatch {
                expected: self.layout,
                actual: template.layout(),
            });
        }
        Ok(())
    }

    /// Inserts templates all-or-nothing with one flush and one commit; durable
    /// when it returns. Rows are returned in input order.
    pub(crate) fn insert_batch(
        &self,
        items: &[(RecordIds, &Template)],
    ) -> Result<Vec<RowId>, GalleryError> {
        for (_, template) in items {
            self.check_layout(template)?;
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.lock_writer()?;
        let start = w.count;
        let end = start + items.len() as u64;
        self.ensure_capacity(&mut w, end)?;

        let byte_len = self.layout.byte_len();
        for (i, (ids, template)) in items.iter().enumerate() {
            let row = start + i as u64;
            let bytes: &[u8] = bytemuck::cast_slice(template.as_slice());
            debug_assert_eq!(bytes.len(), byte_len);
            w.vectors
                .write(HEADER_BYTES + row as usize * self.stride, bytes);
            let record = Record::new(row, *ids, crc32fast::hash(bytes));
            w.records
                .write(Snapshot::record_offset(row), bytemuck::bytes_of(&record));
        }
        let slot_off = slot_offset(w.next_slot);
        let slot = HeaderSlot::new(self.layout, w.seq + 1, end);
        let committed = (|| {
            w.vectors.flush(
                HEADER_BYTES + start as usize * self.stride,
                items.len() * self.stride,
            )?;
            w.records
                .flush(Snapshot::record_offset(start), items.len() * RECORD_BYTES)?;
            w.records.write(slot_off, bytemuck::bytes_of(&slot));
            w.records.flush(slot_off, std::mem::size_of::<HeaderSlot>())
        })();
        if let Err(e) = committed {
            w.poisoned = true;
            return Err(e);
        }
        w.seq += 1;
        w.next_slot ^= 1;
        w.count = end;
        self.live.fetch_add(items.len(), Ordering::Relaxed);
        self.publish(&w);
        Ok((start..end).map(RowId).collect())
    }

    /// Tombstones `row` and erases its vector, durably. `Ok(false)` if it was
    /// already deleted.
    pub(crate) fn delete(&self, row: RowId) -> Result<bool, GalleryError> {
        let mut w = self.lock_writer()?;
        if row.0 >= w.count {
            return Err(GalleryError::UnknownRow(row));
        }
        let (records, vectors) = (w.records.clone(), w.vectors.clone());
        let state_offset = Snapshot::record_offset(row.0) + STATE_OFFSET;
        let word = records.state_word(state_offset);
        match word.load(Ordering::Acquire) {
            STATE_DEAD => return Ok(false),
            STATE_LIVE => {}
            other => {
                return Err(GalleryError::corrupt(
                    self.dir.join(RECORDS_FILE),
                    format!("row {} has invalid state word {other:#x}", row.0),
                ))
            }
        }
        word.store(STATE_DEAD, Ordering::Release);
        let vector_offset = HEADER_BYTES + row.0 as usize * self.stride;
        let flushed = records.flush(state_offset, 4).and_then(|()| {
            vectors.erase(vector_offset, self.stride);
            vectors.flush(vector_offset, self.stride)
        });
        if let Err(e) = flushed {
            w.poisoned = true;
            return Err(e);
        }
        if !self.is_damaged(row.0) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// The record at `row` with its template, or `None` if it is deleted.
    ///
    /// Both checksums are verified: a damaged row is [`GalleryError::Corrupt`].
    pub(crate) fn get(&self, row: RowId) -> Result<Option<(RecordIds, Template)>, GalleryError> {
        let snap = self.snapshot();
        let Some(ids) = self.checked_live_row(&snap, row)? else {
            return Ok(None);
        };
        let template = Template::from_normalised_unchecked(self.layout, snap.vector(row.0));
        if snap.state(row.0) != STATE_LIVE {
            return Ok(None);
        }
        Ok(Some((ids, template)))
    }

    /// Checks that `row` exists, and if it is live that both of its checksums
    /// hold; returns its ids, or `None` if it is deleted.
    pub(crate) fn checked_live_row(
        &self,
        snap: &Snapshot,
        row: RowId,
    ) -> Result<Option<RecordIds>, GalleryError> {
        if row.0 >= snap.count {
            return Err(GalleryError::UnknownRow(row));
        }
        let record = snap.record(row.0);
        match record.state {
            STATE_DEAD => return Ok(None),
            STATE_LIVE => {}
            other => {
                return Err(GalleryError::corrupt(
                    self.dir.join(RECORDS_FILE),
                    format!("row {} has invalid state word {other:#x}", row.0),
                ))
            }
        }
        let bytes: &[u8] = bytemuck::cast_slice(snap.vector(row.0));
        match record.intact_ids(row.0) {
            Some(ids) if crc32fast::hash(bytes) == record.vector_crc => Ok(Some(ids)),
            Some(_) if snap.state(row.0) == STATE_DEAD => Ok(None),
            Some(_) => Err(GalleryError::corrupt(
                self.dir.join(VECTORS_FILE),
                format!("row {} fails its vector checksum", row.0),
            )),
            None => Err(GalleryError::corrupt(
                self.dir.join(RECORDS_FILE),
                format!("row {} fails its record checksum", row.0),
            )),
        }
    }

    /// Live rows with their ids, in row order (start-up reconciliation).
    pub(crate) fn live_records(&self) -> Vec<(RowId, RecordIds)> {
        let snap = self.snapshot();
        (0..snap.count)
            .filter(|&row| snap.state(row) == STATE_LIVE && !self.is_damaged(row))
            .filter_map(|row| {
                snap.record(row)
                    .intact_ids(row)
                    .map(|ids| (RowId(row), ids))
            })
            .collect()
    }

    /// Verifies the checksums of every live row's record and vector (reads
    /// the whole gallery; a maintenance task, not part of opening).
    pub(crate) fn scrub(&self) -> ScrubReport {
        let snap = self.snapshot();
        let live: Vec<u64> = (0..snap.count)
            .into_par_iter()
            .filter(|&row| snap.state(row) == STATE_LIVE)
            .collect();
        let damaged = live
            .par_iter()
            .filter(|&&row| self.checked_live_row(&snap, RowId(row)).is_err())
            .map(|&row| RowId(row))
            .collect();
        ScrubReport {
            checked: live.len(),
            damaged,
        }
    }

    fn ensure_capacity(&self, w: &mut Writer, rows: u64) -> Result<(), GalleryError> {
        if rows <= w.capacity {
            return Ok(());
        }
        let capacity = rows.max(w.capacity + (w.capacity / 2).max(MIN_GROWTH));
        let vectors_path = self.dir.join(VECTORS_FILE);
        let records_path = self.dir.join(RECORDS_FILE);
        w.vectors_file
            .set_len(HEADER_BYTES as u64 + capacity * self.stride as u64)
            .and_then(|()| w.vectors_file.sync_all())
            .map_err(io(&vectors_path))?;
        w.records_file
            .set_len(HEADER_BYTES as u64 + capacity * RECORD_BYTES as u64)
            .and_then(|()| w.records_file.sync_all())
            .map_err(io(&records_path))?;
        w.vectors = Arc::new(Mapping::new(&w.vectors_file, &vectors_path)?);
        w.records = Arc::new(Mapping::new(&w.records_file, &records_path)?);
        w.capacity = capacity;
        self.publish(w);
        Ok(())
    }

    fn publish(&self, w: &Writer) {
        self.snapshot.store(Arc::new(Snapshot {
            vectors: w.vectors.clone(),
            records: w.records.clone(),
            count: w.count,
            layout: self.layout,
            stride: self.stride,
            damaged: self.damaged.clone(),
        }));
    }
}

/// Counts live rows and finds rows whose state word is neither live nor dead,
/// reading only the state words (in parallel for large galleries). Record and
/// vector checksums are verified where a row is read (`get`, `compare`, search
/// candidates, `live_records`) and by [`RowStore::scrub`], so opening stays
/// proportional to a few bytes per row.
fn check_records(snap: &Snapshot) -> (usize, HashSet<u64>) {
    let check = |(mut live, mut damaged): (usize, Vec<u64>), row: u64| {
        match snap.state(row) {
            STATE_LIVE => live += 1,
            STATE_DEAD => {}
            _ => damaged.push(row),
        }
        (live, damaged)
    };
    let merge = |(a, mut da): (usize, Vec<u64>), (b, db): (usize, Vec<u64>)| {
        da.extend(db);
        (a + b, da)
    };
    let (live, damaged) = if snap.count < 262_144 {
        (0..snap.count).fold((0, Vec::new()), check)
    } else {
        const CHUNK: u64 = 65_536;
        (0..snap.count.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| (c * CHUNK..((c + 1) * CHUNK).min(snap.count)).fold((0, Vec::new()), check))
            .reduce(|| (0, Vec::new()), merge)
    };
    (live, damaged.into_iter().collect())
}
