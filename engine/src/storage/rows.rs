//! [`RowStore`]: insert, delete, read and scrub the rows of one gallery
//! directory, and record the template log's sequence with them (creating
//! and opening are in `open.rs`).
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
//!    slot gets the next commit number, the new count and the log sequence
//!    applied, and is flushed. A crash before the slot reaches the device
//!    leaves the old slot current and the new rows beyond the count, ignored;
//!    a torn slot fails its checksum and the old slot stays current. A batch
//!    shares one row flush and one commit (group commit), and is
//!    all-or-nothing.
//! 3. Delete (erasure): the rows to delete and the number of the commit that
//!    will delete them are written to `erasing.bin` and synced; then that
//!    commit is written (the count unchanged, the log sequence applied) and
//!    flushed; only then are the rows' state words set to `DEAD` and flushed,
//!    their vectors overwritten with zeros and flushed, and every copy the
//!    accelerators hold erased; last, `erasing.bin` is emptied. A crash before
//!    the commit leaves the rows live and the old sequence (the intent names
//!    a commit that never happened and is forgotten at open); a crash after it
//!    leaves them deleted with the new sequence, and the open finishes the
//!    erasure from the intent before anything reads the rows.
//! 4. A log sequence with no row change is one commit of the slot alone.
//!
//! So the log sequence in the current slot always names exactly the rows
//! committed with it: never a sequence ahead of its rows, never rows ahead of
//! their sequence.
//!
//! Readers never take the writer's lock: they load the current [`Snapshot`]
//! (mappings plus committed count) from an `ArcSwap`, so a writer growing and
//! remapping the files only ever swaps in a new snapshot; old mappings stay
//! valid while any reader holds them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use arc_swap::ArcSwap;
use rayon::prelude::*;

use super::erasure::{clear_erasure, erase_rows};
use super::features::FeatureIndex;
use super::format::{
    ErasureIntent, HeaderSlot, Record, VectorFileHeader, ERASURE_FILE, HEADER_BYTES, RECORDS_FILE,
    RECORD_BYTES, SLOT_B_OFFSET, STATE_DEAD, STATE_LIVE, STATE_OFFSET, VECTORS_FILE,
};
use super::mapping::Mapping;
use super::snapshot::Snapshot;
use crate::error::GalleryError;
use crate::ids::{RecordIds, RowId};
use crate::template::{Layout, Template};

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
    pub(super) dir: PathBuf,
    pub(super) layout: Layout,
    pub(super) stride: usize,
    pub(super) snapshot: ArcSwap<Snapshot>,
    pub(super) writer: Mutex<Writer>,
    pub(super) live: AtomicUsize,
    pub(super) damaged: Arc<HashSet<u64>>,
    /// The live row of each feature id.
    pub(super) features: RwLock<FeatureIndex>,
    /// Rows of an erasure a crash interrupted after its commit: the row store
    /// finished its part at open; the accelerators' part remains (see
    /// [`RowStore::interrupted_erasure`]).
    pub(super) interrupted: Mutex<Vec<u64>>,
}

pub(super) struct Writer {
    pub(super) vectors_file: File,
    pub(super) records_file: File,
    /// `erasing.bin`: the intent of the erasure under way, if any.
    pub(super) erasing: File,
    pub(super) vectors: Arc<Mapping>,
    pub(super) records: Arc<Mapping>,
    pub(super) capacity: u64,
    pub(super) count: u64,
    /// The current slot's commit number.
    pub(super) seq: u64,
    /// The log sequence the current slot records.
    pub(super) applied: u64,
    pub(super) next_slot: usize,
    pub(super) poisoned: bool,
    /// `vectors.bin` still has the header of the previous format version:
    /// rewritten before the next commit.
    pub(super) upgrade: bool,
}

/// The outcome of [`Gallery::scrub`](crate::Gallery::scrub).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Live rows whose checksums were verified.
    pub checked: usize,
    /// Rows whose record or vector fails its checksum.
    pub damaged: Vec<RowId>,
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |e| GalleryError::io(path, e)
}

pub(super) fn slot_offset(slot: usize) -> usize {
    if slot == 0 {
        0
    } else {
        SLOT_B_OFFSET
    }
}

impl RowStore {
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

    /// The last log sequence applied, as of the last commit.
    pub(crate) fn applied_sequence(&self) -> u64 {
        self.snapshot.load().applied
    }

    /// The live row of `feature`, if any (the latest, if plain inserts put it
    /// in several rows).
    pub(crate) fn row_of(&self, feature: u128) -> Option<RowId> {
        self.features
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(feature)
            .map(RowId)
    }

    /// Refuses a log sequence older than the one applied.
    fn check_sequence(w: &Writer, sequence: Option<u64>) -> Result<u64, GalleryError> {
        match sequence {
            Some(offered) if offered < w.applied => Err(GalleryError::StaleSequence {
                applied: w.applied,
                offered,
            }),
            Some(offered) => Ok(offered),
            None => Ok(w.applied),
        }
    }

    /// Writes and flushes the next commit slot: `count` rows, log sequence
    /// `applied`. Poisons the writer if a flush fails.
    fn commit(&self, w: &mut Writer, count: u64, applied: u64) -> Result<(), GalleryError> {
        let slot_off = slot_offset(w.next_slot);
        let slot = HeaderSlot::new(self.layout, w.seq + 1, count, applied);
        let committed = (|| {
            if w.upgrade {
                // A gallery of the previous version: its vectors header says
                // so until this first commit of the current version.
                let header = VectorFileHeader::new(self.layout);
                w.vectors.write(0, bytemuck::bytes_of(&header));
                w.vectors
                    .flush(0, std::mem::size_of::<VectorFileHeader>())?;
            }
            w.records.write(slot_off, bytemuck::bytes_of(&slot));
            w.records.flush(slot_off, std::mem::size_of::<HeaderSlot>())
        })();
        if let Err(e) = committed {
            w.poisoned = true;
            return Err(e);
        }
        w.upgrade = false;
        w.seq += 1;
        w.next_slot ^= 1;
        w.count = count;
        w.applied = applied;
        Ok(())
    }

    /// Records log sequence `sequence` with no row change (a commit of the
    /// slot alone; nothing is written when it is the one applied already).
    pub(crate) fn advance_sequence(&self, sequence: u64) -> Result<(), GalleryError> {
        let mut w = self.lock_writer()?;
        let applied = Self::check_sequence(&w, Some(sequence))?;
        if applied > w.applied {
            let count = w.count;
            self.commit(&mut w, count, applied)?;
            self.publish(&w);
        }
        Ok(())
    }

    /// Inserts templates all-or-nothing with one flush and one commit; durable
    /// when it returns. Rows are returned in input order.
    ///
    /// With a log `sequence`, the commit also records it, and the insert is
    /// idempotent by feature id: an item whose feature is live already (or
    /// earlier in the same batch) is not inserted again, and its row is
    /// returned in its place; a sequence older than the applied one is
    /// [`GalleryError::StaleSequence`].
    pub(crate) fn insert_batch(
        &self,
        items: &[(RecordIds, &Template)],
        sequence: Option<u64>,
    ) -> Result<Vec<RowId>, GalleryError> {
        for (_, template) in items {
            self.check_layout(template)?;
        }
        if items.is_empty() && sequence.is_none() {
            return Ok(Vec::new());
        }
        let mut w = self.lock_writer()?;
        let applied = Self::check_sequence(&w, sequence)?;
        let start = w.count;
        // Where each item goes, and which items are written.
        let mut rows = Vec::with_capacity(items.len());
        let mut fresh: Vec<usize> = Vec::with_capacity(items.len());
        {
            let features = self.features.read().unwrap_or_else(|p| p.into_inner());
            let mut in_batch: HashMap<u128, u64> = HashMap::new();
            for (i, (ids, _)) in items.iter().enumerate() {
                if sequence.is_some() {
                    let known = features
                        .get(ids.feature_id)
                        .or_else(|| in_batch.get(&ids.feature_id).copied());
                    if let Some(row) = known {
                        rows.push(RowId(row));
                        continue;
                    }
                    in_batch.insert(ids.feature_id, start + fresh.len() as u64);
                }
                rows.push(RowId(start + fresh.len() as u64));
                fresh.push(i);
            }
        }
        if fresh.is_empty() {
            if applied > w.applied {
                self.commit(&mut w, start, applied)?;
                self.publish(&w);
            }
            return Ok(rows);
        }
        let end = start + fresh.len() as u64;
        self.ensure_capacity(&mut w, end)?;

        let byte_len = self.layout.byte_len();
        for (n, &i) in fresh.iter().enumerate() {
            let (ids, template) = &items[i];
            let row = start + n as u64;
            let bytes: &[u8] = bytemuck::cast_slice(template.as_slice());
            debug_assert_eq!(bytes.len(), byte_len);
            w.vectors
                .write(HEADER_BYTES + row as usize * self.stride, bytes);
            let record = Record::new(row, *ids, crc32fast::hash(bytes));
            w.records
                .write(Snapshot::record_offset(row), bytemuck::bytes_of(&record));
        }
        let flushed = w
            .vectors
            .flush(
                HEADER_BYTES + start as usize * self.stride,
                fresh.len() * self.stride,
            )
            .and_then(|()| {
                w.records
                    .flush(Snapshot::record_offset(start), fresh.len() * RECORD_BYTES)
            });
        if let Err(e) = flushed {
            w.poisoned = true;
            return Err(e);
        }
        self.commit(&mut w, end, applied)?;
        self.live.fetch_add(fresh.len(), Ordering::Relaxed);
        self.publish(&w);
        let mut features = self.features.write().unwrap_or_else(|p| p.into_inner());
        for (n, &i) in fresh.iter().enumerate() {
            features.insert(items[i].0.feature_id, start + n as u64);
        }
        Ok(rows)
    }

    /// Deletes `rows` durably and erases them: tombstoned, vectors zeroed, and
    /// `accelerators` called with the rows to erase every other copy (see the
    /// module docs for the order). With a log `sequence`, the commit records
    /// it (a sequence older than the applied one is
    /// [`GalleryError::StaleSequence`]). Rows already deleted are skipped; an
    /// unknown row or an invalid state word fails the call before anything
    /// is written. Returns the rows erased, in increasing order.
    ///
    /// A failure after the commit poisons the writer: the erasure is then
    /// finished by the next open.
    pub(crate) fn delete(
        &self,
        rows: &[RowId],
        sequence: Option<u64>,
        accelerators: impl FnOnce(&[u64]) -> Result<(), GalleryError>,
    ) -> Result<Vec<u64>, GalleryError> {
        let mut w = self.lock_writer()?;
        let applied = Self::check_sequence(&w, sequence)?;
        let mut doomed = Vec::with_capacity(rows.len());
        for &row in rows {
            if row.0 >= w.count {
                return Err(GalleryError::UnknownRow(row));
            }
            let state_offset = Snapshot::record_offset(row.0) + STATE_OFFSET;
            match w.records.state_word(state_offset).load(Ordering::Acquire) {
                STATE_DEAD => {}
                STATE_LIVE => doomed.push(row.0),
                other => {
                    return Err(GalleryError::corrupt(
                        self.dir.join(RECORDS_FILE),
                        format!("row {} has invalid state word {other:#x}", row.0),
                    ))
                }
            }
        }
        doomed.sort_unstable();
        doomed.dedup();
        let count = w.count;
        if doomed.is_empty() {
            if applied > w.applied {
                self.commit(&mut w, count, applied)?;
                self.publish(&w);
            }
            return Ok(doomed);
        }
        let intent = ErasureIntent::encode(w.seq + 1, &doomed);
        let path = self.dir.join(ERASURE_FILE);
        let recorded = w
            .erasing
            .write_all_at(&intent, 0)
            .and_then(|()| w.erasing.set_len(intent.len() as u64))
            .and_then(|()| w.erasing.sync_all())
            .map_err(io(&path));
        if let Err(e) = recorded {
            // The intent may be torn: no commit may reuse its number before
            // an open has looked at it.
            w.poisoned = true;
            return Err(e);
        }
        self.commit(&mut w, count, applied)?;
        let (records, vectors) = (w.records.clone(), w.vectors.clone());
        let erased = erase_rows(&records, &vectors, self.stride, &doomed)
            .and_then(|()| accelerators(&doomed))
            .and_then(|()| clear_erasure(&self.dir, &w.erasing));
        if let Err(e) = erased {
            w.poisoned = true;
            return Err(e);
        }
        let snap = self.snapshot.load();
        let mut features = self.features.write().unwrap_or_else(|p| p.into_inner());
        for &row in &doomed {
            if let Some(ids) = snap.record(row).ids() {
                features.remove(ids.feature_id, row);
            }
        }
        drop(features);
        let undamaged = doomed.iter().filter(|&&r| !self.is_damaged(r)).count();
        self.live.fetch_sub(undamaged, Ordering::Relaxed);
        self.publish(&w);
        Ok(doomed)
    }

    /// The rows of an erasure a crash interrupted after its commit, whose
    /// accelerator part the gallery finishes at open before calling
    /// [`RowStore::finish_interrupted_erasure`].
    pub(crate) fn interrupted_erasure(&self) -> Vec<u64> {
        self.interrupted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the interrupted erasure once every copy is erased.
    pub(crate) fn finish_interrupted_erasure(&self) -> Result<(), GalleryError> {
        let w = self.lock_writer()?;
        let mut rows = self.interrupted.lock().unwrap_or_else(|p| p.into_inner());
        if !rows.is_empty() {
            clear_erasure(&self.dir, &w.erasing)?;
            rows.clear();
        }
        Ok(())
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
        w.vectors = Arc::new(Mapping::with_point_reads(&w.vectors_file, &vectors_path)?);
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
            applied: w.applied,
            layout: self.layout,
            stride: self.stride,
            damaged: self.damaged.clone(),
        }));
    }
}
