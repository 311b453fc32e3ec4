//! The gallery's search accelerators: the quantised copy and the graph index,
//! their life cycle, and the one search entry point that chooses among them.
//!
//! # Strategies
//!
//! * [`Strategy::QuantisedScan`]: what [`SearchMode::Exact`] runs. Scans the
//!   i8 copy and re-scores in f32; returns exactly what the f32 scan returns
//!   (see the guarantee in `quantized.rs`), reading a quarter of the bytes.
//! * [`Strategy::PassingScan`]: what [`SearchMode::Ann`] runs when the
//!   query's policy requires every block to pass (`all_thresholds`, or
//!   `k_of_n` with `k` equal to the number of blocks). Reads one block per
//!   row (36 B: 4-bit codes and a scale), prunes every row that provably
//!   fails that block's threshold, checks the survivors on every block and
//!   re-scores them in f32: it returns every template whose exact
//!   scores pass, up to `top_k`, in exact order, with the f32 scan's scores;
//!   other candidates only where fewer pass (see the guarantee in
//!   `passing.rs`). Reported as [`SearchMode::Ann`], since its list beyond
//!   the passing rows is not the exact top-k.
//! * [`Strategy::Hnsw`]: what [`SearchMode::Ann`] runs for the other policies
//!   (`mean`, `k_of_n` with fewer blocks). The graph proposes
//!   `max(ef, top_k)` rows, plus the graph's orphans and the rows not yet in
//!   the graph; all are re-scored in f32 and the exact scores rank them.
//! * [`Strategy::F32Scan`] and [`Strategy::SketchPrefilter`]: the plain scan
//!   and the 1-bit sign-sketch prefilter, for comparison (benches, tests).
//!
//! [`SearchMode::Auto`] runs an approximate strategy when the gallery holds
//! at least [`IndexPolicy::auto_ann_min_rows`] live rows (default
//! [`AUTO_ANN_MIN_ROWS`]) and the query is not restricted to one user: the
//! passing scan when the policy allows it, else the graph if its index is
//! ready; otherwise the quantised scan.
//!
//! # Concurrency
//!
//! Inserting while searching is safe: the quantised copy and the graph sit
//! behind `RwLock`s (`hnsw_rs` does not support inserting during a search);
//! an insert appends to both under the write lock after the gallery commits,
//! and a search that runs in between scans the not-yet-copied rows in f32.
//!
//! # Index life cycle
//!
//! At open, when index files exist or the gallery holds at least
//! [`IndexPolicy::build_min_rows`] live rows, a background thread loads the
//! saved index or, if it is missing, stale or damaged, rebuilds it in
//! parallel from the gallery and saves it. Until it is ready, searches that
//! would run the graph run the quantised scan and report
//! [`SearchMode::Exact`]. The passing scan needs no index. Deletions are
//! filtered at once; [`Gallery::rebuild_index_if_needed`] rebuilds when
//! tombstones pile up.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ann::{AnnIndex, AnnParams, IndexOrigin};
use super::passing;
use super::quantized::{self, QuantStore};
use super::{exact, Candidate, SearchMode, SearchOutcome, SearchQuery};
use crate::error::GalleryError;
use crate::storage::format::STATE_LIVE;
use crate::storage::gallery::Snapshot;
use crate::storage::Gallery;
use crate::template::Template;

/// Live rows from which [`SearchMode::Auto`] uses an approximate strategy.
/// For the graph index, measured on isotropic data at the smallest `ef` that
/// missed no mate: the quantised scan was 1.37 times faster than the graph at
/// 20k templates, the graph 1.37 times faster at 100k; the ratio interpolates
/// to 1 near 45k (see `BENCHMARKS.md`, "1:N at scale"). The passing scan was
/// 33 times faster than the quantised scan at 100k and 23 times at 1M (not
/// measured below 100k); below this size the quantised scan's exhaustive
/// exact top-k costs little (about 1.4 ms at 20k), so `Auto` keeps it there.
pub const AUTO_ANN_MIN_ROWS: usize = 50_000;

/// A concrete search strategy (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every live row scored in f32.
    F32Scan,
    /// The i8 copy scanned with an error bound, candidates re-scored in f32:
    /// the same result as `F32Scan`.
    QuantisedScan,
    /// The `rescore` rows nearest in sign-sketch Hamming distance, re-scored
    /// in f32 (approximate).
    SketchPrefilter {
        /// Rows re-scored in f32.
        rescore: usize,
    },
    /// One block per row scanned from the block-major 4-bit array, rows that
    /// provably fail its threshold pruned, survivors checked on every block
    /// and re-scored in f32: every passing row, up to `top_k`, in exact order;
    /// other candidates best effort. Serves `all_thresholds` and `k_of_n`
    /// with `k` = blocks; for other policies it runs `QuantisedScan`.
    PassingScan,
    /// The graph index with this `ef`, proposals re-scored in f32
    /// (approximate). Falls back to `QuantisedScan` while no index is ready.
    Hnsw {
        /// Candidates explored.
        ef: usize,
    },
}

/// When the graph index is loaded or built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPolicy {
    /// Load or build the index in the background at open.
    pub at_open: bool,
    /// Without saved index files, build at open only from this many live rows
    /// (below it, [`SearchMode::Auto`] does not use the index; an
    /// [`SearchMode::Ann`] search that runs the graph starts a build on demand).
    pub build_min_rows: usize,
    /// Graph parameters for builds.
    pub params: AnnParams,
    /// Live rows from which [`SearchMode::Auto`] uses the passing scan, or a
    /// ready index for policies the passing scan cannot serve.
    pub auto_ann_min_rows: usize,
}

impl Default for IndexPolicy {
    /// At open, from [`AUTO_ANN_MIN_ROWS`] rows, default parameters.
    fn default() -> Self {
        IndexPolicy {
            at_open: true,
            build_min_rows: AUTO_ANN_MIN_ROWS,
            params: AnnParams::default(),
            auto_ann_min_rows: AUTO_ANN_MIN_ROWS,
        }
    }
}

/// Where the graph index stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexState {
    /// No index and none being built.
    Absent,
    /// Being loaded or built in the background.
    Building,
    /// Ready: ANN searches use it.
    Ready,
    /// The last build failed (the message says why); searches run exact.
    Failed(String),
}

/// A report on the graph index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    /// Where it stands.
    pub state: IndexState,
    /// How the current index came to be, if there is one.
    pub origin: Option<IndexOrigin>,
    /// Gallery rows the graph covers (later rows are scanned exactly).
    pub rows: u64,
    /// Points in the graph.
    pub points: usize,
    /// Points whose row has been deleted since (filtered out of results).
    pub tombstones: usize,
    /// Points unreachable by the graph search (scanned exactly).
    pub orphans: usize,
    /// Rows added since the index was last saved or loaded.
    pub unsaved_rows: u64,
    /// Estimated memory held by the graph, in bytes.
    pub estimated_bytes: usize,
    /// Why saved index files were not used at the last open, if they were not.
    pub refused: Option<String>,
}

struct Status {
    state: IndexState,
    refused: Option<String>,
}

struct AnnShared {
    dir: std::path::PathBuf,
    index: RwLock<Option<AnnIndex>>,
    status: Mutex<Status>,
    changed: Condvar,
    cancel: AtomicBool,
    params: Mutex<AnnParams>,
    auto_ann_min_rows: usize,
}

impl AnnShared {
    fn set_state(&self, state: IndexState) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.state = state;
        self.changed.notify_all();
    }

    fn params(&self) -> AnnParams {
        *self.params.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the saved index or builds one; installs it; saves a new build.
    fn load_or_build(&self, snap: &Snapshot, try_load: bool) {
        let params = self.params();
        if try_load {
            match AnnIndex::load(&self.dir, snap, params) {
                Ok(index) => {
                    self.install(index);
                    return;
                }
                Err(reason) => {
                    let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    s.refused = Some(reason);
                }
            }
        }
        let cancel = || self.cancel.load(Ordering::Relaxed);
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            AnnIndex::build(snap, params, &cancel)
        }));
        match built {
            Ok(Ok(mut index)) => {
                // A failed save leaves the index usable; the next open rebuilds.
                let _ = index.save(&self.dir, snap);
                self.install(index);
            }
            Ok(Err(_cancelled)) => self.set_state(IndexState::Absent),
            Err(_) => self.set_state(IndexState::Failed("index build panicked".into())),
        }
    }

    fn install(&self, index: AnnIndex) {
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Some(index);
        self.set_state(IndexState::Ready);
    }
}

/// The accelerators of one gallery (a field of [`Gallery`]).
pub(crate) struct Accel {
    quant: Arc<RwLock<QuantStore>>,
    deriving: Mutex<Option<JoinHandle<()>>>,
    ann: Arc<AnnShared>,
    builder: Mutex<Option<JoinHandle<()>>>,
}

impl Accel {
    /// Derives the quantised copy of `snap` and, per `policy`, starts loading
    /// or building the graph index in the background.
    pub(crate) fn open(dir: &Path, snap: Arc<Snapshot>, live: usize, policy: IndexPolicy) -> Accel {
        let mut store = QuantStore::new(snap.layout);
        store.derived = snap.count == 0;
        let quant = Arc::new(RwLock::new(store));
        let deriving = if snap.count == 0 {
            None
        } else {
            let (quant, snap) = (quant.clone(), snap.clone());
            std::thread::Builder::new()
                .name("palmlink-quantise".into())
                .spawn(move || {
                    // The lead block first: the passing scan needs only it.
                    let lead = QuantStore::lead_only(&snap);
                    *quant.write().unwrap_or_else(|p| p.into_inner()) = lead;
                    let part = QuantStore::derive_row_major(&snap);
                    quant
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .install(part);
                })
                .ok()
        };
        let accel = Accel {
            quant,
            deriving: Mutex::new(deriving),
            ann: Arc::new(AnnShared {
                dir: dir.to_path_buf(),
                index: RwLock::new(None),
                status: Mutex::new(Status {
                    state: IndexState::Absent,
                    refused: None,
                }),
                changed: Condvar::new(),
                cancel: AtomicBool::new(false),
                params: Mutex::new(policy.params),
                auto_ann_min_rows: policy.auto_ann_min_rows,
            }),
            builder: Mutex::new(None),
        };
        let saved = dir.join(super::ann::META_FILE).exists();
        if policy.at_open && (saved || live >= policy.build_min_rows) {
            accel.start(snap, saved);
        }
        accel
    }

    /// Starts a background load-or-build unless one is running.
    fn start(&self, snap: Arc<Snapshot>, try_load: bool) {
        let mut builder = self.builder.lock().unwrap_or_else(|p| p.into_inner());
        if builder.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = builder.take() {
            let _ = h.join();
        }
        self.ann.set_state(IndexState::Building);
        let shared = self.ann.clone();
        let spawned = std::thread::Builder::new()
            .name("palmlink-index".into())
            .spawn(move || shared.load_or_build(&snap, try_load));
        match spawned {
            Ok(h) => *builder = Some(h),
            Err(e) => self
                .ann
                .set_state(IndexState::Failed(format!("cannot start a thread: {e}"))),
        }
    }

    /// Brings the copies up to date with a newly committed snapshot.
    pub(crate) fn on_insert(&self, snap: &Snapshot) {
        {
            let mut store = self.quant.write().unwrap_or_else(|p| p.into_inner());
            if store.derived {
                store.catch_up(snap);
            }
        }
        if let Some(index) = self
            .ann
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            index.catch_up(snap);
        }
    }
}

impl Drop for Accel {
    fn drop(&mut self) {
        self.ann.cancel.store(true, Ordering::Relaxed);
        if let Some(h) = self
            .deriving
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        if let Some(h) = self
            .builder
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }
}

/// The graph search: proposals, orphans and uncovered rows, re-scored.
fn ann_search(
    gallery: &Gallery,
    snap: &Snapshot,
    index: &AnnIndex,
    probe: &Template,
    query: &SearchQuery,
    ef: usize,
) -> Vec<Candidate> {
    let keep = |id: usize| {
        (id as u64) < snap.count && quantized::admissible(gallery, snap, query, id as u64)
    };
    let knn = ef.max(query.top_k);
    let mut rows = index.propose(probe.as_slice(), knn, ef, &keep);
    rows.extend(index.orphans.iter().copied().filter(|&r| keep(r as usize)));
    rows.sort_unstable();
    rows.dedup();
    let mut top = quantized::rescore(snap, probe, query.top_k, rows);
    if index.rows < snap.count {
        top = top.merge(exact::scan_range(
            gallery,
            snap,
            probe,
            query,
            index.rows..snap.count,
        ));
    }
    quantized::finish(snap, probe, query, top)
}

impl Gallery {
    /// Runs one search with a chosen [`Strategy`] (validation as
    /// [`Gallery::search`]). `mode` in the outcome is `Ann` when an
    /// approximate strategy ran, `Exact` otherwise.
    pub fn search_with(
        &self,
        probe: &Template,
        query: &SearchQuery,
        strategy: Strategy,
    ) -> Result<SearchOutcome, GalleryError> {
        if probe.layout() != self.layout() {
            return Err(GalleryError::LayoutMismatch {
                expected: self.layout(),
                actual: probe.layout(),
            });
        }
        query.validate(self.layout())?;
        let snap = self.snapshot();
        let accel = self.accel();
        let (candidates, mode) = match strategy {
            Strategy::F32Scan => (exact::search(self, &snap, probe, query), SearchMode::Exact),
            Strategy::QuantisedScan => {
                let store = accel.quant.read().unwrap_or_else(|p| p.into_inner());
                (
                    quantized::search(self, &snap, &store, probe, query),
                    SearchMode::Exact,
                )
            }
            Strategy::PassingScan => {
                if !passing::serves(&query.settings) {
                    return self.search_with(probe, query, Strategy::QuantisedScan);
                }
                let store = accel.quant.read().unwrap_or_else(|p| p.into_inner());
                (
                    passing::search(self, &snap, &store, probe, query),
                    SearchMode::Ann,
                )
            }
            Strategy::SketchPrefilter { rescore } => {
                let store = accel.quant.read().unwrap_or_else(|p| p.into_inner());
                (
                    quantized::sketch_search(self, &snap, &store, probe, query, rescore),
                    SearchMode::Ann,
                )
            }
            Strategy::Hnsw { ef } => {
                let index = accel.ann.index.read().unwrap_or_else(|p| p.into_inner());
                match index.as_ref() {
                    Some(index) => (
                        ann_search(self, &snap, index, probe, query, ef),
                        SearchMode::Ann,
                    ),
                    None => {
                        drop(index);
                        if accel
                            .ann
                            .status
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .state
                            == IndexState::Absent
                        {
                            accel.start(snap.clone(), false);
                        }
                        return self.search_with(probe, query, Strategy::QuantisedScan);
                    }
                }
            }
        };
        Ok(SearchOutcome {
            candidates,
            mode,
            gallery_size: self.live_count(),
        })
    }

    /// The strategy a query's mode selects (see the module docs).
    pub(crate) fn strategy_for(&self, query: &SearchQuery) -> Strategy {
        let ann = if passing::serves(&query.settings) {
            Strategy::PassingScan
        } else {
            Strategy::Hnsw {
                ef: self.accel().ann.params().ef_search,
            }
        };
        match query.mode {
            SearchMode::Exact => Strategy::QuantisedScan,
            SearchMode::Ann => ann,
            SearchMode::Auto => {
                let ready = ann == Strategy::PassingScan
                    || self
                        .accel()
                        .ann
                        .index
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some();
                if ready
                    && self.live_count() >= self.accel().ann.auto_ann_min_rows
                    && query.filter.user_key.is_none()
                {
                    ann
                } else {
                    Strategy::QuantisedScan
                }
            }
        }
    }

    /// A report on the graph index.
    pub fn index_info(&self) -> IndexInfo {
        let ann = &self.accel().ann;
        let snap = self.snapshot();
        let (state, refused) = {
            let s = ann.status.lock().unwrap_or_else(|p| p.into_inner());
            (s.state.clone(), s.refused.clone())
        };
        let index = ann.index.read().unwrap_or_else(|p| p.into_inner());
        match index.as_ref() {
            None => IndexInfo {
                state,
                origin: None,
                rows: 0,
                points: 0,
                tombstones: 0,
                orphans: 0,
                unsaved_rows: 0,
                estimated_bytes: 0,
                refused,
            },
            Some(ix) => {
                let live = (0..ix.rows.min(snap.count))
                    .filter(|&r| snap.state(r) == STATE_LIVE)
                    .count();
                IndexInfo {
                    state,
                    origin: Some(ix.origin),
                    rows: ix.rows,
                    points: ix.points,
                    tombstones: ix.points.saturating_sub(live),
                    orphans: ix.orphans.len(),
                    unsaved_rows: ix.unsaved,
                    estimated_bytes: ix.estimated_bytes(),
                    refused,
                }
            }
        }
    }

    /// Waits until no index build is running, at most `timeout`; true if an
    /// index is then ready.
    pub fn wait_for_index(&self, timeout: Duration) -> bool {
        let ann = &self.accel().ann;
        let deadline = Instant::now() + timeout;
        let mut s = ann.status.lock().unwrap_or_else(|p| p.into_inner());
        while s.state == IndexState::Building {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = ann
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.state == IndexState::Ready
    }

    /// Starts building the index in the background (from the gallery, not
    /// from saved files) unless a build is running.
    pub fn build_index_in_background(&self) {
        self.accel().start(self.snapshot(), false);
    }

    /// Rebuilds the index now, in parallel on the calling thread and the
    /// rayon pool, installs it and saves it. Searches keep using the old
    /// index meanwhile; inserts made during the build are added before the
    /// new index is installed.
    pub fn rebuild_index(&self) -> Result<IndexInfo, GalleryError> {
        let ann = &self.accel().ann;
        let snap = self.snapshot();
        let never = || false;
        let mut index = AnnIndex::build(&snap, ann.params(), &never)
            .map_err(|_| GalleryError::InvalidQuery("index build cancelled".into()))?;
        index.save(self.dir(), &snap)?;
        {
            let mut slot = ann.index.write().unwrap_or_else(|p| p.into_inner());
            index.catch_up(&self.snapshot());
            *slot = Some(index);
        }
        ann.set_state(IndexState::Ready);
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

    /// Saves the current index beside the gallery (`hnsw.*`), so the next
    /// open loads it instead of rebuilding. `Ok(false)` if there is no index.
    pub fn save_index(&self) -> Result<bool, GalleryError> {
        let ann = &self.accel().ann;
        let snap = self.snapshot();
        let mut slot = ann.index.write().unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            None => Ok(false),
            Some(index) => {
                index.save(self.dir(), &snap)?;
                index.find_orphans();
                Ok(true)
            }
        }
    }

    /// Sets the graph parameters: `ef_search` applies at once, the others to
    /// the next build.
    pub fn set_ann_params(&self, params: AnnParams) {
        *self
            .accel()
            .ann
            .params
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = params;
    }

    /// The graph parameters in force.
    pub fn ann_params(&self) -> AnnParams {
        self.accel().ann.params()
    }

    /// Rows the quantised copy covers (it is derived in the background after
    /// open; rows it does not cover are scanned in f32).
    pub fn quantised_rows(&self) -> u64 {
        self.accel()
            .quant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rows() as u64
    }

    /// Rows the lead-block array of the passing scan covers (derived first
    /// after open, before the rest of the quantised copy).
    pub fn passing_rows(&self) -> u64 {
        self.accel()
            .quant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lead_rows() as u64
    }

    /// Heap bytes held by the quantised copy (i8 values, scales, sketches, and
    /// the lead block's values and scales again, block-major).
    pub fn quantised_bytes(&self) -> usize {
        self.accel()
            .quant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, MatchSettings, PalmSide, RecordIds};

    fn template(seed: u64) -> Template {
        let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        let values: Vec<f32> = (0..Layout::DEFAULT.len())
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect();
        Template::from_f32(Layout::DEFAULT, &values).unwrap()
    }

    /// A row the graph cannot return is found only through the orphan list:
    /// without it the ANN search misses the row, with it the row is found.
    #[test]
    fn orphans_are_scanned_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let policy = IndexPolicy {
            at_open: false,
            ..IndexPolicy::default()
        };
        let g = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
        drop(g);
        let g = Gallery::open_with(dir.path(), policy).unwrap();
        let items: Vec<(RecordIds, Template)> = (0..400)
            .map(|i| {
                let ids = RecordIds {
                    feature_id: i,
                    user_key: i,
                    palm: PalmSide::Left,
                };
                (ids, template(i as u64))
            })
            .collect();
        let refs: Vec<(RecordIds, &Template)> = items.iter().map(|(i, t)| (*i, t)).collect();
        g.insert_batch(&refs).unwrap();
        let snap = g.snapshot();
        let hidden = 123u64;
        let rows: Vec<u64> = (0..snap.count).filter(|&r| r != hidden).collect();
        let never = || false;
        let mut index = AnnIndex::build_rows(&snap, rows, AnnParams::default(), &never).unwrap();
        index.orphans.clear();
        let query = SearchQuery::new(1, MatchSettings::default_for(Layout::DEFAULT));
        let probe = &items[hidden as usize].1;
        let missed = ann_search(&g, &snap, &index, probe, &query, 64);
        assert_ne!(
            missed[0].row.0, hidden,
            "the hidden row is not in the graph"
        );
        index.orphans.push(hidden);
        let found = ann_search(&g, &snap, &index, probe, &query, 64);
        assert_eq!(found[0].row.0, hidden);
        // A real build: every orphan it reports is still found.
        let mut built = AnnIndex::build(&snap, AnnParams::default(), &never).unwrap();
        built.find_orphans();
        assert!(built.orphans.len() < 400);
        for &o in &built.orphans {
            let hit = ann_search(&g, &snap, &built, &items[o as usize].1, &query, 8);
            assert_eq!(hit[0].row.0, o);
        }
    }
}
