//! The accelerators of one gallery and their life cycle: the compact copy
//! (derived in the background after open, appended to on insert) and the
//! graph index (loaded, built, extended and rebuilt by background jobs), and
//! the policy that says when.
//!
//! # Concurrency
//!
//! Inserting while searching is safe: the compact copy sits behind an
//! `RwLock` (an insert appends to it under the write lock after the row store
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
//! from the gallery, and saves it. A mapped graph serves once its header,
//! links and rows are checked; its keys, most of the file, are checked while
//! it serves, and a damaged one drops it for a rebuild, as any other damage
//! would. Until it is ready, searches that would run
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
//! the background
//! ([`Gallery::rebuild_index_if_needed`](crate::Gallery::rebuild_index_if_needed)
//! does so on demand).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::background;
use super::compact::CompactCopy;
use super::graph::build::{self, Builder, META_FILE};
use super::graph::format::FLAT_FILE;
use super::graph::native::{NativeGraph, Threads};
use super::graph::{self, AnnParams, EarlyCheck, GraphBuilder, GraphIndex, IndexOrigin};
#[cfg(doc)]
use super::query::SearchMode;
use super::strategy::AUTO_ANN_MIN_ROWS;
use crate::error::GalleryError;
use crate::storage::Snapshot;

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
    /// Hold the quantised copy that the exact and passing scans read (796 B
    /// a template in memory, derived after open). Without it those scans read
    /// the f32 rows instead (exact, but about 4x the bytes), `Auto` runs the
    /// graph once it is ready whatever the match policy, and a search by the
    /// graph holds only the graph's file and the records in memory: how a
    /// gallery too large for the copy and the graph together is served.
    pub quantised_copy: bool,
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
            quantised_copy: true,
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
    /// Whether every key of the graph has been checked against its CRC: a
    /// graph mapped from its file serves while its keys are read.
    pub keys_checked: bool,
}

struct Status {
    state: IndexState,
    refused: Option<String>,
    /// A saved graph is being opened: from before its file is mapped until
    /// every key of it is checked (or it is refused). Erasures in the files
    /// meanwhile are recorded for its key check (see `erasing`), and
    /// [`Accelerators::wait`] waits for it.
    opening_saved: bool,
}

/// The graph index's slot and state, shared with its background thread.
struct GraphShared {
    /// The gallery directory, where the index files live.
    dir: std::path::PathBuf,
    index: RwLock<Option<GraphIndex>>,
    status: Mutex<Status>,
    changed: Condvar,
    cancel: AtomicBool,
    params: Mutex<AnnParams>,
    auto_ann_min_rows: usize,
    fold_rows: u64,
    rebuild_deleted_percent: u32,
    /// Held while an index is made: one builder writes the files at a time.
    making: Mutex<()>,
    /// Held while rows are erased from the installed index, and while a new
    /// index is checked for deleted rows and installed, so that no erasure
    /// falls between the two. It holds the rows erased in the saved files
    /// while a saved graph was being mapped and not yet installed: their
    /// zeroed keys are erasures, which the graph's key check must know.
    erasing: Mutex<Vec<u64>>,
    /// Held while the builder's files are replaced or erased in.
    files: Mutex<()>,
    /// The checks of the saved graph's file started as the gallery opened,
    /// until the open of the saved graph takes them.
    early: Mutex<Option<EarlyCheck>>,
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
    Index(Box<GraphIndex>),
    Cancelled,
    Failed(String),
}

impl GraphShared {
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
            self.set_opening_saved(true);
            let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).take();
            match GraphIndex::map(&self.dir, snap, early) {
                Ok(index) => {
                    let tail = snap.count - index.rows;
                    if let Err(e) = self.install(snap, index) {
                        self.set_opening_saved(false);
                        self.set_state(IndexState::Failed(e.to_string()));
                        return;
                    }
                    let checked = self.check_installed_keys(snap);
                    let cancelled = self.cancel.load(Ordering::Relaxed);
                    match checked {
                        Ok(()) if cancelled || tail < self.fold_rows => {
                            self.set_opening_saved(false);
                            return;
                        }
                        Ok(()) => job = Job::Extend,
                        // Made again as if the file had been refused at once.
                        Err(reason) => self.refuse(reason),
                    }
                    self.set_state(IndexState::Building);
                    self.set_opening_saved(false);
                }
                Err(reason) => {
                    self.refuse(reason);
                    self.set_opening_saved(false);
                }
            }
        }
        let cancel = || self.cancel.load(Ordering::Relaxed);
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.make(snap, job != Job::Build, &cancel)
        }))
        .unwrap_or_else(|_| Made::Failed("index build panicked".into()));
        let made = match made {
            Made::Index(index) => match self.install(snap, *index) {
                Ok(()) => return,
                Err(e) => Made::Failed(e.to_string()),
            },
            other => other,
        };
        match made {
            Made::Index(_) => unreachable!("installed above"),
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
        if params.builder == GraphBuilder::Native {
            return self.make_native(snap, params, from_files, cancel);
        }
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
        {
            let _files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            let _ = builder.save(&self.dir, snap);
        }
        match builder.flatten(&self.dir, snap, origin) {
            Ok(index) => Made::Index(Box::new(index)),
            Err(e) => Made::Failed(e.to_string()),
        }
    }

    /// [`GraphShared::make`] by the native builder: the installed graph
    /// extended with the rows added since (when `from_files` and the native
    /// builder made it with these parameters), else a graph built from the
    /// gallery; written as `hnsw.flat` (the builder's own form), and the
    /// files of `hnsw_rs` removed, so no stale copy of the keys remains.
    fn make_native(
        &self,
        snap: &Snapshot,
        params: AnnParams,
        from_files: bool,
        cancel: &dyn Fn() -> bool,
    ) -> Made {
        let live_rows = |from: u64| (from..snap.count).filter(|&r| snap.is_live(r));
        let extended = if from_files {
            let installed = self.index.read().unwrap_or_else(|p| p.into_inner());
            installed.as_ref().and_then(|index| {
                let more = live_rows(index.rows).count();
                NativeGraph::from_flat(&index.flat, params, more)
            })
        } else {
            None
        };
        let made = match extended {
            Some(mut graph) => graph
                .extend(snap, Threads::Parallel, cancel)
                .map(|()| (graph, IndexOrigin::Loaded)),
            None => {
                let rows: Vec<u64> = live_rows(0).collect();
                NativeGraph::build(snap, &rows, params, Threads::Parallel, cancel)
                    .map(|graph| (graph, IndexOrigin::Built))
            }
        };
        let Ok((graph, origin)) = made else {
            return Made::Cancelled;
        };
        let _files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = build::remove_builder_files(&self.dir) {
            return Made::Failed(e.to_string());
        }
        match graph.save(&self.dir, snap, origin) {
            Ok(index) => Made::Index(Box::new(index)),
            Err(e) => Made::Failed(e.to_string()),
        }
    }

    fn set_opening_saved(&self, opening: bool) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.opening_saved = opening;
        self.changed.notify_all();
    }

    /// Checks the keys of the graph just mapped and installed
    /// ([`GraphIndex::map`]), a slice at a time under the read lock: searches
    /// run on the graph meanwhile (a key only steers the walk, and every
    /// candidate is scored on its row), and an erasure waits for one slice at
    /// most. Holds `making`, so that no extension copies a key before it is
    /// checked. Damage uninstalls the graph (its file overwritten with
    /// zeros) and is the reason returned. Stops early, leaving the keys
    /// pending, when cancelled or when another index was installed.
    fn check_installed_keys(&self, snap: &Snapshot) -> Result<(), String> {
        /// Points per slice: about 160 MB of keys at the default layout.
        const SLICE: usize = 1 << 18;
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        let mut from = 0;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let installed = self.index.read().unwrap_or_else(|p| p.into_inner());
            let Some(index) = installed.as_ref().filter(|i| i.keys_pending.is_some()) else {
                return Ok(());
            };
            if from >= index.points {
                break;
            }
            let checked = index.check_keys(from..from + SLICE, snap);
            drop(installed);
            if let Err(why) = checked {
                let _erasing = self.erasing.lock().unwrap_or_else(|p| p.into_inner());
                let mut slot = self.index.write().unwrap_or_else(|p| p.into_inner());
                if let Some(index) = slot.take_if(|i| i.keys_pending.is_some()) {
                    index.discard();
                }
                return Err(why);
            }
            from += SLICE;
        }
        if let Some(index) = self
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            index.keys_pending = None;
        }
        Ok(())
    }

    /// Installs `index`, after erasing from it (memory and files) the rows
    /// deleted since the rows it was made from were read.
    fn install(&self, snap: &Snapshot, mut index: GraphIndex) -> Result<(), GalleryError> {
        let mut erased_in_files = self.erasing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pending) = &mut index.keys_pending {
            pending.extend(erased_in_files.iter());
        }
        erased_in_files.clear();
        let dead = index.erase_deleted(snap)?;
        if !dead.is_empty() {
            let _files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            build::erase_in_builder_files(&self.dir, &dead)?;
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Some(index);
        self.set_state(IndexState::Ready);
        Ok(())
    }

    /// Erases `rows` (deleted rows) from the installed index, in memory and
    /// in its file, and from the builder's files; with no index installed yet
    /// (one may be loading from the saved flat graph), from the saved flat
    /// graph too, so that no file holds their keys when this returns. Returns
    /// whether the deleted points now exceed the policy's share of the graph's.
    fn erase(&self, rows: &[u64]) -> Result<bool, GalleryError> {
        // An index is installed only under `erasing`: none can appear between the
        // look below and the erasure in the files.
        let mut erased_in_files = self.erasing.lock().unwrap_or_else(|p| p.into_inner());
        let installed = match self
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(index) => Some(index.erase(rows, self.rebuild_deleted_percent)?),
            None => None,
        };
        let _files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match installed {
            Some(rebuild) => {
                build::erase_in_builder_files(&self.dir, rows)?;
                Ok(rebuild)
            }
            None => {
                let mapping = self
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .opening_saved;
                if mapping {
                    erased_in_files.extend(rows);
                }
                graph::erase_in_files(&self.dir, rows)?;
                Ok(false)
            }
        }
    }
}

/// The accelerators of one gallery: what [`Gallery`](crate::Gallery) owns
/// beside its row store.
pub(crate) struct Accelerators {
    compact: Arc<RwLock<CompactCopy>>,
    deriving: Mutex<Option<JoinHandle<()>>>,
    /// [`IndexPolicy::quantised_copy`]: whether `compact` is ever derived.
    quantised_copy: bool,
    graph: Arc<GraphShared>,
    builder: Mutex<Option<JoinHandle<()>>>,
}

impl Accelerators {
    /// Derives the quantised copy of `snap` and, per `policy`, starts loading
    /// or building the graph index in the background; the load takes the
    /// checks of the saved file that `early` started, if any.
    pub(crate) fn open(
        dir: &Path,
        snap: Arc<Snapshot>,
        live: usize,
        policy: IndexPolicy,
        early: Option<EarlyCheck>,
    ) -> Accelerators {
        let mut store = CompactCopy::new(snap.layout);
        // Never derived without the copy: inserts then do not append to it.
        store.derived = policy.quantised_copy && snap.count == 0;
        let compact = Arc::new(RwLock::new(store));
        let deriving = if snap.count == 0 || !policy.quantised_copy {
            None
        } else {
            let (compact, snap) = (compact.clone(), snap.clone());
            std::thread::Builder::new()
                .name("palmlink-quantise".into())
                .spawn(move || {
                    // On the global pool, as searches: they need its result, and a
                    // build running on the background pool must not hold it back.
                    derive(&compact, &snap);
                })
                .ok()
        };
        let accel = Accelerators {
            compact,
            deriving: Mutex::new(deriving),
            quantised_copy: policy.quantised_copy,
            graph: Arc::new(GraphShared {
                dir: dir.to_path_buf(),
                index: RwLock::new(None),
                status: Mutex::new(Status {
                    state: IndexState::Absent,
                    refused: None,
                    opening_saved: false,
                }),
                changed: Condvar::new(),
                cancel: AtomicBool::new(false),
                params: Mutex::new(policy.params),
                auto_ann_min_rows: policy.auto_ann_min_rows,
                fold_rows: policy.fold_rows as u64,
                rebuild_deleted_percent: policy.rebuild_deleted_percent,
                making: Mutex::new(()),
                erasing: Mutex::new(Vec::new()),
                files: Mutex::new(()),
                early: Mutex::new(None),
            }),
            builder: Mutex::new(None),
        };
        let saved = dir.join(FLAT_FILE).exists() || dir.join(META_FILE).exists();
        if policy.at_open && (saved || live >= policy.build_min_rows) {
            if saved {
                // From here on, as the file may be mapped already: an erasure
                // is recorded for the key check (see `erasing`).
                accel.graph.set_opening_saved(true);
                *accel.graph.early.lock().unwrap_or_else(|p| p.into_inner()) = early;
            }
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
        self.graph.set_state(IndexState::Building);
        let shared = self.graph.clone();
        let spawned = std::thread::Builder::new()
            .name("palmlink-index".into())
            .spawn(move || background::run(|| shared.run(&snap, job)));
        match spawned {
            Ok(h) => *builder = Some(h),
            Err(e) => {
                self.graph.set_opening_saved(false);
                self.graph
                    .set_state(IndexState::Failed(format!("cannot start a thread: {e}")));
            }
        }
    }

    /// Brings the quantised copy up to date with a newly committed snapshot,
    /// and starts folding the graph's tail into it once the tail is long.
    pub(crate) fn on_insert(&self, snap: &Arc<Snapshot>) {
        {
            let mut store = self.compact.write().unwrap_or_else(|p| p.into_inner());
            if store.derived {
                store.catch_up(snap);
            }
        }
        let tail = self
            .graph
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|index| snap.count.saturating_sub(index.rows));
        if tail.is_some_and(|t| t >= self.graph.fold_rows) {
            self.start(snap.clone(), Job::Extend);
        }
    }

    /// Erases `rows` (deleted rows: the row store has tombstoned them and
    /// zeroed their vectors) from every accelerator: the compact copy, the
    /// graph in memory and its file, the builder's files. Starts a background
    /// rebuild once deleted points exceed the policy's share of the graph.
    pub(crate) fn erase(&self, snap: &Arc<Snapshot>, rows: &[u64]) -> Result<(), GalleryError> {
        {
            let mut store = self.compact.write().unwrap_or_else(|p| p.into_inner());
            for &row in rows {
                store.erase(row as usize);
            }
        }
        if self.graph.erase(rows)? {
            self.start(snap.clone(), Job::Build);
        }
        Ok(())
    }

    /// The compact copy, read-locked (an insert appends to it under the
    /// write lock after the row store commits).
    pub(crate) fn compact(&self) -> RwLockReadGuard<'_, CompactCopy> {
        self.compact.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The graph index, if one is installed, read-locked (a new one is
    /// swapped in whole under the write lock).
    pub(crate) fn graph(&self) -> RwLockReadGuard<'_, Option<GraphIndex>> {
        self.graph.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a build for a search that asked for the graph while there is
    /// none, unless one is running or the last one failed.
    pub(crate) fn build_on_demand(&self, snap: &Arc<Snapshot>) {
        let absent = self
            .graph
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state
            == IndexState::Absent;
        if absent {
            self.start(snap.clone(), Job::Build);
        }
    }

    /// Starts building the index from the rows of `snap` in the background,
    /// unless a build is running.
    pub(crate) fn build_in_background(&self, snap: Arc<Snapshot>) {
        self.start(snap, Job::Build);
    }

    /// Live rows from which `Auto` searches run an approximate strategy.
    pub(crate) fn auto_ann_min_rows(&self) -> usize {
        self.graph.auto_ann_min_rows
    }

    /// Whether the quantised copy is held (see [`IndexPolicy::quantised_copy`]).
    pub(crate) fn quantised_copy(&self) -> bool {
        self.quantised_copy
    }

    /// The graph parameters in force.
    pub(crate) fn params(&self) -> AnnParams {
        self.graph.params()
    }

    /// Sets the graph parameters: `ef_search` applies at once, the others to
    /// the next build.
    pub(crate) fn set_params(&self, params: AnnParams) {
        *self.graph.params.lock().unwrap_or_else(|p| p.into_inner()) = params;
    }

    /// A report on the graph index against the rows of `snap`.
    pub(crate) fn info(&self, snap: &Snapshot) -> IndexInfo {
        let (state, refused) = {
            let s = self.graph.status.lock().unwrap_or_else(|p| p.into_inner());
            (s.state.clone(), s.refused.clone())
        };
        match self.graph().as_ref() {
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
                keys_checked: false,
            },
            Some(ix) => {
                let live = (0..ix.rows.min(snap.count))
                    .filter(|&r| snap.is_live(r))
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
                    keys_checked: ix.keys_pending.is_none(),
                }
            }
        }
    }

    /// Waits until the compact copy derived after open is in place (returns
    /// at once when it is). The lock is held through the join, so a second
    /// caller waits for the same derivation instead of finding no handle.
    pub(crate) fn wait_derived(&self) {
        let mut deriving = self.deriving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = deriving.take() {
            let _ = h.join();
        }
    }

    /// Waits until no index build is running, at most `timeout`; true if an
    /// index is then ready.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.graph.status.lock().unwrap_or_else(|p| p.into_inner());
        while s.state == IndexState::Building || s.opening_saved {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .graph
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.state == IndexState::Ready
    }

    /// Makes an index of `snap` on the calling thread (and the rayon pool)
    /// and installs it: from the saved builder graph extended with the rows
    /// added since when `from_files` and it is usable, else from the rows.
    pub(crate) fn make_now(&self, snap: &Snapshot, from_files: bool) -> Result<(), GalleryError> {
        let never = || false;
        match self.graph.make(snap, from_files, &never) {
            Made::Index(index) => self.graph.install(snap, *index),
            Made::Cancelled => Err(GalleryError::InvalidQuery("index build cancelled".into())),
            Made::Failed(why) => Err(GalleryError::io(
                &self.graph.dir,
                std::io::Error::other(why),
            )),
        }
    }
}

impl Drop for Accelerators {
    fn drop(&mut self) {
        self.graph.cancel.store(true, Ordering::Relaxed);
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

/// Derives the compact copy of `snap` into `compact`: the lead block first (the
/// passing scan needs only it), then the rest. A row erased while a part was
/// derived may have been read before: each part is installed, then the deleted
/// rows erased from it, under one write lock (an erasure marks its rows deleted
/// before it takes that lock).
fn derive(compact: &RwLock<CompactCopy>, snap: &Snapshot) {
    let lead = CompactCopy::lead_only(snap);
    {
        let mut store = compact.write().unwrap_or_else(|p| p.into_inner());
        *store = lead;
        store.erase_deleted(snap);
    }
    let part = CompactCopy::derive_row_major(snap);
    let mut store = compact.write().unwrap_or_else(|p| p.into_inner());
    store.install(part);
    store.erase_deleted(snap);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::{insert_all, store, uniform_templates};
    use crate::template::Layout;

    /// Opens the saved graph of a 200-row gallery after row 7 was erased in
    /// its file, as a delete does while no graph is installed; `while_mapping`
    /// puts that erasure where `run` maps the file (after it began, before
    /// the graph is installed). The open-time snapshot still has row 7 live.
    fn open_after_erasure(while_mapping: bool) -> IndexInfo {
        let dir = tempfile::tempdir().unwrap();
        let rows = store(dir.path(), Layout::DEFAULT);
        insert_all(&rows, 0, &uniform_templates(200, 3), true);
        let snap = rows.snapshot();
        let all: Vec<u64> = (0..200).collect();
        let params = AnnParams {
            builder: GraphBuilder::Native,
            ..AnnParams::default()
        };
        NativeGraph::build(&snap, &all, params, Threads::Sequential, &|| false)
            .unwrap()
            .save(dir.path(), &snap, IndexOrigin::Built)
            .unwrap();
        let policy = IndexPolicy {
            at_open: false,
            quantised_copy: false,
            ..IndexPolicy::default()
        };
        let accel = Accelerators::open(dir.path(), snap.clone(), 200, policy, None);
        accel.graph.set_opening_saved(while_mapping);
        accel.graph.erase(&[7]).unwrap();
        accel.graph.run(&snap, Job::Open);
        accel.info(&snap)
    }

    /// A key erased while the saved graph was being mapped is an erasure to
    /// the key check, so the graph serves; the same zeroed key met without
    /// that record is damage, and the graph is rebuilt.
    #[test]
    fn an_erasure_while_the_saved_graph_is_mapped_is_not_damage() {
        let info = open_after_erasure(true);
        assert_eq!(
            (info.origin, info.refused, info.keys_checked),
            (Some(IndexOrigin::Loaded), None, true)
        );
        let info = open_after_erasure(false);
        assert_eq!(info.origin, Some(IndexOrigin::Built));
        assert_eq!(
            info.refused.as_deref(),
            Some("hnsw.flat: the key of live row 7 is erased")
        );
    }
}
