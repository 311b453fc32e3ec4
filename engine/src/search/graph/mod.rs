//! The approximate index: an HNSW graph over compact i8 keys, built by this
//! crate's parallel builder (`native.rs`, the default) or by `hnsw_rs`
//! (`build.rs`, the reference the native graph is tested against), and
//! searched in a flat, memory-mapped form (`format.rs`, searched by
//! `search.rs`).
//!
//! # Keys and distance
//!
//! A row's key is its normalised blocks concatenated and rounded to i8 at a
//! fixed scale ([`KEY_SCALE`]), so the key's inner product ranks like the mean
//! block score. The distance is `len·127² - key·key'` (never negative, exact in
//! integers, one fused AVX-512 kernel). The index only proposes: the
//! proposals nearest by key are re-scored exactly in f32 and the exact scores
//! decide.
//! i8 keys hold the graph's copy of the data at 640 bytes a template instead
//! of 2560, and need no `anndists` SIMD feature.
//!
//! # Build, search, extension
//!
//! The native builder (`native.rs`) builds in parallel into fixed-size
//! lists and writes them straight into the flat form; an extension reads
//! that form back and inserts the rows added since. With `hnsw_rs`, a
//! `Builder` (`build.rs`) holds its graph while it is built in parallel (or
//! loaded and extended with rows added since); it is then flattened into an
//! [`GraphIndex`] and dropped. Searches walk the flat copy: plain arrays of
//! keys and `u32` links, a visited bit set, no locks or reference
//! counts. Rows added after the flat copy was made are scanned exactly until
//! the next extension folds them in (see `lifecycle.rs` for when).
//!
//! # What it guarantees, and what it does not
//!
//! * Deleted rows are never returned: the graph search filters on the row's
//!   state word, and the re-score re-checks it.
//! * A deleted row's key is erased, in memory and in every file (see
//!   `format.rs`, "Erasure", and `build.rs` for the builder's files).
//! * Rows inserted into the gallery after the graph was flattened are scanned
//!   exactly: every search covers the rows past the graph's in f32.
//! * Graph points that the search cannot reach from the entry point (an
//!   insertion can leave a point without in-edges) are found when the graph
//!   is flattened or written, by a walk of the base layer from the top
//!   layer, and are scanned exactly on every search ("orphans"); the native
//!   builder first links such points back in.
//! * Otherwise a mate can be missed: the miss rate is measured in the tests
//!   and benches against the exact scan.
//!
//! # Persistence
//!
//! `<gallery>/hnsw.flat` is the search form (see `format.rs`, searched by `search.rs`): mapped at
//! open after its checksums, its records digest and its structure are
//! checked, so an open costs one read of the file, not a rebuild of the
//! graph; it is also what the native builder extends. A file of an earlier
//! version is refused (the reason names both versions) and the graph is
//! flattened again or rebuilt. With `hnsw_rs` as the builder,
//! `<gallery>/hnsw.hnsw.graph` and `<gallery>/hnsw.hnsw.data` are its
//! graph, written by `hnsw_rs`; `<gallery>/hnsw.meta`
//! (written last) records the rows covered, a digest of those rows' records
//! (so a gallery that was replaced or rewritten is detected), the lengths
//! and CRC-32s of both files, and its own CRC. They are only read to extend
//! the graph, or to flatten it again when `hnsw.flat` is missing or damaged
//! (as for a gallery saved before the flat form existed), and only when all
//! of these hold; otherwise the graph is rebuilt from the gallery.
//! `hnsw_rs` asserts or exits on malformed input, so the checks come first
//! and the load itself runs under `catch_unwind`.

pub(crate) mod build;
pub(crate) mod format;
pub(crate) mod native;
#[cfg(test)]
mod native_tests;
pub(crate) mod search;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hnsw_rs::prelude::Distance;

use crate::error::GalleryError;
use crate::kernels;
use crate::storage::Snapshot;
use format::FlatGraph;

/// Scale of the i8 keys: `key = round(value · KEY_SCALE)`, clamped to ±127.
/// A normalised 64-value block has values of about ±0.125; clamping starts at
/// 0.635 (five standard deviations), which only shifts a proposal.
pub(crate) const KEY_SCALE: f32 = 200.0;

/// Graph parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnParams {
    /// Neighbours kept per point and layer (`M`, 4..=64).
    pub max_connections: usize,
    /// Candidates explored while inserting (`efConstruction`).
    pub ef_construction: usize,
    /// Candidates explored while searching (`ef`); the search explores
    /// `max(ef_search, top_k)` and re-scores the nearest `2·top_k` of them
    /// by key (at least 16).
    pub ef_search: usize,
    /// Which builder makes the graph.
    pub builder: GraphBuilder,
}

/// Which code builds the graph (both give the same flat search form).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphBuilder {
    /// `hnsw_rs`, flattened after the build, with links back added; its own
    /// files beside the gallery are what an extension starts from. The
    /// reference the native builder's graph quality is tested against.
    HnswRs,
    /// This crate's parallel builder (`native.rs`), the default: fixed-size
    /// `u32` lists over the i8 keys (base lists with slots for links back),
    /// written straight into `hnsw.flat`, which is also what an extension
    /// starts from. On 100k structured templates its recall at equal `ef`
    /// is that of `hnsw_rs`'s graph, built in a third to a sixth of the
    /// time with a seventh of the memory (`BENCHMARKS.md`).
    #[default]
    Native,
}

impl Default for AnnParams {
    /// `M = 16`, `efConstruction = 100`, `ef = 128`, the native builder: the
    /// smallest `ef` that missed no mate of 500 was 12 to 24 at 100k
    /// templates (either builder) and 64 at 1M (`hnsw_rs`; structured data;
    /// `BENCHMARKS.md`, runs 12 and 13 and the runs of 2026-12-05), so 128
    /// leaves room for galleries beyond 1M.
    fn default() -> Self {
        AnnParams {
            max_connections: 16,
            ef_construction: 100,
            ef_search: 128,
            builder: GraphBuilder::default(),
        }
    }
}

impl AnnParams {
    pub(super) fn checked(self) -> AnnParams {
        AnnParams {
            // hnsw_rs exits the process above 256.
            max_connections: self.max_connections.clamp(4, 64),
            ef_construction: self.ef_construction.clamp(8, 4096),
            ef_search: self.ef_search.clamp(1, 8192),
            builder: self.builder,
        }
    }
}

/// The distance of two keys: `len·127² - key·key'`, so larger inner products
/// are nearer, and it is never negative.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyDistance;

impl Distance<i8> for KeyDistance {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        let max = va.len() as i64 * 127 * 127;
        (max - kernels::dot_i8(va, vb)) as f32
    }
}

/// The i8 key of a row's values.
pub(crate) fn key_of(values: &[f32]) -> Vec<i8> {
    let mut key = vec![0; values.len()];
    key_into(values, &mut key);
    key
}

/// Writes the i8 key of a row's values into `key` (of the same length).
pub(crate) fn key_into(values: &[f32], key: &mut [i8]) {
    for (k, v) in key.iter_mut().zip(values) {
        *k = (v * KEY_SCALE).round().clamp(-127.0, 127.0) as i8;
    }
}

/// How the current index came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexOrigin {
    /// Built from the gallery in this process.
    Built,
    /// Loaded from the files beside the gallery.
    Loaded,
}

/// The outcome of a build that was asked to stop.
#[derive(Debug)]
pub(crate) struct Cancelled;

/// The index searches use: a flat graph and what it covers.
pub(crate) struct GraphIndex {
    pub(super) flat: FlatGraph,
    /// Rows `0..rows` were offered to the graph (dead rows are skipped);
    /// later rows are scanned exactly.
    pub(crate) rows: u64,
    /// Points in the graph.
    pub(crate) points: usize,
    /// Graph points not reachable from the entry point: scanned exactly.
    pub(crate) orphans: Vec<u64>,
    pub(crate) origin: IndexOrigin,
    /// Points whose row has been deleted (counted at load, then per delete).
    pub(crate) deleted: AtomicUsize,
    /// Whether searches ask for their rows ahead (see [`search::ReadAhead`]).
    pub(crate) read_ahead: search::ReadAhead,
    /// While the keys of a graph mapped from its file are not all checked
    /// yet ([`GraphIndex::map`]): the rows erased from it since it was
    /// mapped, whose zeroed keys are erasures, not damage. `None` once every
    /// key is checked, and for a graph made in memory.
    pub(crate) keys_pending: Option<HashSet<u64>>,
}

impl GraphIndex {
    pub(super) fn from_flat(flat: FlatGraph, snap: &Snapshot, origin: IndexOrigin) -> GraphIndex {
        let deleted = flat
            .point_rows()
            .filter(|&r| r >= snap.count || snap.is_dead(r))
            .count();
        GraphIndex {
            deleted: AtomicUsize::new(deleted),
            rows: flat.rows(),
            points: flat.points(),
            orphans: flat.orphan_rows(),
            origin,
            flat,
            read_ahead: search::ReadAhead::default(),
            keys_pending: None,
        }
    }

    /// Maps the flat graph saved beside the gallery if its header, links and
    /// rows are intact and match `snap` (the keys of rows deleted since it
    /// was saved are erased in it); the reason it was refused otherwise.
    /// Its other keys are not read yet: the graph can serve while
    /// [`GraphIndex::check_keys`] reads them. Never panics on a damaged file.
    /// What needs nothing of `snap` (the file's header, checksum and
    /// structure) comes from `early` when it was started as the gallery
    /// opened.
    pub(crate) fn map(
        dir: &Path,
        snap: &Snapshot,
        early: Option<EarlyCheck>,
    ) -> Result<GraphIndex, String> {
        let is_dead = |row: u64| row < snap.count && snap.is_dead(row);
        let intact = match early {
            Some(early) => early.finish(),
            None => FlatGraph::map_intact(dir),
        }?;
        let digest_of = |rows| rows_digest(snap, rows);
        let flat = FlatGraph::matched(intact, snap.count, &digest_of, &is_dead)?;
        Ok(GraphIndex {
            keys_pending: Some(HashSet::new()),
            ..GraphIndex::from_flat(flat, snap, IndexOrigin::Loaded)
        })
    }

    /// [`GraphIndex::map`], then every key checked: the graph if it is
    /// wholly intact, the reason it was refused otherwise (its file then
    /// overwritten with zeros).
    pub(crate) fn load(dir: &Path, snap: &Snapshot) -> Result<GraphIndex, String> {
        let mut index = GraphIndex::map(dir, snap, None)?;
        match index.check_keys(0..index.points, snap) {
            Ok(()) => {
                index.keys_pending = None;
                Ok(index)
            }
            Err(why) => {
                index.discard();
                Err(why)
            }
        }
    }

    /// Checks the keys of `points` against their CRCs
    /// ([`FlatGraph::check_keys`]): a zeroed key is an erasure if `snap` or
    /// an erasure since the graph was mapped deleted its row, damage
    /// otherwise.
    pub(crate) fn check_keys(&self, points: Range<usize>, snap: &Snapshot) -> Result<(), String> {
        let erased = self.keys_pending.as_ref();
        let is_dead = |row: u64| {
            row < snap.count && snap.is_dead(row) || erased.is_some_and(|e| e.contains(&row))
        };
        self.flat.check_keys(points, &is_dead)
    }

    /// Drops the index; one mapped from its file, found damaged, has the
    /// file overwritten with zeros first.
    pub(crate) fn discard(self) {
        self.flat.discard();
    }

    /// Erases the keys of `rows` (deleted rows) from the graph, in memory and
    /// in its file, and counts the points erased as deleted. Returns whether
    /// the deleted points now exceed `rebuild_percent` of the graph's.
    pub(crate) fn erase(
        &mut self,
        rows: &[u64],
        rebuild_percent: u32,
    ) -> Result<bool, GalleryError> {
        let erased = self.flat.erase_rows(rows)?;
        if let Some(pending) = &mut self.keys_pending {
            pending.extend(rows);
        }
        let deleted = self.deleted.fetch_add(erased, Ordering::Relaxed) + erased;
        Ok(erased > 0 && deleted as u64 * 100 > self.points as u64 * u64::from(rebuild_percent))
    }

    /// Erases the keys of the points whose rows `snap` says are deleted and
    /// counts them again: a graph made while rows were erased may hold keys
    /// read before their erasure. Returns the rows whose keys this or the
    /// load erased (their copies in the builder's files may remain).
    pub(crate) fn erase_deleted(&mut self, snap: &Snapshot) -> Result<Vec<u64>, GalleryError> {
        let dead: Vec<u64> = self
            .flat
            .point_rows()
            .filter(|&r| r >= snap.count || snap.is_dead(r))
            .collect();
        self.deleted.store(dead.len(), Ordering::Relaxed);
        let fresh: Vec<u64> = dead
            .into_iter()
            .filter(|&r| self.flat.key_is_set(r))
            .collect();
        self.flat.erase_rows(&fresh)?;
        let mut erased = std::mem::take(&mut self.flat.erased_at_load);
        erased.extend(fresh);
        erased.sort_unstable();
        erased.dedup();
        Ok(erased)
    }

    /// The key of the point of `row`, if `row` is a point (for the tests of
    /// erasure).
    #[cfg(test)]
    pub(crate) fn key_of_row(&self, row: u64) -> Option<Vec<i8>> {
        self.flat.key_of_row(row).map(<[i8]>::to_vec)
    }

    /// Bytes of the flat graph (keys, links, rows), mapped from its file.
    pub(crate) fn estimated_bytes(&self) -> usize {
        self.flat.byte_len()
    }
}

/// Erases the keys of `rows` in the index files saved in `dir` (the flat
/// graph and the builder's files), before any of them is loaded: what the
/// accelerators do to finish an erasure a crash interrupted.
pub(crate) fn erase_in_files(dir: &Path, rows: &[u64]) -> Result<(), GalleryError> {
    FlatGraph::erase_in_file(dir, rows)?;
    build::erase_in_builder_files(dir, rows)
}

/// The checks of a saved graph's file that need nothing of the gallery
/// ([`FlatGraph::map_intact`]), running on a thread of their own while the
/// gallery's rows open. Dropped unfinished, it waits for the thread: the
/// file stays mapped only while the gallery's lock is held.
pub(crate) struct EarlyCheck(Option<std::thread::JoinHandle<Result<FlatGraph, String>>>);

impl EarlyCheck {
    /// Starts checking the graph saved in `dir`, if there is one. The caller
    /// holds the gallery's lock until this is finished or dropped.
    pub(crate) fn start(dir: &Path) -> Option<EarlyCheck> {
        if !dir.join(format::FLAT_FILE).is_file() {
            return None;
        }
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("palmlink-graph-check".into())
            .spawn(move || FlatGraph::map_intact(&dir))
            .ok()
            .map(|thread| EarlyCheck(Some(thread)))
    }

    /// Waits for the checks: the mapped graph, or why it was refused.
    pub(crate) fn finish(mut self) -> Result<FlatGraph, String> {
        match self.0.take().map(std::thread::JoinHandle::join) {
            Some(Ok(checked)) => checked,
            Some(Err(_)) => Err(format!("the check of {} panicked", format::FLAT_FILE)),
            None => Err(format!("the check of {} was taken", format::FLAT_FILE)),
        }
    }
}

impl Drop for EarlyCheck {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// Removes what a save a crash interrupted left behind (files written under
/// a temporary name, never renamed into place): they may hold keys that no
/// erasure would reach.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<(), GalleryError> {
    for name in [format::FLAT_TMP, build::META_TMP] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GalleryError::io(dir.join(name), e)),
        }
    }
    match std::fs::remove_dir_all(dir.join(build::TMP_DIR)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GalleryError::io(dir.join(build::TMP_DIR), e)),
    }
}

/// CRC-32 of the records of rows `0..rows` (ids and vector checksums, which
/// never change after commit): identifies the rows an index was built from.
pub(crate) fn rows_digest(snap: &Snapshot, rows: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for row in 0..rows.min(snap.count) {
        let r = snap.record(row);
        h.update(&r.feature_id);
        h.update(&r.vector_crc.to_le_bytes());
        h.update(&r.record_crc.to_le_bytes());
    }
    h.finalize()
}
