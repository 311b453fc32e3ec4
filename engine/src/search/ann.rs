//! The approximate index: an HNSW graph (`hnsw_rs`) over compact i8 keys.
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
//! # What it guarantees, and what it does not
//!
//! * Deleted rows are never returned: the graph search filters on the row's
//!   state word, and the re-score re-checks it.
//! * Rows inserted into the gallery but not yet in the graph (while a build or
//!   a load runs in the background) are scanned exactly: every search covers
//!   the rows past the graph's in f32.
//! * Graph points that the search cannot reach from the top layer (an
//!   `hnsw_rs` insertion can leave a point without in-edges) are found after
//!   each build and load by a breadth-first walk of the base layer, and are
//!   scanned exactly on every search ("orphans").
//! * Otherwise a mate can be missed: the miss rate is measured in the tests
//!   and benches against the exact scan.
//!
//! # Persistence
//!
//! `<gallery>/hnsw.hnsw.graph` and `<gallery>/hnsw.hnsw.data` are written by
//! `hnsw_rs`; `<gallery>/hnsw.meta` (written last) records the rows covered, a
//! digest of those rows' records (so a gallery that was replaced or rewritten
//! is detected), the lengths and CRC-32s of both files, and its own CRC. An
//! index is only loaded when all of these hold; otherwise it is rebuilt from
//! the gallery. `hnsw_rs` asserts or exits on malformed input, so the checks
//! come first and the load itself runs under `catch_unwind`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use rayon::prelude::*;

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
    /// `M = 16`, `efConstruction = 100`, `ef = 128` (the smallest `ef` that
    /// missed no mate of 500 at 100k templates was 96; see `BENCHMARKS.md`).
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

/// A built or loaded graph and what it covers.
pub(crate) struct AnnIndex {
    graph: Graph,
    /// Rows `0..rows` were offered to the graph (dead rows are skipped).
    pub(crate) rows: u64,
    /// Points in the graph.
    pub(crate) points: usize,
    /// Graph points not reachable from the top layer: scanned exactly.
    pub(crate) orphans: Vec<u64>,
    pub(crate) params: AnnParams,
    pub(crate) origin: IndexOrigin,
    /// Rows added since the index was last saved or loaded.
    pub(crate) unsaved: u64,
}

/// The outcome of a build that was asked to stop.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl AnnIndex {
    /// Builds an index of the live rows `0..snap.count`, in parallel.
    /// `cancel` is polled between batches.
    pub(crate) fn build(
        snap: &Snapshot,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<AnnIndex, Cancelled> {
        let rows: Vec<u64> = (0..snap.count)
            .filter(|&r| snap.state(r) == STATE_LIVE)
            .collect();
        Self::build_rows(snap, rows, params, cancel)
    }

    /// Builds an index of `rows` (live rows of `snap`) that covers rows
    /// `0..snap.count`.
    pub(crate) fn build_rows(
        snap: &Snapshot,
        rows: Vec<u64>,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<AnnIndex, Cancelled> {
        let params = params.checked();
        let graph: Graph = Hnsw::new(
            params.max_connections,
            rows.len().max(1),
            16,
            params.ef_construction,
            KeyDistance,
        );
        for batch in rows.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            let keys: Vec<(Vec<i8>, usize)> = batch
                .par_iter()
                .map(|&r| (key_of(snap.vector(r)), r as usize))
                .collect();
            let refs: Vec<(&Vec<i8>, usize)> = keys.iter().map(|(k, r)| (k, *r)).collect();
            graph.parallel_insert(&refs);
        }
        let mut index = AnnIndex {
            graph,
            rows: snap.count,
            points: rows.len(),
            orphans: Vec::new(),
            params,
            origin: IndexOrigin::Built,
            unsaved: snap.count,
        };
        index.find_orphans();
        Ok(index)
    }

    /// Adds the live rows `self.rows..snap.count` (in parallel when many).
    pub(crate) fn catch_up(&mut self, snap: &Snapshot) {
        if self.rows >= snap.count {
            return;
        }
        let rows: Vec<u64> = (self.rows..snap.count)
            .filter(|&r| snap.state(r) == STATE_LIVE)
            .collect();
        let keys: Vec<(Vec<i8>, usize)> = rows
            .iter()
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
        self.unsaved += snap.count - self.rows;
        self.rows = snap.count;
    }

    /// Proposes up to `knn` rows for the probe's values, skipping rows for
    /// which `keep` is false.
    pub(crate) fn propose(
        &self,
        values: &[f32],
        knn: usize,
        ef: usize,
        keep: &dyn Fn(usize) -> bool,
    ) -> Vec<u64> {
        let key = key_of(values);
        let filter = |id: &usize| keep(*id);
        self.graph
            .search_filter(&key, knn, ef.max(knn), Some(&filter))
            .into_iter()
            .map(|n| n.d_id as u64)
            .collect()
    }

    /// Finds graph points that a search cannot reach: a breadth-first walk
    /// over base-layer edges from the points of the top layer (the entry
    /// point is one of them). Unreached points become orphans.
    pub(crate) fn find_orphans(&mut self) {
        if self.graph.get_nb_point() == 0 {
            // The point iterator of hnsw_rs needs an entry point.
            self.orphans.clear();
            return;
        }
        let indexation = self.graph.get_point_indexation();
        let mut adjacency: std::collections::HashMap<usize, Vec<usize>> =
            std::collections::HashMap::with_capacity(self.points);
        let mut top = Vec::new();
        let top_level = indexation.get_max_level_observed();
        for point in indexation {
            let origin = point.get_origin_id();
            let layers = point.get_neighborhood_id();
            let base: Vec<usize> = layers
                .first()
                .map(|l| l.iter().map(|n| n.d_id).collect())
                .unwrap_or_default();
            if point.get_point_id().0 == top_level {
                top.push(origin);
            }
            adjacency.insert(origin, base);
        }
        self.orphans = unreachable(&adjacency, &top)
            .into_iter()
            .map(|r| r as u64)
            .collect();
    }

    /// Bytes of memory the graph holds, estimated from its shape: per point
    /// the key, about 400 bytes of point, lock and list headers, and per
    /// neighbour link an `Arc`'d entry of about 56 bytes with allocator
    /// overhead (2·M links on the base layer, about M/(M-1) above it). The
    /// benches measure the resident memory beside it.
    pub(crate) fn estimated_bytes(&self) -> usize {
        let key = self.graph.get_point_indexation().get_data_dimension();
        let m = self.params.max_connections;
        self.points * (key + 400 + 2 * m * 56 + m * 56 / (m.max(2) - 1))
    }

    /// Writes the index beside the gallery (temporary files, renamed into
    /// place, the metadata last).
    pub(crate) fn save(&mut self, dir: &Path, snap: &Snapshot) -> Result<(), GalleryError> {
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
            .map_err(|e| GalleryError::io(dir, e))?;
        self.unsaved = 0;
        Ok(())
    }

    /// Loads the index saved beside the gallery if it is intact and matches
    /// `snap`; the reason it was refused otherwise. Never panics on a
    /// damaged file.
    pub(crate) fn load(dir: &Path, snap: &Snapshot, params: AnnParams) -> Result<AnnIndex, String> {
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
                    // The test `reload_outlives_the_loader_and_gives_the_same_answers`
                    // searches a
                    // reloaded graph after its loader is gone.
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
        let mut index = AnnIndex {
            graph: loaded,
            rows: meta.rows,
            points,
            orphans: Vec::new(),
            params: AnnParams {
                max_connections: meta.max_connections as usize,
                ef_construction: meta.ef_construction as usize,
                ..params
            },
            origin: IndexOrigin::Loaded,
            unsaved: 0,
        };
        index.find_orphans();
        Ok(index)
    }
}

/// Nodes of `adjacency` not reachable from any of `starts`, sorted.
pub(crate) fn unreachable(
    adjacency: &std::collections::HashMap<usize, Vec<usize>>,
    starts: &[usize],
) -> Vec<usize> {
    let mut seen: std::collections::HashSet<usize> =
        std::collections::HashSet::with_capacity(adjacency.len());
    let mut stack: Vec<usize> = starts.to_vec();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        if let Some(next) = adjacency.get(&n) {
            stack.extend(next.iter().copied().filter(|m| !seen.contains(m)));
        }
    }
    let mut out: Vec<usize> = adjacency
        .keys()
        .copied()
        .filter(|n| !seen.contains(n))
        .collect();
    out.sort_unstable();
    out
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
    use std::collections::HashMap;

    #[test]
    fn unreachable_finds_nodes_without_a_path() {
        let mut adj: HashMap<usize, Vec<usize>> = HashMap::new();
        adj.insert(0, vec![1, 2]);
        adj.insert(1, vec![0]);
        adj.insert(2, vec![1]);
        adj.insert(3, vec![0]); // out-edges only: nobody points at 3
        adj.insert(4, vec![5]);
        adj.insert(5, vec![4]); // a separate island
        assert_eq!(unreachable(&adj, &[0]), vec![3, 4, 5]);
        assert_eq!(unreachable(&adj, &[0, 3, 4]), Vec::<usize>::new());
    }

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
