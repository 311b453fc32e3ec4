//! The approximate index: an HNSW graph over compact i8 keys, built by
//! `hnsw_rs` and searched in a flat, memory-mapped form (`flat_graph.rs`).
//!
//! # Keys and distance
//!
//! A row's key is its normalised blocks concatenated and rounded to i8 at a
//! fixed scale ([`KEY_SCALE`]), so the key's inner product ranks like the mean
//! block score. The distance is `len·127² - key·key'` (never negative, exact in
//! integers, one fused AVX-512 kernel). The index only proposes: every
//! proposed row is re-scored exactly in f32 and the exact scores decide.
//! i8 keys hold the graph's copy of the data at 640 bytes a template instead
//! of 2560, and need no `anndists` SIMD feature.
//!
//! # Build, search, extension
//!
//! A [`Builder`] holds the `hnsw_rs` graph while it is built in parallel (or
//! loaded and extended with rows added since); it is then flattened into an
//! [`AnnIndex`] and dropped. Searches walk the flat copy: plain arrays of
//! keys and `u32` links, a visited bit set, no locks or reference
//! counts. Rows added after the flat copy was made are scanned exactly until
//! the next extension folds them in (see `accel.rs` for when).
//!
//! # What it guarantees, and what it does not
//!
//! * Deleted rows are never returned: the graph search filters on the row's
//!   state word, and the re-score re-checks it.
//! * Rows inserted into the gallery after the graph was flattened are scanned
//!   exactly: every search covers the rows past the graph's in f32.
//! * Graph points that the search cannot reach from the entry point (an
//!   `hnsw_rs` insertion can leave a point without in-edges) are found when
//!   the graph is flattened, by a walk of the base layer from the top layer,
//!   and are scanned exactly on every search ("orphans").
//! * Otherwise a mate can be missed: the miss rate is measured in the tests
//!   and benches against the exact scan.
//!
//! # Persistence
//!
//! `<gallery>/hnsw.flat` is the search form (see `flat_graph.rs`): mapped at
//! open after its checksums, its records digest and its structure are
//! checked, so an open costs one read of the file, not a rebuild of the
//! graph. `<gallery>/hnsw.hnsw.graph` and `<gallery>/hnsw.hnsw.data` are
//! the builder's graph, written by `hnsw_rs`; `<gallery>/hnsw.meta`
//! (written last) records the rows covered, a digest of those rows' records
//! (so a gallery that was replaced or rewritten is detected), the lengths
//! and CRC-32s of both files, and its own CRC. They are only read to extend
//! the graph, or to flatten it again when `hnsw.flat` is missing or damaged
//! (as for a gallery saved before the flat form existed), and only when all
//! of these hold; otherwise the graph is rebuilt from the gallery.
//! `hnsw_rs` asserts or exits on malformed input, so the checks come first
//! and the load itself runs under `catch_unwind`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use bytemuck::{Pod, Zeroable};
use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use rayon::prelude::*;

pub(crate) use super::flat_graph::RowFilter;
use super::flat_graph::{FlatGraph, GraphParts, NodeParts};
use super::int_kernels;
use crate::error::GalleryError;
use crate::storage::format::STATE_LIVE;
use crate::storage::gallery::Snapshot;

/// Scale of the i8 keys: `key = round(value · KEY_SCALE)`, clamped to ±127.
/// A normalised 64-value block has values of about ±0.125; clamping starts at
/// 0.635 (five standard deviations), which only shifts a proposal.
pub const KEY_SCALE: f32 = 200.0;
/// Basename of the index files in the gallery directory.
const BASENAME: &str = "hnsw";
/// The metadata file.
pub(crate) const META_FILE: &str = "hnsw.meta";
const GRAPH_FILE: &str = "hnsw.hnsw.graph";
const DATA_FILE: &str = "hnsw.hnsw.data";
const META_MAGIC: [u8; 8] = *b"PLMHNSW\0";
const META_VERSION: u32 = 1;
/// Rows inserted per `parallel_insert` call while building (a cancel point).
const BUILD_BATCH: usize = 4096;

/// Graph parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnParams {
    /// Neighbours kept per point and layer (`M`, 4..=64).
    pub max_connections: usize,
    /// Candidates explored while inserting (`efConstruction`).
    pub ef_construction: usize,
    /// Candidates explored while searching (`ef`); the search proposes
    /// `max(ef_search, top_k)` rows for re-scoring.
    pub ef_search: usize,
}

impl Default for AnnParams {
    /// `M = 16`, `efConstruction = 100`, `ef = 128`: with links back, the
    /// smallest `ef` that missed no mate of 500 was 24 at 100k templates and
    /// 64 at 1M (structured data; `BENCHMARKS.md`, runs 12 and 13), so 128
    /// leaves room for galleries beyond 1M.
    fn default() -> Self {
        AnnParams {
            max_connections: 16,
            ef_construction: 100,
            ef_search: 128,
        }
    }
}

impl AnnParams {
    fn checked(self) -> AnnParams {
        AnnParams {
            // hnsw_rs exits the process above 256.
            max_connections: self.max_connections.clamp(4, 64),
            ef_construction: self.ef_construction.clamp(8, 4096),
            ef_search: self.ef_search.clamp(1, 8192),
        }
    }
}

/// The distance of two keys: `len·127² - key·key'`, so larger inner products
/// are nearer, and it is never negative.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyDistance;

impl Distance<i8> for KeyDistance {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        let max = va.len() as i64 * 127 * 127;
        (max - int_kernels::dot_i8(va, vb)) as f32
    }
}

/// The i8 key of a row's values.
pub(crate) fn key_of(values: &[f32]) -> Vec<i8> {
    values
        .iter()
        .map(|v| (v * KEY_SCALE).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

type Graph = Hnsw<'static, i8, KeyDistance>;

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
pub(crate) struct AnnIndex {
    flat: FlatGraph,
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
}

impl AnnIndex {
    fn from_flat(flat: FlatGraph, snap: &Snapshot, origin: IndexOrigin) -> AnnIndex {
        let deleted = flat
            .point_rows()
            .filter(|&r| r >= snap.count || snap.state(r) != STATE_LIVE)
            .count();
        AnnIndex {
            deleted: AtomicUsize::new(deleted),
            rows: flat.rows(),
            points: flat.points(),
            orphans: flat.orphan_rows(),
            origin,
            flat,
        }
    }

    /// Loads the flat graph saved beside the gallery if it is intact and
    /// matches `snap`; the reason it was refused otherwise. Never panics on
    /// a damaged file.
    pub(crate) fn load(dir: &Path, snap: &Snapshot) -> Result<AnnIndex, String> {
        let flat = FlatGraph::load(dir, snap.count, &|rows| rows_digest(snap, rows))?;
        Ok(AnnIndex::from_flat(flat, snap, IndexOrigin::Loaded))
    }

    /// Proposes up to `knn` rows for the probe's values, skipping rows that
    /// `filter` does not keep.
    pub(crate) fn propose(
        &self,
        values: &[f32],
        knn: usize,
        ef: usize,
        filter: &dyn RowFilter,
    ) -> Vec<u64> {
        self.flat.propose(&key_of(values), knn, ef, filter)
    }

    /// Bytes of the flat graph (keys, links, rows), mapped from its file.
    pub(crate) fn estimated_bytes(&self) -> usize {
        self.flat.byte_len()
    }
}

/// The `hnsw_rs` graph that builds the index, and extends it with rows added
/// since, before it is flattened for searching.
pub(crate) struct Builder {
    graph: Graph,
    /// Rows `0..rows` were offered to the graph.
    rows: u64,
    points: usize,
    params: AnnParams,
}

impl Builder {
    /// Builds a graph of the live rows `0..snap.count`, in parallel.
    /// `cancel` is polled between batches.
    pub(crate) fn build(
        snap: &Snapshot,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Builder, Cancelled> {
        let rows: Vec<u64> = (0..snap.count)
            .filter(|&r| snap.state(r) == STATE_LIVE)
            .collect();
        Self::build_rows(snap, rows, params, cancel)
    }

    /// Builds a graph of `rows` (live rows of `snap`) that covers rows
    /// `0..snap.count`.
    pub(crate) fn build_rows(
        snap: &Snapshot,
        rows: Vec<u64>,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Builder, Cancelled> {
        let params = params.checked();
        let graph: Graph = Hnsw::new(
            params.max_connections,
            rows.len().max(1),
            16,
            params.ef_construction,
            KeyDistance,
        );
        let mut builder = Builder {
            graph,
            rows: 0,
            points: 0,
            params,
        };
        for batch in rows.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            builder.insert(snap, batch);
        }
        builder.rows = snap.count;
        Ok(builder)
    }

    fn insert(&mut self, snap: &Snapshot, rows: &[u64]) {
        let keys: Vec<(Vec<i8>, usize)> = rows
            .par_iter()
            .map(|&r| (key_of(snap.vector(r)), r as usize))
            .collect();
        if keys.len() > 64 {
            let refs: Vec<(&Vec<i8>, usize)> = keys.iter().map(|(k, r)| (k, *r)).collect();
            self.graph.parallel_insert(&refs);
        } else {
            for (k, r) in &keys {
                self.graph.insert_slice((k, *r));
            }
        }
        self.points += keys.len();
    }

    /// Adds the live rows `self.rows..snap.count`. `cancel` is polled
    /// between batches.
    pub(crate) fn extend(
        &mut self,
        snap: &Snapshot,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), Cancelled> {
        let rows: Vec<u64> = (self.rows..snap.count)
            .filter(|&r| snap.state(r) == STATE_LIVE)
            .collect();
        for batch in rows.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            self.insert(snap, batch);
        }
        self.rows = self.rows.max(snap.count);
        Ok(())
    }

    /// The graph as a node list.
    fn parts(&self) -> GraphParts {
        let indexation = self.graph.get_point_indexation();
        let mut nodes = Vec::with_capacity(self.points);
        if self.graph.get_nb_point() > 0 {
            // The point iterator of hnsw_rs needs an entry point.
            for point in indexation {
                let links = point
                    .get_neighborhood_id()
                    .into_iter()
                    .map(|layer| layer.into_iter().map(|n| n.d_id as u64).collect())
                    .collect();
                nodes.push(NodeParts {
                    row: point.get_origin_id() as u64,
                    level: usize::from(point.get_point_id().0),
                    key: point.get_v().to_vec(),
                    links,
                });
            }
        }
        GraphParts {
            dim: nodes.first().map_or(0, |n: &NodeParts| n.key.len()),
            nodes,
            max_connections: self.params.max_connections as u32,
            ef_construction: self.params.ef_construction as u32,
        }
    }

    /// The search form of the graph, saved beside the gallery as
    /// `hnsw.flat` and served from its mapping; held in memory only if the
    /// save fails (the next open then rebuilds).
    pub(crate) fn flatten(
        &self,
        dir: &Path,
        snap: &Snapshot,
        origin: IndexOrigin,
    ) -> Result<AnnIndex, GalleryError> {
        let flat = FlatGraph::from_parts(self.parts(), self.rows, rows_digest(snap, self.rows))
            .map_err(|e| GalleryError::io(dir, std::io::Error::other(e.to_string())))?;
        let mapped = flat
            .save(dir)
            .ok()
            .and_then(|()| AnnIndex::load(dir, snap).ok());
        Ok(match mapped {
            Some(index) => AnnIndex { origin, ..index },
            None => AnnIndex::from_flat(flat, snap, origin),
        })
    }

    /// Writes the graph beside the gallery (temporary files, renamed into
    /// place, the metadata last), so a later extension starts from it.
    pub(crate) fn save(&self, dir: &Path, snap: &Snapshot) -> Result<(), GalleryError> {
        let tmp = dir.join("hnsw.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| GalleryError::io(&tmp, e))?;
        let written = self
            .graph
            .file_dump(&tmp, BASENAME)
            .map_err(|e| GalleryError::io(&tmp, std::io::Error::other(e.to_string())))?;
        if written != BASENAME {
            return Err(GalleryError::io(
                &tmp,
                std::io::Error::other(format!("index written as {written}")),
            ));
        }
        let meta_path = dir.join(META_FILE);
        match fs::remove_file(&meta_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GalleryError::io(&meta_path, e)),
        }
        let mut meta = IndexMeta::zeroed();
        meta.magic = META_MAGIC;
        meta.version = META_VERSION;
        meta.rows = self.rows;
        meta.digest = rows_digest(snap, self.rows);
        meta.points = self.points as u64;
        meta.max_connections = self.params.max_connections as u32;
        meta.ef_construction = self.params.ef_construction as u32;
        for (name, len, crc) in [
            (GRAPH_FILE, &mut meta.graph_len, &mut meta.graph_crc),
            (DATA_FILE, &mut meta.data_len, &mut meta.data_crc),
        ] {
            let from = tmp.join(name);
            let (l, c) = file_crc(&from)?;
            *len = l;
            *crc = c;
            let to = dir.join(name);
            fs::rename(&from, &to).map_err(|e| GalleryError::io(&to, e))?;
        }
        meta.crc = meta.computed_crc();
        let meta_tmp = tmp.join(META_FILE);
        write_synced(&meta_tmp, bytemuck::bytes_of(&meta))?;
        fs::rename(&meta_tmp, &meta_path).map_err(|e| GalleryError::io(&meta_path, e))?;
        let _ = fs::remove_dir_all(&tmp);
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| GalleryError::io(dir, e))
    }

    /// Loads the graph saved beside the gallery if it is intact and matches
    /// `snap`; the reason it was refused otherwise. Never panics on a
    /// damaged file.
    pub(crate) fn load(dir: &Path, snap: &Snapshot, params: AnnParams) -> Result<Builder, String> {
        let meta_path = dir.join(META_FILE);
        let raw = fs::read(&meta_path).map_err(|e| format!("metadata: {e}"))?;
        if raw.len() != std::mem::size_of::<IndexMeta>() {
            return Err("metadata has the wrong size".into());
        }
        let meta: IndexMeta = bytemuck::pod_read_unaligned(&raw);
        if meta.magic != META_MAGIC || meta.crc != meta.computed_crc() {
            return Err("metadata is damaged".into());
        }
        if meta.version != META_VERSION {
            return Err(format!("metadata version {}", meta.version));
        }
        if meta.rows > snap.count {
            return Err(format!(
                "index covers {} rows, the gallery has {}",
                meta.rows, snap.count
            ));
        }
        if meta.digest != rows_digest(snap, meta.rows) {
            return Err("index was built from other records".into());
        }
        for (name, len, crc) in [
            (GRAPH_FILE, meta.graph_len, meta.graph_crc),
            (DATA_FILE, meta.data_len, meta.data_crc),
        ] {
            let (l, c) = file_crc(&dir.join(name)).map_err(|e| e.to_string())?;
            if (l, c) != (len, crc) {
                return Err(format!("{name} fails its checksum"));
            }
        }
        let dir_owned: PathBuf = dir.to_path_buf();
        let loaded = std::panic::catch_unwind(move || {
            let io = HnswIo::new(&dir_owned, BASENAME);
            io.load_hnsw_with_dist::<i8, KeyDistance>(KeyDistance)
                .map(|graph| {
                    // SAFETY: `HnswIo::load_hnsw_with_dist` ties the graph's
                    // lifetime to the loader only because a memory-mapped
                    // reload would borrow the loader's map. `HnswIo::new` uses
                    // the default options (no mmap), so every point owns its
                    // data (`Point::new` with a `Vec`) and the graph borrows
                    // nothing from `io`, which is dropped at the end of this
                    // closure. The two types differ only in that lifetime.
                    // The tests `a_damaged_flat_graph_is_flattened_again` and
                    // `the_tail_is_folded_into_the_graph` extend, flatten and
                    // search a reloaded graph after its loader is gone.
                    unsafe { std::mem::transmute::<Hnsw<'_, i8, KeyDistance>, Graph>(graph) }
                })
                .map_err(|e| e.to_string())
        })
        .map_err(|_| "the index files could not be parsed".to_string())??;
        let points = loaded.get_nb_point();
        if points as u64 != meta.points {
            return Err(format!(
                "index holds {points} points, expected {}",
                meta.points
            ));
        }
        Ok(Builder {
            graph: loaded,
            rows: meta.rows,
            points,
            params: AnnParams {
                max_connections: meta.max_connections as usize,
                ef_construction: meta.ef_construction as usize,
                ..params
            }
            .checked(),
        })
    }
}

/// The metadata file of a saved index.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct IndexMeta {
    magic: [u8; 8],
    version: u32,
    max_connections: u32,
    rows: u64,
    points: u64,
    graph_len: u64,
    data_len: u64,
    digest: u32,
    graph_crc: u32,
    data_crc: u32,
    ef_construction: u32,
    reserved: [u8; 12],
    crc: u32,
}

const _: () = assert!(std::mem::size_of::<IndexMeta>() == 80);

impl IndexMeta {
    fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..76])
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

fn file_crc(path: &Path) -> Result<(u64, u32), GalleryError> {
    let mut f = fs::File::open(path).map_err(|e| GalleryError::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| GalleryError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), GalleryError> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| GalleryError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| GalleryError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_distance_orders_by_inner_product() {
        let a = key_of(&[0.5, 0.5, 0.5, 0.5]);
        let near = key_of(&[0.5, 0.5, 0.5, 0.4]);
        let far = key_of(&[-0.5, 0.5, -0.5, 0.5]);
        assert!(KeyDistance.eval(&a, &near) < KeyDistance.eval(&a, &far));
        assert!(KeyDistance.eval(&a, &far) >= 0.0);
        assert_eq!(key_of(&[10.0, -10.0]), vec![127, -127]);
    }

    #[test]
    fn params_are_clamped_to_what_hnsw_rs_accepts() {
        let p = AnnParams {
            max_connections: 1000,
            ef_construction: 0,
            ef_search: 0,
        }
        .checked();
        assert_eq!(p.max_connections, 64);
        assert!(p.ef_construction >= 8 && p.ef_search >= 1);
    }
}
