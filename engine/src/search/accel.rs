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
//! Inserting while searching is safe: the quantised copy sits behind an
//! `RwLock` (an insert appends to it under the write lock after the gallery
//! commits, and a search that runs in between scans the not-yet-copied rows
//! in f32); the graph a search walks is read-only, and a new one is swapped
//! in whole.
//!
//! # Index life cycle
//!
//! At open, when index files exist or the gallery holds at least
//! [`IndexPolicy::build_min_rows`] live rows, a background thread maps the
//! saved flat graph (`hnsw.flat`) or, if it is missing, stale or damaged,
//! flattens the saved builder graph again, or rebuilds the graph in parallel
//! from the gallery, and saves it. Until it is ready, searches that would run
//! the graph run the quantised scan and report [`SearchMode::Exact`]. The
//! passing scan needs no index.
//!
//! Rows inserted after the graph was flattened are scanned exactly with every
//! graph search (the "tail"). Once the tail holds
//! [`IndexPolicy::fold_rows`] rows, a background thread loads the saved
//! builder graph, inserts the tail, flattens and saves it, and swaps it in;
//! searches run on the old graph and tail meanwhile. Deletions are filtered
//! at once; once more than [`IndexPolicy::rebuild_deleted_percent`] of the
//! graph's points are deleted rows, the graph is rebuilt from the gallery in
//! the background ([`Gallery::rebuild_index_if_needed`] does so on demand).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ann::{AnnIndex, AnnParams, Builder, IndexOrigin, RowFilter};
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
    /// Rows past the graph (scanned exactly with every graph search) from
    /// which a background extension folds them into the graph.
    pub fold_rows: usize,
    /// Share of the graph's points, in percent, whose rows may be deleted
    /// (walked through by searches, never returned) before the graph is
    /// rebuilt from the gallery in the background.
    pub rebuild_deleted_percent: u32,
}

/// Default [`IndexPolicy::fold_rows`]: scanning 4,096 rows exactly adds
/// about 10 MB of f32 reads to a graph search (under a millisecond); folding
/// them into a 1M graph costs a load of the builder graph and 4,096 inserts.
pub const FOLD_ROWS: usize = 4096;

impl Default for IndexPolicy {
    /// At open, from [`AUTO_ANN_MIN_ROWS`] rows, default parameters.
    fn default() -> Self {
        IndexPolicy {
            at_open: true,
            build_min_rows: AUTO_ANN_MIN_ROWS,
            params: AnnParams::default(),
            auto_ann_min_rows: AUTO_ANN_MIN_ROWS,
            fold_rows: FOLD_ROWS,
            rebuild_deleted_percent: 20,
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
    /// Rows added since the graph was flattened: scanned exactly until the
    /// next extension folds them in.
    pub tail_rows: u64,
    /// Bytes of the flat graph (mapped from its file).
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
    fold_rows: u64,
    rebuild_deleted_percent: u32,
    /// Held while an index is made: one builder writes the files at a time.
    making: Mutex<()>,
}

/// What a background index thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    /// Map the saved flat graph; else flatten the saved builder graph; else
    /// build from the gallery.
    Open,
    /// Build from the gallery.
    Build,
    /// Fold the tail into the saved builder graph (else build), flatten.
    Extend,
}

/// The outcome of making an index.
enum Made {
    Index(Box<AnnIndex>),
    Cancelled,
    Failed(String),
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

    fn refuse(&self, reason: String) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.refused = Some(match s.refused.take() {
            Some(earlier) if !earlier.is_empty() => format!("{earlier}; {reason}"),
            _ => reason,
        });
    }

    fn has_index(&self) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Runs `job` for `snap` and installs what it makes.
    fn run(&self, snap: &Snapshot, job: Job) {
        let mut job = job;
        if job == Job::Open {
            match AnnIndex::load(&self.dir, snap) {
                Ok(index) => {
                    let tail = snap.count - index.rows;
                    self.install(index);
                    if tail < self.fold_rows {
                        return;
                    }
                    self.set_state(IndexState::Building);
                    job = Job::Extend;
                }
                Err(reason) => self.refuse(reason),
            }
        }
        let cancel = || self.cancel.load(Ordering::Relaxed);
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.make(snap, job != Job::Build, &cancel)
        }))
        .unwrap_or_else(|_| Made::Failed("index build panicked".into()));
        match made {
            Made::Index(index) => self.install(*index),
            Made::Cancelled | Made::Failed(_) if self.has_index() => {
                self.set_state(IndexState::Ready)
            }
            Made::Cancelled => self.set_state(IndexState::Absent),
            Made::Failed(why) => self.set_state(IndexState::Failed(why)),
        }
    }

    /// An index of `snap`: the saved builder graph extended with the rows
    /// added since (when `from_files` and it is usable), else a graph built
    /// from the gallery; saved in both forms (a failed save leaves the index
    /// usable, and the next open rebuilds).
    fn make(&self, snap: &Snapshot, from_files: bool, cancel: &dyn Fn() -> bool) -> Made {
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        let params = self.params();
        let loaded = if from_files {
            Builder::load(&self.dir, snap, params)
                .map_err(|reason| self.refuse(reason))
                .ok()
        } else {
            None
        };
        let (mut builder, origin) = match loaded {
            Some(b) => (b, IndexOrigin::Loaded),
            None => match Builder::build(snap, params, cancel) {
                Ok(b) => (b, IndexOrigin::Built),
                Err(_) => return Made::Cancelled,
            },
        };
        if builder.extend(snap, cancel).is_err() {
            return Made::Cancelled;
        }
        let _ = builder.save(&self.dir, snap);
        match builder.flatten(&self.dir, snap, origin) {
            Ok(index) => Made::Index(Box::new(index)),
            Err(e) => Made::Failed(e.to_string()),
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
                fold_rows: policy.fold_rows as u64,
                rebuild_deleted_percent: policy.rebuild_deleted_percent,
                making: Mutex::new(()),
            }),
            builder: Mutex::new(None),
        };
        let saved = dir.join(super::flat_graph::FLAT_FILE).exists()
            || dir.join(super::ann::META_FILE).exists();
        if policy.at_open && (saved || live >= policy.build_min_rows) {
            accel.start(snap, if saved { Job::Open } else { Job::Build });
        }
        accel
    }

    /// Starts `job` in the background unless an index thread is running.
    fn start(&self, snap: Arc<Snapshot>, job: Job) {
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
            .spawn(move || shared.run(&snap, job));
        match spawned {
            Ok(h) => *builder = Some(h),
            Err(e) => self
                .ann
                .set_state(IndexState::Failed(format!("cannot start a thread: {e}"))),
        }
    }

    /// Brings the quantised copy up to date with a newly committed snapshot,
    /// and starts folding the graph's tail into it once the tail is long.
    pub(crate) fn on_insert(&self, snap: &Arc<Snapshot>) {
        {
            let mut store = self.quant.write().unwrap_or_else(|p| p.into_inner());
            if store.derived {
                store.catch_up(snap);
            }
        }
        let tail = self
            .ann
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|index| snap.count.saturating_sub(index.rows));
        if tail.is_some_and(|t| t >= self.ann.fold_rows) {
            self.start(snap.clone(), Job::Extend);
        }
    }

    /// Counts a deleted row against the graph and starts a background
    /// rebuild once deleted points exceed the policy's share.
    pub(crate) fn on_delete(&self, snap: &Arc<Snapshot>, row: u64) {
        let rebuild = {
            let slot = self.ann.index.read().unwrap_or_else(|p| p.into_inner());
            slot.as_ref().is_some_and(|index| {
                if row >= index.rows {
                    return false;
                }
                let deleted = index.deleted.fetch_add(1, Ordering::Relaxed) + 1;
                deleted as u64 * 100
                    > index.points as u64 * u64::from(self.ann.rebuild_deleted_percent)
            })
        };
        if rebuild {
            self.start(snap.clone(), Job::Build);
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

/// The rows a graph search may return: committed in its snapshot, live, within the
/// query's filter and undamaged.
struct Admissible<'a> {
    gallery: &'a Gallery,
    snap: &'a Snapshot,
    query: &'a SearchQuery,
}

impl RowFilter for Admissible<'_> {
    fn keep(&self, row: u64) -> bool {
        row < self.snap.count && quantized::admissible(self.gallery, self.snap, self.query, row)
    }

    fn prefetch(&self, row: u64) {
        if row < self.snap.count {
            self.snap.prefetch_record(row);
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
    let admit = Admissible {
        gallery,
        snap,
        query,
    };
    let knn = ef.max(query.top_k);
    let mut rows = index.propose(probe.as_slice(), knn, ef, &admit);
    rows.extend(index.orphans.iter().copied().filter(|&r| admit.keep(r)));
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
                            accel.start(snap.clone(), Job::Build);
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
                tail_rows: 0,
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
                    tail_rows: snap.count.saturating_sub(ix.rows),
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
        self.accel().start(self.snapshot(), Job::Build);
    }

    /// Rebuilds the index now from the gallery, in parallel on the calling
    /// thread and the rayon pool, saves it and installs it. Searches keep
    /// using the old index meanwhile; rows inserted during the build are
    /// scanned exactly until they are folded in.
    pub fn rebuild_index(&self) -> Result<IndexInfo, GalleryError> {
        self.make_index(false)?;
        Ok(self.index_info())
    }

    fn make_index(&self, from_files: bool) -> Result<(), GalleryError> {
        let ann = &self.accel().ann;
        let never = || false;
        match ann.make(&self.snapshot(), from_files, &never) {
            Made::Index(index) => {
                ann.install(*index);
                Ok(())
            }
            Made::Cancelled => Err(GalleryError::InvalidQuery("index build cancelled".into())),
            Made::Failed(why) => Err(GalleryError::io(self.dir(), std::io::Error::other(why))),
        }
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
        let ann = &self.accel().ann;
        let tail = {
            let slot = ann.index.read().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                None => return Ok(false),
                Some(index) => self.snapshot().count.saturating_sub(index.rows),
            }
        };
        if tail > 0 {
            self.make_index(true)?;
        }
        Ok(true)
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
        let mut index = Builder::build_rows(&snap, rows, AnnParams::default(), &never)
            .unwrap()
            .flatten(dir.path(), &snap, IndexOrigin::Built)
            .unwrap();
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
        let built = Builder::build(&snap, AnnParams::default(), &never)
            .unwrap()
            .flatten(dir.path(), &snap, IndexOrigin::Built)
            .unwrap();
        assert!(built.orphans.len() < 400);
        for &o in &built.orphans {
            let hit = ann_search(&g, &snap, &built, &items[o as usize].1, &query, 8);
            assert_eq!(hit[0].row.0, o);
        }
    }
}
