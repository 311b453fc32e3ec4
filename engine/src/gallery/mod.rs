//! [`Gallery`]: the type users open. It owns one directory's [`RowStore`]
//! and the accelerators derived from it (the compact copy with its lead
//! block, the graph index), and routes every operation: writes go to the
//! row store and then to the accelerators, reads take a snapshot and hand it
//! to scoring or to the search strategy chosen for the query.
//!
//! Neither the row store nor the search code knows this type: the store
//! hands out snapshots, and searches receive a snapshot and the
//! accelerators' data. `batch.rs` adds the batch API: many probes at once,
//! as an `ndarray` matrix.

mod batch;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use crate::error::GalleryError;
use crate::ids::{RecordIds, RowId};
use crate::kernels;
use crate::scoring::{self, Comparison, MatchSettings};
use crate::search::graph::{AnnParams, EarlyCheck};
use crate::search::lifecycle::{Accelerators, IndexInfo, IndexPolicy};
use crate::search::strategy::{self, Strategy};
use crate::search::{exact, graph, passing, quantised, sketch, SearchOutcome, SearchQuery};
use crate::storage::{GalleryInspection, RowStore, ScrubReport};
use crate::template::{Layout, Template};

/// One tenant's templates in memory-mapped files under one directory, with
/// the accelerators that search them.
///
/// `Send + Sync`: share it as `Arc<Gallery>`. Writers are serialised inside;
/// readers (search, compare, get) never wait for them. The directory is held
/// under an exclusive lock while the gallery is open, so a second `open` of
/// the same directory, in this process or another, fails with
/// [`GalleryError::Locked`].
pub struct Gallery {
    // Declared first, so dropped first: the accelerators' background threads
    // are joined before the row store gives up the directory's lock.
    accel: Accelerators,
    rows: RowStore,
}

impl Gallery {
    /// Creates an empty gallery in `dir` (created if missing).
    ///
    /// `records.bin` is written under a temporary name and renamed into place
    /// last, so a crash during creation leaves no half-made gallery behind
    /// (a later `create` or [`Gallery::open_or_create`] simply starts again).
    pub fn create(dir: &Path, layout: Layout) -> Result<Gallery, GalleryError> {
        Gallery::create_with(dir, layout, IndexPolicy::default())
    }

    /// As [`Gallery::create`], with a chosen policy for the graph index: the new gallery
    /// is ready for use as it is, with no close and open in between (which would let go of
    /// the directory's lock for a moment).
    pub fn create_with(
        dir: &Path,
        layout: Layout,
        policy: IndexPolicy,
    ) -> Result<Gallery, GalleryError> {
        Gallery::over(RowStore::create(dir, layout)?, policy, None)
    }

    /// Opens the gallery in `dir` if there is one, else creates it with `layout`.
    pub fn open_or_create(dir: &Path, layout: Layout) -> Result<Gallery, GalleryError> {
        Gallery::open_or_create_with(dir, layout, IndexPolicy::default())
    }

    /// As [`Gallery::open_or_create`], with a chosen policy for the graph
    /// index; a gallery it creates is returned open, its lock never let go of.
    pub fn open_or_create_with(
        dir: &Path,
        layout: Layout,
        policy: IndexPolicy,
    ) -> Result<Gallery, GalleryError> {
        match Gallery::open_with(dir, policy) {
            Err(GalleryError::NotFound { .. }) => Gallery::create_with(dir, layout, policy),
            other => other,
        }
    }

    /// Opens an existing gallery: maps its files, checks both headers and
    /// reads each row's 4-byte state word; vectors are not read.
    ///
    /// A damaged row does not fail the open: it is never returned by a search,
    /// reading it is a [`GalleryError::Corrupt`] error, and [`Gallery::scrub`]
    /// lists it (rows with an invalid state word are known at once, from
    /// [`Gallery::damaged_rows`]).
    pub fn open(dir: &Path) -> Result<Gallery, GalleryError> {
        Gallery::open_with(dir, IndexPolicy::default())
    }

    /// As [`Gallery::open`], with a chosen policy for the graph index (see
    /// [`IndexPolicy`]). The quantised copy of the vectors is derived here,
    /// reading every vector once in parallel.
    ///
    /// A saved graph's own checks (its header, checksum and structure) run
    /// on a thread of their own while the rows open, once the directory's
    /// lock is held.
    pub fn open_with(dir: &Path, policy: IndexPolicy) -> Result<Gallery, GalleryError> {
        let locked = RowStore::lock(dir)?;
        let early = if policy.at_open {
            EarlyCheck::start(dir)
        } else {
            None
        };
        // On an error `early` is dropped first (declared last), which waits
        // for its thread, and `locked` gives up the lock after.
        let rows = locked.open()?;
        Gallery::over(rows, policy, early)
    }

    /// The gallery over an opened row store: what a save a crash
    /// interrupted left behind is removed, and an erasure a crash interrupted
    /// after its commit is finished in the index files (the row store
    /// finished its own part when it opened); then the accelerators start.
    fn over(
        rows: RowStore,
        policy: IndexPolicy,
        mut early: Option<EarlyCheck>,
    ) -> Result<Gallery, GalleryError> {
        graph::remove_leftovers(rows.dir())?;
        let interrupted = rows.interrupted_erasure();
        if !interrupted.is_empty() {
            // The erasure writes the saved graph's file through a mapping of
            // its own: the early checks end first, and the load checks anew.
            drop(early.take());
            graph::erase_in_files(rows.dir(), &interrupted)?;
            rows.finish_interrupted_erasure()?;
        }
        let accel = Accelerators::open(
            rows.dir(),
            rows.snapshot(),
            rows.live_count(),
            policy,
            early,
        );
        Ok(Gallery { accel, rows })
    }

    /// Reads the gallery in `dir` as of its last commit without opening it
    /// or taking its lock, so another process (the running service) may hold
    /// it meanwhile: the applied log sequence, the live rows with their ids,
    /// and the layout. A commit that lands while it reads makes it read once
    /// more; one during that read too is [`GalleryError::Busy`].
    pub fn inspect(dir: &Path) -> Result<GalleryInspection, GalleryError> {
        crate::storage::inspect(dir)
    }

    /// The gallery's directory.
    pub fn dir(&self) -> &Path {
        self.rows.dir()
    }

    /// The layout every template in this gallery has.
    pub fn layout(&self) -> Layout {
        self.rows.layout()
    }

    /// Live (committed, not deleted, undamaged) rows.
    pub fn live_count(&self) -> usize {
        self.rows.live_count()
    }

    /// Committed rows, deleted ones included.
    pub fn row_count(&self) -> u64 {
        self.rows.row_count()
    }

    /// Rows whose state word was invalid when the gallery was opened.
    pub fn damaged_rows(&self) -> Vec<RowId> {
        self.rows.damaged_rows()
    }

    /// The last sequence of the template log applied to this gallery, as of
    /// its last commit (0 if none ever was). Committed with the rows it
    /// concerns: a crash never leaves a sequence ahead of its rows, nor rows
    /// ahead of their sequence.
    pub fn applied_sequence(&self) -> u64 {
        self.rows.applied_sequence()
    }

    /// The live row of a feature, if any (from an index in memory, built at
    /// open). Plain inserts may put one feature in several rows; this names
    /// the latest.
    pub fn row_of(&self, feature_id: u128) -> Option<RowId> {
        self.rows.row_of(feature_id)
    }

    /// Inserts one template; durable when it returns.
    pub fn insert(&self, ids: RecordIds, template: &Template) -> Result<RowId, GalleryError> {
        Ok(self.insert_batch(&[(ids, template)])?[0])
    }

    /// Inserts templates all-or-nothing with one flush and one commit; durable
    /// when it returns. Rows are returned in input order.
    pub fn insert_batch(
        &self,
        items: &[(RecordIds, &Template)],
    ) -> Result<Vec<RowId>, GalleryError> {
        let rows = self.rows.insert_batch(items, None)?;
        if !rows.is_empty() {
            self.accel.on_insert(&self.rows.snapshot());
        }
        Ok(rows)
    }

    /// Applies an insert of the template log: as
    /// [`insert_batch`](Gallery::insert_batch) (durable, all-or-nothing, one
    /// flush), and the commit that makes the rows live also records
    /// `sequence` as applied.
    ///
    /// Idempotent by feature id: an item whose `feature_id` is live already
    /// (or earlier in the same batch) is not inserted again, and its existing
    /// row is returned in its place, so applying an entry again changes
    /// nothing. `sequence` may equal the applied sequence (the entry applied
    /// last, applied again) but not be older:
    /// [`GalleryError::StaleSequence`], with nothing written.
    pub fn insert_batch_logged(
        &self,
        items: &[(RecordIds, &Template)],
        sequence: u64,
    ) -> Result<Vec<RowId>, GalleryError> {
        let before = self.rows.row_count();
        let rows = self.rows.insert_batch(items, Some(sequence))?;
        if self.rows.row_count() > before {
            self.accel.on_insert(&self.rows.snapshot());
        }
        Ok(rows)
    }

    /// Deletes `row` and erases every copy of its template, durably (see
    /// [`delete_logged`](Gallery::delete_logged)). `Ok(false)` if it was
    /// already deleted.
    pub fn delete(&self, row: RowId) -> Result<bool, GalleryError> {
        Ok(self.erase(&[row], None)? == 1)
    }

    /// Applies an erasure of the template log: deletes `rows` and records
    /// `sequence` as applied, in one commit; rows already deleted are
    /// skipped. Returns how many rows were erased.
    ///
    /// When it returns, no copy of an erased template remains under the
    /// gallery directory or in the gallery's memory: the f32 row is
    /// overwritten with zeros, and so are its quantised copy, its 4-bit lead
    /// block and its sketch in memory, and its key in the graph index, in
    /// memory, in the flat graph's file and in the builder's data file (each
    /// file written in place and synced). A crash after the commit leaves the
    /// rows deleted with `sequence` applied, and the next open finishes the
    /// erasure before anything reads them; a crash before it leaves them live
    /// with the previous sequence.
    ///
    /// An unknown row fails the call before anything is written; so does a
    /// `sequence` older than the applied one ([`GalleryError::StaleSequence`]).
    pub fn delete_logged(&self, rows: &[RowId], sequence: u64) -> Result<usize, GalleryError> {
        self.erase(rows, Some(sequence))
    }

    /// Records `sequence` as applied with no row change (a log entry that
    /// concerns nothing in this gallery): one commit. Nothing is written when
    /// it is the applied sequence already; an older one is
    /// [`GalleryError::StaleSequence`].
    pub fn advance_sequence(&self, sequence: u64) -> Result<(), GalleryError> {
        self.rows.advance_sequence(sequence)
    }

    fn erase(&self, rows: &[RowId], sequence: Option<u64>) -> Result<usize, GalleryError> {
        let erased = self.rows.delete(rows, sequence, |doomed| {
            self.accel.erase(&self.rows.snapshot(), doomed)
        })?;
        Ok(erased.len())
    }

    /// The record at `row` with its template, or `None` if it is deleted.
    ///
    /// Both checksums are verified: a damaged row is [`GalleryError::Corrupt`].
    pub fn get(&self, row: RowId) -> Result<Option<(RecordIds, Template)>, GalleryError> {
        self.rows.get(row)
    }

    /// Scores `probe` against the template at `row` and decides under
    /// `settings` (1:1). The row's checksums are verified first.
    pub fn compare(
        &self,
        probe: &Template,
        row: RowId,
        settings: &MatchSettings,
    ) -> Result<Comparison, GalleryError> {
        let layout = self.layout();
        self.rows.check_layout(probe)?;
        settings
            .check_layout(layout)
            .map_err(|e| GalleryError::InvalidQuery(e.to_string()))?;
        let snap = self.rows.snapshot();
        if self.rows.checked_live_row(&snap, row)?.is_none() {
            return Err(GalleryError::Deleted(row));
        }
        let mut scores = vec![0.0; layout.blocks];
        kernels::block_dots(
            probe.as_slice(),
            snap.vector(row.0),
            layout.dim,
            &mut scores,
        );
        if !snap.is_live(row.0) {
            return Err(GalleryError::Deleted(row));
        }
        Ok(scoring::comparison_from_scores(scores, settings))
    }

    /// Live rows with their ids, in row order (start-up reconciliation).
    pub fn live_records(&self) -> Vec<(RowId, RecordIds)> {
        self.rows.live_records()
    }

    /// Verifies the checksums of every live row's record and vector (reads
    /// the whole gallery; a maintenance task, not part of opening).
    pub fn scrub(&self) -> ScrubReport {
        self.rows.scrub()
    }

    /// 1:N: the top-k live rows by mean block similarity, best first (ties by
    /// row), each with its per-block scores and decision. The query's mode
    /// picks the strategy (see [`Strategy`]); `mode` and `strategy` in the
    /// outcome say what ran.
    pub fn search(
        &self,
        probe: &Template,
        query: &SearchQuery,
    ) -> Result<SearchOutcome, GalleryError> {
        self.search_with(probe, query, self.strategy_for(query))
    }

    /// Runs one search with a chosen [`Strategy`] (validation as
    /// [`Gallery::search`]). `mode` in the outcome is `Exact` when the
    /// strategy that ran finds every passing row (the f32, quantised and
    /// passing scans), `Ann` otherwise.
    pub fn search_with(
        &self,
        probe: &Template,
        query: &SearchQuery,
        strategy: Strategy,
    ) -> Result<SearchOutcome, GalleryError> {
        self.rows.check_layout(probe)?;
        query.validate(self.layout())?;
        let snap = self.rows.snapshot();
        let candidates = match strategy {
            Strategy::F32Scan => exact::search(&snap, probe, query),
            Strategy::QuantisedScan => {
                quantised::search(&snap, &self.accel.compact(), probe, query)
            }
            Strategy::PassingScan if !passing::serves(&query.settings) => {
                return self.search_with(probe, query, Strategy::QuantisedScan)
            }
            Strategy::PassingScan => passing::search(&snap, &self.accel.compact(), probe, query),
            Strategy::SketchPrefilter { rescore } => {
                sketch::search(&snap, &self.accel.compact(), probe, query, rescore)
            }
            Strategy::Hnsw { ef } => {
                let slot = self.accel.graph();
                match slot.as_ref() {
                    Some(index) => graph::search::search(&snap, index, probe, query, ef),
                    None => {
                        drop(slot);
                        self.accel.build_on_demand(&snap);
                        return self.search_with(probe, query, Strategy::QuantisedScan);
                    }
                }
            }
        };
        Ok(SearchOutcome {
            candidates,
            mode: strategy.mode(),
            strategy,
            gallery_size: self.live_count(),
        })
    }

    /// The strategy a query's mode selects (see [`Strategy`]).
    fn strategy_for(&self, query: &SearchQuery) -> Strategy {
        strategy::choose(
            query,
            self.live_count(),
            self.accel.auto_ann_min_rows(),
            self.accel.params().ef_search,
            self.accel.quantised_copy(),
            || self.accel.graph().is_some(),
        )
    }

    /// A report on the graph index.
    pub fn index_info(&self) -> IndexInfo {
        self.accel.info(&self.rows.snapshot())
    }

    /// Waits until no index build is running, at most `timeout`; true if an
    /// index is then ready.
    pub fn wait_for_index(&self, timeout: Duration) -> bool {
        self.accel.wait(timeout)
    }

    /// Starts building the index in the background (from the gallery, not
    /// from saved files) unless a build is running.
    pub fn build_index_in_background(&self) {
        self.accel.build_in_background(self.rows.snapshot());
    }

    /// Rebuilds the index now from the gallery, in parallel on the calling
    /// thread and the rayon pool, saves it and installs it. Searches keep
    /// using the old index meanwhile; rows inserted during the build are
    /// scanned exactly until they are folded in.
    pub fn rebuild_index(&self) -> Result<IndexInfo, GalleryError> {
        self.accel.make_now(&self.rows.snapshot(), false)?;
        Ok(self.index_info())
    }

    /// Rebuilds the index if more than `max_tombstone_fraction` of its points
    /// are deleted rows; true if it did.
    pub fn rebuild_index_if_needed(
        &self,
        max_tombstone_fraction: f64,
    ) -> Result<bool, GalleryError> {
        let info = self.index_info();
        if info.points == 0
            || (info.tombstones as f64) <= max_tombstone_fraction * info.points as f64
        {
            return Ok(false);
        }
        self.rebuild_index()?;
        Ok(true)
    }

    /// Folds the rows past the graph into it now (extending the saved
    /// builder graph, or rebuilding if it is unusable) and saves it, so the
    /// next open maps a graph that covers every row. `Ok(false)` if there is
    /// no index.
    pub fn save_index(&self) -> Result<bool, GalleryError> {
        let snap = self.rows.snapshot();
        let Some(rows) = self.accel.graph().as_ref().map(|index| index.rows) else {
            return Ok(false);
        };
        if snap.count > rows {
            self.accel.make_now(&snap, true)?;
        }
        Ok(true)
    }

    /// Sets the graph parameters: `ef_search` applies at once, the others to
    /// the next build.
    pub fn set_ann_params(&self, params: AnnParams) {
        self.accel.set_params(params);
    }

    /// The graph parameters in force.
    pub fn ann_params(&self) -> AnnParams {
        self.accel.params()
    }

    /// Rows the quantised copy covers (it is derived in the background after
    /// open; rows it does not cover are scanned in f32).
    pub fn quantised_rows(&self) -> u64 {
        self.accel.compact().rows() as u64
    }

    /// Waits until the quantised copy that the accelerated scans read (the
    /// quantised, passing and sketch scans) has been derived after open;
    /// returns at once when it has. Until then those scans read the f32 rows
    /// it does not cover: correct, but at a million rows a second or more a
    /// query instead of milliseconds.
    pub fn wait_for_quantised_copy(&self) {
        self.accel.wait_derived();
    }

    /// Rows the lead-block array of the passing scan covers (derived first
    /// after open, before the rest of the quantised copy).
    pub fn passing_rows(&self) -> u64 {
        self.accel.compact().lead_rows() as u64
    }

    /// Heap bytes held by the quantised copy (i8 values, scales, sketches, and
    /// the lead block's values and scales again, block-major).
    pub fn quantised_bytes(&self) -> usize {
        self.accel.compact().heap_bytes()
    }
}
